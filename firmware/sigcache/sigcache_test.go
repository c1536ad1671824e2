package sigcache

import (
	"errors"
	"testing"

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
