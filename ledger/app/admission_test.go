package app_test

import (
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func simplePut(c *chain, from string) spec {
	return spec{from: from, body: &txs.RecordPut{RecordType: "note", Subject: *c.addr(from), Digest: dptr("n")}}
}

// TestAdmission covers the checks every transaction type goes through.
func TestAdmission(t *testing.T) {
	kc := keyCache{}
	stranger := kc.key(t, "stranger")
	runCases(t, []testCase{
		{name: "accepted", spec: func(c *chain) spec { return simplePut(c, "alice") }},
		{name: "wrong chain", want: reason.WrongChain, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.chain = "other-chain"
			return s
		}},
		{name: "unknown type", want: reason.UnknownType, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.typ = 0x0999
			return s
		}},
		{name: "body of another type", want: reason.BadBody, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.typ = ledger.TxAssetTransfer
			s.to = c.addr("bob")
			return s
		}},
		{name: "non-canonical body", want: reason.BadBody, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			enc, _ := txs.Encode(s.body)
			s.data = append(enc, 0) // trailing byte
			return s
		}},
		{name: "too old", want: reason.TooOld, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.ts = c.time + blockStep - int64(ledger.DefaultParams().TxWindowMs) - 1
			return s
		}},
		{name: "at the window's edge", spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.ts = c.time + blockStep + int64(ledger.DefaultParams().TxWindowMs)
			return s
		}},
		{name: "too new", want: reason.TooNew, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.ts = c.time + blockStep + int64(ledger.DefaultParams().TxWindowMs) + 1
			return s
		}},
		{name: "unknown sender", want: reason.UnknownSender, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			a := ledger.AddressOf(stranger.PublicKey())
			s.sender, s.signers = &a, []gm.Signer{stranger}
			return s
		}},
		{name: "frozen sender", want: reason.SenderFrozen, setup: func(c *chain) {
			c.ok(spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountFreeze{Reason: "fraud"}})
		}, spec: func(c *chain) spec { return simplePut(c, "alice") }},
		{name: "sender did not sign", want: reason.SenderNotSigner, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.signers = c.signers("bob")
			return s
		}},
		{name: "extra signer", want: reason.UnexpectedSigner, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.signers = c.signers("alice", "bob")
			return s
		}},
		{name: "blocked sender", want: reason.FilterSender, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{BlockedSenders: []ledger.Address{*c.addr("alice")}})
		}, spec: func(c *chain) spec { return simplePut(c, "alice") }},
		{name: "keyword in memo", want: reason.FilterKeyword, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{Keywords: []string{"forbidden", "违禁"}})
		}, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.memo = "含有违禁词的备注"
			return s
		}},
		{name: "keyword folds ASCII case", want: reason.FilterKeyword, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{Keywords: []string{"forbidden"}})
		}, spec: func(c *chain) spec {
			return spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB", Name: "A ForBidden bill"}}
		}},
		{name: "memo over the rule's size", want: reason.FilterSize, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{MaxMemoBytes: 8})
		}, spec: func(c *chain) spec {
			s := simplePut(c, "alice")
			s.memo = "nine byte"
			return s
		}},
		{name: "governance is exempt from the filter", setup: func(c *chain) {
			setFilter(c, txs.FilterRules{BlockedSenders: []ledger.Address{*c.addr("admin1")}, Keywords: []string{"forbidden"}})
		}, spec: func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), memo: "forbidden", body: &txs.FilterUpdate{}}
		}},
	})
}

func TestBadSignatureLeavesNoTrace(t *testing.T) {
	c := newChain(t, nil, nil)
	tx := c.tx(simplePut(c, "alice"))
	forged := tx
	forged.Signatures = []gm.Signature{{1, 2, 3}}
	out := c.run(forged)
	if out.Results[0].Code != reason.BadSignature {
		t.Fatalf("code %s", out.Results[0].Code)
	}
	// The forgery did not consume the id: the real transaction still goes in.
	if r := c.run(tx).Results[0]; !r.OK() {
		t.Fatalf("genuine transaction after forgery: %s %s", r.Code, r.Detail)
	}
}

func TestMalformedAndVersion(t *testing.T) {
	c := newChain(t, nil, nil)
	tx := c.tx(simplePut(c, "alice"))
	tx.Body.Version = 9
	if r := c.run(tx).Results[0]; r.Code != reason.UnsupportedVersion {
		t.Fatalf("version: %s", r.Code)
	}
	tx = c.tx(simplePut(c, "alice"))
	tx.Signatures = nil // signer count mismatch: structural
	if r := c.run(tx).Results[0]; r.Code != reason.Malformed {
		t.Fatalf("structure: %s", r.Code)
	}
}

