package storage_test

import (
	"fmt"
	"testing"

	"hallmark/ledger"
	"hallmark/storage"
)

// Kept blocks survive a reopen, are returned only above the tip, are
// dropped by the commit that reaches their height, and can be released.
func TestKeptBlocks(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{})) // genesis-like block 0
	commit(t, s, c.block(blockSpec{txs: 1}))

	kb := func(h uint64, tag string) storage.KeptBlock {
		return storage.KeptBlock{Height: h, ID: ledger.BlockID{byte(h), tag[0]}, Data: fmt.Appendf(nil, "block %d %s", h, tag)}
	}
	if err := s.SaveSafety(ctx, []byte("r3"), kb(2, "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSafety(ctx, []byte("r4"), kb(2, "b"), kb(3, "c")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSafety(ctx, []byte("r5")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	got, err := s.KeptBlocks()
	if err != nil || len(got) != 3 {
		t.Fatalf("kept after reopen: %d, %v", len(got), err)
	}
	for _, k := range got {
		if want := kb(k.Height, string(rune(k.ID[1]))); string(k.Data) != string(want.Data) {
			t.Fatalf("kept %d: %q, want %q", k.Height, k.Data, want.Data)
		}
	}
	if safety, _ := s.LoadSafety(); string(safety) != "r5" {
		t.Fatalf("safety %q", safety)
	}

	// Committing height 2 drops both blocks kept at height 2.
	commit(t, s, c.block(blockSpec{txs: 1}))
	got, _ = s.KeptBlocks()
	if len(got) != 1 || got[0].Height != 3 {
		t.Fatalf("after commit of 2: %+v", got)
	}
	if err := s.ReleaseKept(ctx, got[0].ID); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.KeptBlocks(); len(got) != 0 {
		t.Fatalf("after release: %+v", got)
	}
	if err := s.SaveSafety(ctx, nil, storage.KeptBlock{Height: 9}); err == nil {
		t.Fatal("an empty kept block was accepted")
	}
}
