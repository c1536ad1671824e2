package storage_test

import (
	"bytes"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/storage"
)

// TestCommitBlocksGroup stores three blocks in one transaction: a payload
// shared by two of them is written once, a mask in the first erases a
// payload the third carries, and every block reads back and verifies.
func TestCommitBlocksGroup(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 4)
	commit(t, s, forNode(c.block(blockSpec{txs: 3, dataSize: 40}), 1))

	shared, secret := []byte("a payload two blocks carry"), []byte("a payload masked in the same group")
	b1 := forNode(c.block(blockSpec{txs: 5, dataSize: 60, payloads: [][]byte{shared}}), 1)
	b1.Masks = []storage.Mask{{Digest: gm.SM3(secret), Time: 1, Height: b1.Block.Header.Height, By: "regulator"}}
	b2 := forNode(c.block(blockSpec{txs: 7, dataSize: 60, payloads: [][]byte{shared}}), 1)
	b3 := forNode(c.block(blockSpec{txs: 2, dataSize: 60, payloads: [][]byte{secret}}), 1)
	if err := s.CommitBlocks(ctx, []*storage.Batch{b1, b2, b3}); err != nil {
		t.Fatal(err)
	}
	tip, ok := s.Tip()
	if !ok || tip.Height != 3 || tip.ID != b3.Block.Header.ID() {
		t.Fatalf("tip %+v, want block 3 %s", tip, b3.Block.Header.ID())
	}
	got, err := s.Payload(gm.SM3(shared))
	if err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("shared payload: %q, %v", got, err)
	}
	if _, err := s.Payload(gm.SM3(secret)); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("payload masked in the group: %v, want ErrMasked", err)
	}
	for _, b := range []*storage.Batch{b1, b2, b3} {
		for i := range b.Block.Txs {
			loc, err := s.TxLocation(b.Block.Txs[i].ID())
			if err != nil || loc.Height != b.Block.Header.Height || loc.Index != i {
				t.Fatalf("tx %d of block %d: %+v, %v", i, b.Block.Header.Height, loc, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	for _, b := range []*storage.Batch{b1, b2, b3} {
		blk, err := s.Block(ctx, b.Block.Header.Height, nil)
		if err != nil || blk.Header.ID() != b.Block.Header.ID() || len(blk.Txs) != len(b.Block.Txs) {
			t.Fatalf("block %d after reopening: %v", b.Block.Header.Height, err)
		}
	}
	if scanDir(t, dir, secret) != nil {
		t.Fatal("the masked payload's bytes are still on disk")
	}
}

// TestCommitBlocksAllOrNothing: a group with one bad block, or with a
// transaction in two of its blocks, writes nothing at all.
func TestCommitBlocksAllOrNothing(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	c := newChain(t, 4)
	commit(t, s, forNode(c.block(blockSpec{txs: 3, dataSize: 40}), 1))

	b1 := forNode(c.block(blockSpec{txs: 4, dataSize: 40, payloads: [][]byte{[]byte("p1")}}), 1)
	after1 := *c // the chain builder as it stands after block 1
	b2 := forNode(c.block(blockSpec{txs: 4, dataSize: 40}), 1)
	bad := *b2
	bad.Writes = append([]ledger.Write{{Key: []byte("extra"), Value: []byte("x")}}, b2.Writes...)
	refused := func(what string, group ...*storage.Batch) {
		t.Helper()
		if err := s.CommitBlocks(ctx, group); !errors.Is(err, storage.ErrMismatch) {
			t.Fatalf("group with %s: %v, want ErrMismatch", what, err)
		}
		if tip, _ := s.Tip(); tip.Height != 0 {
			t.Fatalf("tip %d after a refused group", tip.Height)
		}
		if _, err := s.TxLocation(b1.Block.Txs[0].ID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("tx of a refused group: %v", err)
		}
		if _, err := s.Payload(gm.SM3([]byte("p1"))); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("payload of a refused group: %v", err)
		}
	}
	refused("a bad state root", b1, &bad)

	// A block 2 that repeats a transaction of block 1 is refused inside
	// the write transaction, after block 1's records were put.
	fresh := after1.block(blockSpec{txs: 2, dataSize: 40}).Block.Txs
	after1 = *c
	after1.next, after1.prevID, after1.stateRoot = 2, b1.Block.Header.ID(), b1.Block.Header.StateRoot
	dup := forNode(after1.seal(append([]ledger.Transaction{b1.Block.Txs[0]}, fresh...)), 1)
	refused("a repeated transaction", b1, dup)

	if err := s.CommitBlocks(ctx, []*storage.Batch{b1, b2}); err != nil {
		t.Fatal(err)
	}
	if tip, _ := s.Tip(); tip.Height != 2 || tip.ID != b2.Block.Header.ID() {
		t.Fatalf("tip %d %s, want block 2", tip.Height, tip.ID)
	}
}

// Absent keys and transactions give ErrNotFound with what was looked for.
func TestNotFoundErrors(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	commit(t, s, forNode(newChain(t, 4).block(blockSpec{txs: 1}), 1))
	long := bytes.Repeat([]byte("k"), 100)
	_, _, err := s.Get(long)
	if !errors.Is(err, storage.ErrNotFound) || err.Error() != `storage: not found: state key "`+string(long[:48])+`…"` {
		t.Fatalf("absent state key: %v", err)
	}
	var id ledger.TxID
	id[0] = 0xab
	_, err = s.TxLocation(id)
	if !errors.Is(err, storage.ErrNotFound) || err.Error() != "storage: not found: transaction ab00000000000000" {
		t.Fatalf("absent transaction: %v", err)
	}
}
