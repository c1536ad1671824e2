package storage_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

func TestWindowPrunesBodiesAndKeepsState(t *testing.T) {
	c := newCluster(t, 4, storage.Options{Window: 3})
	var batches []*storage.Batch
	for range 8 {
		batches = append(batches, c.commit(blockSpec{txs: 3, dataSize: 200}))
	}
	s := c.stores[0]
	// Heights 5..7 are in the window; 0..4 keep only node 0's shard.
	for h := range uint64(8) {
		_, err := s.Body(ctx, h, nil)
		switch {
		case h >= 5 && err != nil:
			t.Fatalf("body %d inside the window: %v", h, err)
		case h < 5 && !errors.Is(err, storage.ErrUnavailable):
			t.Fatalf("body %d outside the window without peers: %v, want ErrUnavailable", h, err)
		}
	}
	// State stays complete.
	for h := range 8 {
		if _, _, err := s.Get([]byte("prev/0000000" + string(rune('0'+h)))); err != nil {
			t.Fatalf("state of block %d: %v", h, err)
		}
	}
	// With peers, an old body comes back, verified, and transactions with
	// their proofs.
	f := c.fetcher()
	blk, err := s.Block(ctx, 1, f)
	if err != nil {
		t.Fatal(err)
	}
	if blk.ID() != batches[1].Block.ID() || blk.CheckBody() != nil {
		t.Fatal("rebuilt block differs")
	}
	tx := batches[2].Block.Txs[2]
	inc, err := s.Tx(ctx, tx.ID(), f)
	if err != nil {
		t.Fatal(err)
	}
	id := tx.ID()
	if err := inc.Proof.Verify(inc.Header.TxRoot, id[:]); err != nil {
		t.Fatal(err)
	}
	// A rebuilt body outside the window is not written back.
	if _, err := s.Body(ctx, 1, nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("rebuilt body outside the window was kept: %v", err)
	}
}

func TestArchiveKeepsAndRestoresBodies(t *testing.T) {
	c := newCluster(t, 4, storage.Options{Window: 2})
	for range 6 {
		c.commit(blockSpec{txs: 2, dataSize: 100})
	}
	// Node 1 becomes an archive node: scrub restores the pruned bodies.
	c.stores[1].Close()
	c.stores[1] = openStore(t, c.dirs[1], storage.Options{Window: 2, Archive: true})
	rep, err := c.stores[1].Scrub(ctx, storage.ScrubOptions{Fetcher: c.fetcher()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BodiesRestored != 4 || rep.Unrepaired != 0 {
		t.Fatalf("scrub report %+v, want 4 bodies restored", rep)
	}
	c.commit(blockSpec{txs: 2})
	for h := range uint64(7) {
		if _, err := c.stores[1].Body(ctx, h, nil); err != nil {
			t.Fatalf("archive node, body %d: %v", h, err)
		}
	}
	// Back to a window of 2: Prune drops what is outside.
	c.stores[1].Close()
	c.stores[1] = openStore(t, c.dirs[1], storage.Options{Window: 2})
	n, err := c.stores[1].Prune(ctx)
	if err != nil || n != 5 {
		t.Fatalf("prune dropped %d, %v; want 5", n, err)
	}
	if _, err := c.stores[1].Body(ctx, 4, nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("pruned body: %v", err)
	}
}

func TestRebuildRejectsBadShardsAndReportsHolder(t *testing.T) {
	c := newCluster(t, 7, storage.Options{Window: 1}) // k = 3
	b := c.commit(blockSpec{txs: 5, dataSize: 300})
	c.commit(blockSpec{txs: 1})
	f := c.fetcher()
	f.corrupt[1] = true
	f.corrupt[2] = true
	f.offline[3] = true
	body, err := c.stores[0].Body(ctx, 0, f)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ledger.EncodeBody(b.Block.Txs)
	if !bytes.Equal(body, want) {
		t.Fatal("rebuilt body differs")
	}
	slices.Sort(f.reported)
	if !slices.Equal(f.reported, []int{1, 2}) {
		t.Fatalf("reported holders %v, want [1 2]", f.reported)
	}
	// Too few honest holders left: a clear error, not a wrong body.
	f.offline[4], f.offline[5] = true, true
	if _, err := c.stores[0].Body(ctx, 0, f); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("with 2 good shards of 3: %v, want ErrUnavailable", err)
	}
}

// storedValue reads the value of key in bucket from a closed store's file.
func storedValue(t *testing.T, path string, bucket string, key []byte) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var val []byte
	db.View(func(tx *bolt.Tx) error {
		val = bytes.Clone(tx.Bucket([]byte(bucket)).Get(key))
		return nil
	})
	if val == nil {
		t.Fatalf("%s/%x missing", bucket, key)
	}
	return val
}

func heightKey(h uint64) []byte {
	var k [8]byte
	for i := range 8 {
		k[7-i] = byte(h >> (8 * i))
	}
	return k[:]
}

