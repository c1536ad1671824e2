package app_test

import (
	"bytes"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/envelope"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// testCase is one row of a per-type table: optional setup, the
// transaction, the expected code and a check of the state afterwards.
type testCase struct {
	name  string
	setup func(c *chain)
	spec  func(c *chain) spec
	want  reason.Code
	check func(t *testing.T, c *chain, out *app.Output, id ledger.TxID)
}

func runCases(t *testing.T, cases []testCase) {
	t.Helper()
	kc := keyCache{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t, kc, nil)
			if tc.setup != nil {
				tc.setup(c)
			}
			tx := c.tx(tc.spec(c))
			out := c.run(tx)
			r := out.Results[0]
			if r.Code != tc.want {
				t.Fatalf("code %s (%d) %q, want %s (%d)", r.Code, r.Code, r.Detail, tc.want, tc.want)
			}
			if tc.want != reason.OK {
				for _, w := range out.Writes {
					k := string(w.Key)
					if k != "m/tip" && k != "m/horizon" && k[:2] != "x/" {
						t.Fatalf("failed transaction wrote %q", w.Key)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, c, out, tx.ID())
			}
		})
	}
}

func sealedFor(t testing.TB, doc []byte, c *chain, names ...string) ([]byte, []ledger.Address) {
	t.Helper()
	var readers []envelope.Reader
	for _, n := range names {
		readers = append(readers, envelope.Reader{Address: *c.addr(n), Key: c.keys[n].PublicKey()})
	}
	env, err := envelope.Seal(nil, doc, readers)
	if err != nil {
		t.Fatal(err)
	}
	e, err := envelope.Decode(env)
	if err != nil {
		t.Fatal(err)
	}
	return env, e.Readers()
}

func recordOf(t *testing.T, c *chain, id gm.Digest) *app.Record {
	t.Helper()
	r, err := app.GetRecord(c.store, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecordPut(t *testing.T) {
	plain := []byte("bill of lading 42: 300 crates")
	runCases(t, []testCase{
		{name: "digest only", spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.RecordPut{RecordType: "customs.declaration", Subject: *c.addr("alice"), Digest: dptr("doc")}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
			r := recordOf(t, c, id)
			if r == nil || r.Digest != digest("doc") || r.Owner != *c.addr("alice") || r.Height != 1 || r.Kind != txs.PayloadDigestOnly {
				t.Fatalf("record %+v", r)
			}
			ids, err := app.RecordsBySubject(c.store, *c.addr("alice"), gm.Digest{}, 10)
			if err != nil || len(ids) != 1 || ids[0] != id {
				t.Fatalf("by subject: %v %v", ids, err)
			}
		}},
		{name: "plain payload from a kiosk", spec: func(c *chain) spec {
			return spec{from: "kiosk", payload: plain, body: &txs.RecordPut{
				RecordType: "port.manifest", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(plain))}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
			r := recordOf(t, c, id)
			if r.Digest != gm.SM3(plain) || r.Size != uint64(len(plain)) || r.Subject != *c.addr("bob") {
				t.Fatalf("record %+v", r)
			}
			// State holds the digest, never the payload bytes.
			c.store.Each(func(k, v []byte) {
				if bytes.Contains(v, plain) {
					t.Fatalf("payload bytes stored in state at %q", k)
				}
			})
		}},
		{name: "sealed for readers", spec: func(c *chain) spec {
			env, readers := sealedFor(t, plain, c, "alice", "regulator")
			return spec{from: "alice", payload: env, body: &txs.RecordPut{
				RecordType: "kyc.identity", Subject: *c.addr("alice"), Kind: txs.PayloadSealed, Size: uint64(len(env)), Readers: readers}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
			if r := recordOf(t, c, id); len(r.Readers) != 2 || r.Kind != txs.PayloadSealed {
				t.Fatalf("record %+v", r)
			}
		}},
		{name: "role not allowed", want: reason.NotPermitted, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.RecordPut{RecordType: "x", Subject: *c.addr("alice"), Digest: dptr("d")}}
		}},
		{name: "bad record type", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.RecordPut{RecordType: "Bad Type", Subject: *c.addr("alice"), Digest: dptr("d")}}
		}},
		{name: "recipient not allowed", want: reason.BadRecipient, spec: func(c *chain) spec {
			return spec{from: "alice", to: c.addr("bob"), body: &txs.RecordPut{RecordType: "x", Subject: *c.addr("alice"), Digest: dptr("d")}}
		}},
		{name: "payload kind without payload digest", want: reason.PayloadMismatch, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.RecordPut{RecordType: "x", Subject: *c.addr("alice"), Kind: txs.PayloadPlain, Size: 5}}
		}},
		{name: "payload on digest-only record", want: reason.UnexpectedPayload, spec: func(c *chain) spec {
			return spec{from: "alice", payload: []byte("p"), body: &txs.RecordPut{RecordType: "x", Subject: *c.addr("alice"), Digest: dptr("d")}}
		}},
		{name: "unknown reader", want: reason.ReaderUnknown, spec: func(c *chain) spec {
			stranger := ledger.Address(digest("stranger"))
			return spec{from: "alice", payload: []byte("ciphertext"), body: &txs.RecordPut{RecordType: "x", Subject: *c.addr("alice"),
				Kind: txs.PayloadSealed, Size: 10, Readers: []ledger.Address{stranger}}}
		}},
		{name: "blocked record type", want: reason.FilterRecordType, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{BlockedRecordTypes: []string{"gambling.ad"}})
		}, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.RecordPut{RecordType: "gambling.ad", Subject: *c.addr("alice"), Digest: dptr("d")}}
		}},
		{name: "regulator must read sealed payloads", want: reason.FilterRegulatorReader, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{RequireRegulatorReader: true})
		}, spec: func(c *chain) spec {
			env, readers := sealedFor(t, plain, c, "alice")
			return spec{from: "alice", payload: env, body: &txs.RecordPut{
				RecordType: "kyc.identity", Subject: *c.addr("alice"), Kind: txs.PayloadSealed, Size: uint64(len(env)), Readers: readers}}
		}},
	})
}

