package exec

import (
	"bytes"
	"testing"
	"time"

	"hallmark/firmware/genesis"
	"hallmark/firmware/internal/testchain"
	"hallmark/storage"
)

// BenchmarkSnapshotRepeatedGet reads the same state key (an account, as
// every transaction of a block from one kiosk does) through one snapshot
// view, over a genesis-only store.
func BenchmarkSnapshotRepeatedGet(b *testing.B) {
	c := testchain.New(b, testchain.Options{Validators: testchain.SoftwareValidators(b, 4),
		Addrs: []string{"198.18.0.1:7400", "198.18.0.2:7400", "198.18.0.3:7400", "198.18.0.4:7400"}, Time: time.Now().UnixMilli()})
	g, err := genesis.Derive(c.Doc)
	if err != nil {
		b.Fatal(err)
	}
	st, err := storage.Open(b.TempDir(), storage.Options{ChainID: c.ID})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.CommitBlock(b.Context(), &storage.Batch{Block: g.Block, Validators: len(c.Doc.Validators), Writes: g.State.Writes}); err != nil {
		b.Fatal(err)
	}
	var key []byte
	for _, w := range g.State.Writes {
		if bytes.HasPrefix(w.Key, []byte("a/")) {
			key = w.Key
		}
	}
	b.ReportAllocs()
	err = st.View(func(sn *storage.Snapshot) error {
		v := SnapshotView(sn)
		for b.Loop() {
			if val, err := v.Get(key); err != nil || val == nil {
				b.Fatal(err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