// corruptValue finds every copy of the value of key in bucket in the
// closed store's file (bbolt leaves stale copies in freed pages; one copy
// is live) and flips bits at the given offsets inside each.
func corruptValue(t *testing.T, path, bucket string, key []byte, at ...int) {
	t.Helper()
	val := storedValue(t, path, bucket, key)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	copies := 0
	for off := 0; ; {
		i := bytes.Index(data[off:], val)
		if i < 0 {
			break
		}
		base := int64(off + i)
		for _, a := range at {
			if _, err := f.WriteAt([]byte{data[base+int64(a)] ^ 0x41}, base+int64(a)); err != nil {
				t.Fatal(err)
			}
		}
		copies++
		off += i + len(val)
	}
	if copies == 0 {
		t.Fatalf("value of %s/%x not found in %s", bucket, key, path)
	}
}

// The brief's test: bits flipped directly in the bbolt file must be found
// by a scrub and repaired from peers' shards.
func TestScrubRepairsBitFlipsInTheFile(t *testing.T) {
	c := newCluster(t, 4, storage.Options{Window: 2})
	var batches []*storage.Batch
	for range 6 {
		batches = append(batches, c.commit(blockSpec{txs: 4, dataSize: 500}))
	}
	const node = 3 // holds a parity shard: its bytes appear nowhere else
	path := filepath.Join(c.dirs[node], "hallmark.db")
	c.stores[node].Close()

	// Corrupt the shard of block 1 (body pruned: only peers can help), the
	// shard of block 5 (body in the window: repairable locally) and the
	// body of block 4.
	for _, h := range []uint64{1, 5} {
		n := len(storedValue(t, path, "shards", heightKey(h)))
		corruptValue(t, path, "shards", heightKey(h), n/2, n-3)
	}
	corruptValue(t, path, "bodies", heightKey(4), 100)
	// And remove block 2's shard outright.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("shards")).Delete(heightKey(2)) })
	db.Close()

	c.stores[node] = openStore(t, c.dirs[node], c.opts)
	s := c.stores[node]
	for _, h := range []uint64{1, 2, 5} {
		if _, err := s.Shard(h); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("damaged shard %d: %v, want ErrCorrupt", h, err)
		}
	}

	f := c.fetcher()
	rep, err := s.Scrub(ctx, storage.ScrubOptions{Fetcher: f, BytesPerSecond: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scrub: %+v", rep)
	if rep.ShardsRepaired != 3 || rep.BodiesRepaired != 1 || rep.Unrepaired != 0 || rep.Blocks != 6 {
		t.Fatalf("scrub report %+v, want 3 shards and 1 body repaired", rep)
	}
	for h, b := range batches {
		sh, err := s.Shard(uint64(h))
		if err != nil {
			t.Fatalf("shard %d after scrub: %v", h, err)
		}
		body, _ := ledger.EncodeBody(b.Block.Txs)
		shards, _, _ := erasure.NewShards(body, 4)
		if !bytes.Equal(sh.Data, shards[node].Data) {
			t.Fatalf("shard %d after scrub differs from the encoding", h)
		}
	}
	if body, err := s.Body(ctx, 4, nil); err != nil || uint64(len(body)) != batches[4].Block.Header.BodySize {
		t.Fatalf("body 4 after scrub: %v", err)
	}
	// A second pass finds nothing.
	rep, err = s.Scrub(ctx, storage.ScrubOptions{Fetcher: f})
	if err != nil || rep.ShardsRepaired+rep.BodiesRepaired+rep.Unrepaired != 0 {
		t.Fatalf("second scrub %+v, %v", rep, err)
	}
}

func TestScrubWithoutPeersReportsWhatItCannotFix(t *testing.T) {
	c := newCluster(t, 4, storage.Options{Window: 1})
	for range 3 {
		c.commit(blockSpec{txs: 2, dataSize: 100})
	}
	path := filepath.Join(c.dirs[2], "hallmark.db")
	c.stores[2].Close()
	corruptValue(t, path, "shards", heightKey(0), 40)
	c.stores[2] = openStore(t, c.dirs[2], c.opts)
	rep, err := c.stores[2].Scrub(ctx, storage.ScrubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unrepaired != 1 || rep.ShardsRepaired != 0 || len(rep.Problems) != 1 || !errors.Is(rep.Problems[0], storage.ErrUnavailable) {
		t.Fatalf("report %+v", rep)
	}
}

// Reading a pruned body when this node's own shard is damaged still
// works, and repairs the shard on the way.
func TestBodyReadRepairsOwnShard(t *testing.T) {
	c := newCluster(t, 4, storage.Options{Window: 1})
	c.commit(blockSpec{txs: 3, dataSize: 100})
	c.commit(blockSpec{txs: 1})
	path := filepath.Join(c.dirs[0], "hallmark.db")
	c.stores[0].Close()
	corruptValue(t, path, "shards", heightKey(0), len(storedValue(t, path, "shards", heightKey(0)))-1)
	c.stores[0] = openStore(t, c.dirs[0], c.opts)
	if _, err := c.stores[0].Body(ctx, 0, c.fetcher()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.stores[0].Shard(0); err != nil {
		t.Fatalf("own shard after a rebuilding read: %v", err)
	}
}