// setFilter installs filter rules through a two-administrator quorum.
func setFilter(c *chain, r txs.FilterRules) {
	c.t.Helper()
	c.ok(spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.FilterUpdate{Rules: r}})
}

func putRecord(c *chain, from string, typ string) ledger.TxID {
	c.t.Helper()
	tx := c.tx(spec{from: from, body: &txs.RecordPut{RecordType: typ, Subject: *c.addr(from), Digest: dptr(typ + from)}})
	if r := c.run(tx).Results[0]; !r.OK() {
		c.t.Fatalf("record put: %s %s", r.Code, r.Detail)
	}
	return tx.ID()
}

func TestRecordSupersede(t *testing.T) {
	var prev ledger.TxID
	setup := func(c *chain) { prev = putRecord(c, "alice", "tax.return") }
	next := func(c *chain) *txs.RecordSupersede {
		return &txs.RecordSupersede{Previous: prev, Record: txs.RecordPut{RecordType: "tax.return", Subject: *c.addr("alice"), Digest: dptr("v2")}}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: setup, spec: func(c *chain) spec { return spec{from: "alice", body: next(c)} },
			check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
				old, cur := recordOf(t, c, prev), recordOf(t, c, id)
				if old.SupersededBy == nil || *old.SupersededBy != id || cur.Supersedes == nil || *cur.Supersedes != prev {
					t.Fatalf("links: old %+v new %+v", old, cur)
				}
			}},
		{name: "unknown record", want: reason.RecordNotFound, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.RecordSupersede{Previous: digest("nope"), Record: next(c).Record}}
		}},
		{name: "not the owner", want: reason.NotRecordOwner, setup: setup, spec: func(c *chain) spec { return spec{from: "bob", body: next(c)} }},
		{name: "already superseded", want: reason.RecordSuperseded, setup: func(c *chain) {
			setup(c)
			c.ok(spec{from: "alice", body: next(c)})
		}, spec: func(c *chain) spec { return spec{from: "alice", body: next(c)} }},
		{name: "masked", want: reason.RecordMasked, setup: func(c *chain) {
			setup(c)
			c.ok(spec{from: "regulator", body: &txs.RecordMask{Record: prev, Reason: "court order"}})
		}, spec: func(c *chain) spec { return spec{from: "alice", body: next(c)} }},
	})
}

