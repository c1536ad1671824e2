package exec

import (
	"bytes"
	"testing"

	"hallmark/firmware/genesis"
	"hallmark/ledger/app"
	"hallmark/storage"
)

// TestSnapshotViewRemembers: a snapshot view over a real store answers
// every key as the store does, from its memory the second time, and its
// answers stay valid after the snapshot ends.
func TestSnapshotViewRemembers(t *testing.T) {
	c := fourNodes(t)
	g, err := genesis.Derive(c.Doc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(t.TempDir(), storage.Options{ChainID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CommitBlock(t.Context(), &storage.Batch{Block: g.Block, Validators: len(c.Doc.Validators), ShardIndex: 0, Writes: g.State.Writes}); err != nil {
		t.Fatal(err)
	}
	var first, second [][]byte
	err = st.View(func(sn *storage.Snapshot) error {
		v := SnapshotView(sn)
		for _, pass := range []*[][]byte{&first, &second} {
			for _, w := range g.State.Writes {
				got, err := v.Get(w.Key)
				if err != nil {
					return err
				}
				*pass = append(*pass, got)
			}
			if got, err := v.Get([]byte("no such key")); err != nil || got != nil {
				t.Fatalf("absent key: %x, %v", got, err)
			}
		}
		if n := len(v.(*snapView).found); n != len(g.State.Writes) {
			t.Fatalf("the view remembers %d values, want %d", n, len(g.State.Writes))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range g.State.Writes {
		if !bytes.Equal(first[i], w.Value) || !bytes.Equal(second[i], w.Value) {
			t.Fatalf("key %q: %x then %x, stored %x", w.Key, first[i], second[i], w.Value)
		}
	}
	// The same answers through the application's reads.
	err = st.View(func(sn *storage.Snapshot) error {
		v := SnapshotView(sn)
		for range 2 {
			vs, err := app.Validators(v)
			if err != nil {
				return err
			}
			if vs.N() != len(c.Doc.Validators) {
				t.Fatalf("%d validators", vs.N())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