func TestReplay(t *testing.T) {
	c := newChain(t, nil, nil)
	tx := c.tx(simplePut(c, "alice"))
	if r := c.run(tx).Results[0]; !r.OK() {
		t.Fatal(r.Code)
	}
	if r := c.run(tx).Results[0]; r.Code != reason.Duplicate {
		t.Fatalf("replay in a later block: %s", r.Code)
	}
	ok, err := app.Executed(c.store, tx.ID(), tx.Body.Timestamp)
	if err != nil || !ok {
		t.Fatalf("executed: %v %v", ok, err)
	}

	// Twice in one block: the second is a duplicate.
	tx2 := c.tx(simplePut(c, "bob"))
	b := c.nextBlock(tx2, tx2)
	out, err := c.x.ExecuteBlock(c.store, c.root, b)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Results[0].OK() || out.Results[1].Code != reason.Duplicate {
		t.Fatalf("results %+v", out.Results)
	}

	// A transaction that fails after admission consumes its id: it cannot
	// come back and succeed later.
	transfer := c.tx(spec{from: "alice", to: c.addr("bob"), body: &txs.AssetTransfer{Symbol: "EB", Amount: 1}})
	if r := c.run(transfer).Results[0]; r.Code != reason.AssetNotFound {
		t.Fatalf("transfer of a missing asset: %s", r.Code)
	}
	c.ok(spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB", Name: "bill", Initial: 10}})
	c.ok(spec{from: "issuer", to: c.addr("alice"), body: &txs.AssetAllocate{Symbol: "EB", Amount: 5}})
	if r := c.run(transfer).Results[0]; r.Code != reason.Duplicate {
		t.Fatalf("failed transaction replayed: %s", r.Code)
	}

	// A transaction refused as too new leaves no trace and is accepted
	// once its time has come.
	early := c.tx(simplePut(c, "bob"))
	early.Body.Timestamp = c.time + blockStep + int64(ledger.DefaultParams().TxWindowMs) + 2*blockStep
	early = resign(t, c, early, "bob")
	if r := c.run(early).Results[0]; r.Code != reason.TooNew {
		t.Fatalf("early: %s", r.Code)
	}
	c.run()
	c.run()
	if r := c.run(early).Results[0]; !r.OK() {
		t.Fatalf("early transaction when due: %s %s", r.Code, r.Detail)
	}
}

func resign(t *testing.T, c *chain, tx ledger.Transaction, names ...string) ledger.Transaction {
	t.Helper()
	tx.Signatures = nil
	for _, n := range names {
		if err := tx.Sign(t.Context(), c.keys[n]); err != nil {
			t.Fatal(err)
		}
	}
	return tx
}

func countPrefix(c *chain, prefix string) int {
	n := 0
	c.store.Each(func(k, _ []byte) {
		if strings.HasPrefix(string(k), prefix) {
			n++
		}
	})
	return n
}

// TestReplayMarkersArePruned checks that the executed-id markers do not
// grow without bound: once the window has passed, they are deleted, and
// the old transaction is refused as too old instead.
func TestReplayMarkersArePruned(t *testing.T) {
	c := newChain(t, nil, func(d *app.GenesisDoc) { d.Params.TxWindowMs = 3 * uint64(blockStep) })
	var first ledger.Transaction
	for i := range 10 {
		tx := c.tx(simplePut(c, "alice"))
		if i == 0 {
			first = tx
		}
		if r := c.run(tx).Results[0]; !r.OK() {
			t.Fatalf("block %d: %s %s", i, r.Code, r.Detail)
		}
		// Markers live for the window (3 blocks) plus the current one.
		if n := countPrefix(c, "x/"); n > 4 {
			t.Fatalf("block %d: %d markers kept, want at most 4", i, n)
		}
	}
	if r := c.run(first).Results[0]; r.Code != reason.TooOld {
		t.Fatalf("replay after pruning: %s", r.Code)
	}
}

// TestHorizonAfterWindowGrows: when governance widens the window, ids
// pruned under the old window stay refused.
func TestHorizonAfterWindowGrows(t *testing.T) {
	c := newChain(t, nil, func(d *app.GenesisDoc) { d.Params.TxWindowMs = 2 * uint64(blockStep) })
	old := c.tx(simplePut(c, "alice"))
	c.run(old)
	for range 4 {
		c.run()
	}
	p := c.doc.Params
	p.TxWindowMs = 60 * uint64(blockStep)
	c.ok(spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.ParamsChange{Params: p}})
	if r := c.run(old).Results[0]; r.Code != reason.TooOld {
		t.Fatalf("replay across a window change: %s", r.Code)
	}
}

func TestBlockLevelErrors(t *testing.T) {
	c := newChain(t, nil, nil)
	b := c.nextBlock()
	b.Header.Height = 5
	if _, err := c.x.ExecuteBlock(c.store, c.root, b); err == nil {
		t.Fatal("wrong height accepted")
	}
	b = c.nextBlock()
	b.Header.Timestamp = c.time
	if _, err := c.x.ExecuteBlock(c.store, c.root, b); err == nil {
		t.Fatal("non-increasing time accepted")
	}
	b = c.nextBlock()
	b.Header.ChainID = "other"
	if _, err := c.x.ExecuteBlock(c.store, c.root, b); err == nil {
		t.Fatal("other chain accepted")
	}
	if _, err := c.x.ExecuteBlock(app.NewMemStore(), c.root, c.nextBlock()); err == nil {
		t.Fatal("empty state accepted")
	}
}