func TestRecordMask(t *testing.T) {
	payload := []byte("unlawful content that must disappear")
	var rec ledger.TxID
	setup := func(c *chain) {
		tx := c.tx(spec{from: "kiosk", payload: payload, body: &txs.RecordPut{
			RecordType: "port.manifest", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(payload))}})
		c.run(tx)
		rec = tx.ID()
	}
	runCases(t, []testCase{
		{name: "accepted", setup: setup, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.RecordMask{Record: rec, Reason: "illegal content, order 7"}}
		}, check: func(t *testing.T, c *chain, out *app.Output, id ledger.TxID) {
			r := recordOf(t, c, rec)
			if r.Masked == nil || r.Masked.By != *c.addr("regulator") || r.Masked.Reason != "illegal content, order 7" ||
				r.Masked.Time != c.time || r.Masked.Tx != id || r.Digest != gm.SM3(payload) {
				t.Fatalf("mask %+v", r.Masked)
			}
			if len(out.Erasures) != 1 || out.Erasures[0] != (app.PayloadErasure{Record: rec, Payload: gm.SM3(payload)}) {
				t.Fatalf("erasures %+v", out.Erasures)
			}
			if len(out.Events) != 1 || out.Events[0].Kind != app.EventExecuted || *out.Events[0].Record != rec {
				t.Fatalf("events %+v", out.Events)
			}
			// The same payload may not come back.
			again := c.tx(spec{from: "kiosk", payload: payload, body: &txs.RecordPut{
				RecordType: "port.manifest", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(payload))}})
			if r := c.run(again).Results[0]; r.Code != reason.PayloadErased {
				t.Fatalf("re-upload of masked payload: %s", r.Code)
			}
		}},
		{name: "not a regulator", want: reason.NotPermitted, setup: setup, spec: func(c *chain) spec {
			return spec{from: "admin1", body: &txs.RecordMask{Record: rec, Reason: "x"}}
		}},
		{name: "unknown record", want: reason.RecordNotFound, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.RecordMask{Record: digest("x"), Reason: "x"}}
		}},
		{name: "already masked", want: reason.RecordMasked, setup: func(c *chain) {
			setup(c)
			c.ok(spec{from: "regulator", body: &txs.RecordMask{Record: rec, Reason: "first"}})
		}, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.RecordMask{Record: rec, Reason: "second"}}
		}},
		{name: "empty reason", want: reason.BadBody, setup: setup, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.RecordMask{Record: rec}}
		}},
	})
}

func TestAuditAnchor(t *testing.T) {
	log := gm.KeyID(digest("node0-log"))
	first := &txs.AuditAnchor{Log: log, FirstSeq: 1, LastSeq: 10, From: 1, To: 5, Head: digest("h10")}
	runCases(t, []testCase{
		{name: "first segment", spec: func(c *chain) spec { return spec{from: "officer", body: first} },
			check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
				a, err := app.GetAnchor(c.store, log)
				if err != nil || a == nil || a.LastSeq != 10 || a.Head != digest("h10") || a.Tx != id {
					t.Fatalf("anchor %+v %v", a, err)
				}
			}},
		{name: "next segment", setup: func(c *chain) { c.ok(spec{from: "officer", body: first}) }, spec: func(c *chain) spec {
			return spec{from: "regulator", body: &txs.AuditAnchor{Log: log, FirstSeq: 11, LastSeq: 12, From: 5, To: 6, Prev: digest("h10"), Head: digest("h12")}}
		}},
		{name: "gap", want: reason.AnchorGap, setup: func(c *chain) { c.ok(spec{from: "officer", body: first}) }, spec: func(c *chain) spec {
			return spec{from: "officer", body: &txs.AuditAnchor{Log: log, FirstSeq: 12, LastSeq: 12, From: 5, To: 6, Prev: digest("h10"), Head: digest("h12")}}
		}},
		{name: "wrong previous head", want: reason.AnchorGap, setup: func(c *chain) { c.ok(spec{from: "officer", body: first}) }, spec: func(c *chain) spec {
			return spec{from: "officer", body: &txs.AuditAnchor{Log: log, FirstSeq: 11, LastSeq: 12, From: 5, To: 6, Prev: digest("forged"), Head: digest("h12")}}
		}},
		{name: "first segment not at 1", want: reason.AnchorGap, spec: func(c *chain) spec {
			return spec{from: "officer", body: &txs.AuditAnchor{Log: log, FirstSeq: 2, LastSeq: 3, From: 1, To: 2, Head: digest("h")}}
		}},
		{name: "member may not anchor", want: reason.NotPermitted, spec: func(c *chain) spec { return spec{from: "alice", body: first} }},
	})
}
