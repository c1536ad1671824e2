package sigcache

import (
	"errors"
	"slices"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
)

func TestVerifiesOnceAndRefusesAlteredSignatures(t *testing.T) {
	key := ledgertest.Key(t)
	txs := ledgertest.Txs(t, key, 8, 16)
	c := New(100)
	ptrs := make([]*ledger.Transaction, len(txs))
	for i := range txs {
		ptrs[i] = &txs[i]
	}
	for _, err := range c.CheckAll(ptrs, 4) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Verified != 8 || s.Hits != 0 || s.Size != 8 {
		t.Fatalf("after first pass: %+v", s)
	}
	for _, err := range c.CheckAll(ptrs, 4) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Verified != 8 || s.Hits != 8 {
		t.Fatalf("second pass verified again: %+v", s)
	}

	// Same id, another signature: not in the cache, and it fails.
	bad := txs[0]
	bad.Signatures = append(bad.Signatures[:0:0], bad.Signatures...)
	bad.Signatures[0][10] ^= 1
	if bad.ID() != txs[0].ID() {
		t.Fatal("signatures changed the id")
	}
	if c.Has(&bad) {
		t.Fatal("a transaction with an altered signature counts as verified")
	}
	if err := c.Check(&bad); !errors.Is(err, ledger.ErrSignature) {
		t.Fatalf("altered signature: %v", err)
	}
	if c.Has(&bad) {
		t.Fatal("a failed transaction was remembered")
	}
	if s := c.Stats(); s.Failed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBounded(t *testing.T) {
	key := ledgertest.Key(t)
	txs := ledgertest.Txs(t, key, 25, 4)
	c := New(10)
	for i := range txs {
		c.Add(&txs[i])
		if s := c.Stats(); s.Size > 10 {
			t.Fatalf("size %d after %d adds", s.Size, i+1)
		}
	}
	if !c.Has(&txs[24]) {
		t.Fatal("the newest entry was dropped")
	}
	if c.Has(&txs[0]) {
		t.Fatal("the oldest entry survived")
	}
}

// TestSecondSignatureCompared: with two signers, a change to the second
// signature alone is not a cache hit.
func TestSecondSignatureCompared(t *testing.T) {
	k1, k2 := ledgertest.Key(t), ledgertest.Key(t)
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: ledgertest.ChainID, Type: ledger.TxRecordPut, Timestamp: 1_700_000_000_000,
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(k1.PublicKey()), ledger.KeyBytes(k2.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(k1.PublicKey())},
	}}
	for _, k := range []*gm.PrivateKey{k1, k2} {
		if err := tx.Sign(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if KeyOf(&tx) != Key(tx.ID(), tx.Signatures) {
		t.Fatal("KeyOf differs from Key")
	}
	c := New(10)
	if err := c.Check(&tx); err != nil {
		t.Fatal(err)
	}
	bad := tx
	bad.Signatures = slices.Clone(tx.Signatures)
	bad.Signatures[1][3] ^= 1
	if c.Has(&bad) {
		t.Fatal("an altered second signature counts as verified")
	}
	if err := c.Check(&bad); !errors.Is(err, ledger.ErrSignature) {
		t.Fatalf("altered second signature: %v", err)
	}
	short := tx
	short.Signatures = tx.Signatures[:1]
	if c.Has(&short) {
		t.Fatal("a prefix of the signatures counts as verified")
	}
	if !c.Has(&tx) {
		t.Fatal("the verified transaction was forgotten")
	}
}

// BenchmarkCheckHit is the cost of a check the cache answers: the node
// asks it for every transaction at admission, in proposals and in
// execution.
func BenchmarkCheckHit(b *testing.B) {
	key := ledgertest.Key(b)
	txs := ledgertest.Txs(b, key, 256, 64)
	c := New(1024)
	for i := range txs {
		c.Add(&txs[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := c.Check(&txs[i%len(txs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
