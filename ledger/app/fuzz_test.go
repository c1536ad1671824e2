package app_test

import (
	"encoding/binary"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// FuzzApplyRandomBlocks executes random valid-shaped blocks drawn from
// the fuzzer's seed: execution must not panic or fail as a whole, every
// transaction gets a known code, and the asset invariant holds.
func FuzzApplyRandomBlocks(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 42} {
		f.Add(s, uint8(6))
	}
	kc := keyCache{}
	f.Fuzz(func(t *testing.T, seed uint64, blocks uint8) {
		c := newChain(t, kc, nil)
		g := newGen(c, seed, kc)
		var sent []ledger.Transaction
		for range int(blocks%8) + 1 {
			b := g.block(1+g.r.IntN(8), sent)
			sent = append(sent, b.Txs...)
			out, err := c.x.ExecuteBlock(c.store, c.root, b)
			if err != nil {
				t.Fatalf("block refused: %v", err)
			}
			for _, r := range out.Results {
				if !r.Code.Known() || r.Code == reason.Internal {
					t.Fatalf("result code %d", r.Code)
				}
			}
			c.store.Apply(out.Writes)
			c.root, c.height, c.time = out.StateRoot, b.Header.Height, b.Header.Timestamp
			if err := supplyMatches(c.store); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzApplyRawBody executes a signed transaction of any type whose entity
// data, memo and recipient come from the fuzzer: a body that decodes must
// be handled, one that does not must fail with bad-body; nothing panics.
func FuzzApplyRawBody(f *testing.F) {
	types := ledger.TxTypes()
	kc := keyCache{}
	c0 := newChain(f, kc, nil)
	for i, b := range []txs.Body{
		&txs.RecordPut{RecordType: "note", Subject: *c0.addr("alice"), Digest: dptr("x")},
		&txs.AssetIssue{Symbol: "EB", Name: "n", Initial: 5},
		&txs.GrantAccess{RecordType: "*", Until: genesisTime + 1e6},
		&txs.GovApprove{Proposal: digest("p")},
	} {
		enc, _ := txs.Encode(b)
		for j, tt := range types {
			if tt == b.TxType() {
				f.Add(uint8(j), uint8(i), enc, "memo", true)
			}
		}
	}
	f.Fuzz(func(t *testing.T, ti, who uint8, data []byte, memo string, withRecipient bool) {
		if len(data) > ledger.MaxDataBytes || len(memo) > ledger.MaxMemoBytes {
			return
		}
		c := newChain(t, kc, nil)
		from := genesisActors[int(who)%len(genesisActors)].name
		s := spec{typ: types[int(ti)%len(types)], from: from, data: data, memo: memo}
		if withRecipient {
			s.to = c.addr("bob")
		}
		if len(data) == 0 {
			s.data = []byte{} // Data is never nil here: an empty body
		}
		tx := c.tx(s)
		if tx.Validate() != nil {
			return // not valid-shaped (e.g. a memo that is not UTF-8)
		}
		out, err := c.x.ExecuteBlock(c.store, c.root, c.nextBlock(tx))
		if err != nil {
			t.Fatalf("block refused: %v", err)
		}
		r := out.Results[0]
		if _, decErr := txs.Decode(tx.Body.Type, tx.Body.Entity.Data); decErr != nil && r.Code != reason.BadBody {
			t.Fatalf("undecodable body gave %s", r.Code)
		}
		if !r.Code.Known() || r.Code == reason.Internal {
			t.Fatalf("result code %d", r.Code)
		}
	})
}

// kioskRecordPuts returns n record.puts from the chain's kiosk, about 97
// different subjects, as a busy service hall sends them.
func kioskRecordPuts(c *chain, n int) []ledger.Transaction {
	list := make([]ledger.Transaction, n)
	for i := range list {
		var subj ledger.Address
		binary.BigEndian.PutUint64(subj[:], uint64(i%97)+1)
		d := gm.SM3(subj[:8])
		list[i] = c.tx(spec{from: "kiosk", body: &txs.RecordPut{
			RecordType: "customs.declaration", Subject: subj, Digest: &d}})
	}
	return list
}

// BenchmarkApplyBlock executes a block of 1,000 record puts on a state
// with genesis applied and reports transactions applied per second.
// "no-verify" leaves out SM2 signature verification (the node verifies
// each transaction once, at admission, and remembers it), so the figure
// is execution's own share of the per-transaction budget; "verify"
// includes it for comparison.
func BenchmarkApplyBlock(b *testing.B) {
	c := newChain(b, keyCache{}, nil)
	list := kioskRecordPuts(c, 1000)
	block := c.nextBlock(list...)
	for _, mode := range []struct {
		name string
		x    *app.Executor
	}{
		{"records=1000/no-verify", app.New(app.WithSignatureCheck(func(*ledger.Transaction) error { return nil }))},
		{"records=1000/verify", app.New()},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := mode.x.ExecuteBlock(c.store, c.root, block)
				if err != nil || !out.Results[999].OK() {
					b.Fatalf("execute: %v", err)
				}
			}
			b.ReportMetric(float64(len(list)*b.N)/b.Elapsed().Seconds(), "tx/s")
		})
	}
}
