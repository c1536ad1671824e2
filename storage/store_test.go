package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

var ctx = context.Background()

func TestOpenRecordsMetaAndReportsTip(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	if _, ok := s.Tip(); ok {
		t.Fatal("new store has a tip")
	}
	m, err := s.Meta()
	if err != nil {
		t.Fatal(err)
	}
	if m.Schema != storage.SchemaVersion || m.ChainID != ledgertest.ChainID || m.Created.IsZero() {
		t.Fatalf("meta = %+v", m)
	}
	c := newChain(t, 4)
	var last *storage.Batch
	for range 3 {
		last = c.block(blockSpec{txs: 2, dataSize: 100})
		commit(t, s, forNode(last, 1))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	tip, ok := s.Tip()
	if !ok || tip.Height != 2 || tip.ID != last.Block.ID() {
		t.Fatalf("tip after reopen = %d %s, want 2 %s", tip.Height, tip.ID, last.Block.ID())
	}
}

func TestOpenRefusesForeignStores(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})

	t.Run("in use", func(t *testing.T) {
		_, err := storage.Open(dir, storage.Options{ChainID: ledgertest.ChainID, LockTimeout: 50 * time.Millisecond})
		if !errors.Is(err, storage.ErrInUse) {
			t.Fatalf("second open: %v, want ErrInUse", err)
		}
	})
	s.Close()

	t.Run("other chain", func(t *testing.T) {
		_, err := storage.Open(dir, storage.Options{ChainID: "another-chain"})
		if !errors.Is(err, storage.ErrChainMismatch) {
			t.Fatalf("got %v, want ErrChainMismatch", err)
		}
	})

	t.Run("newer schema", func(t *testing.T) {
		setMeta(t, filepath.Join(dir, "hallmark.db"), "schema", binary.BigEndian.AppendUint32(nil, storage.SchemaVersion+1))
		_, err := storage.Open(dir, storage.Options{ChainID: ledgertest.ChainID})
		if !errors.Is(err, storage.ErrSchemaTooNew) {
			t.Fatalf("got %v, want ErrSchemaTooNew", err)
		}
		t.Logf("error shown: %v", err)
		setMeta(t, filepath.Join(dir, "hallmark.db"), "schema", binary.BigEndian.AppendUint32(nil, storage.SchemaVersion))
		openStore(t, dir, storage.Options{}).Close()
	})

	t.Run("other bbolt file", func(t *testing.T) {
		other := t.TempDir()
		db, err := bolt.Open(filepath.Join(other, "hallmark.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("kv")); return err })
		db.Close()
		if _, err := storage.Open(other, storage.Options{ChainID: ledgertest.ChainID}); !errors.Is(err, storage.ErrNotStore) {
			t.Fatalf("got %v, want ErrNotStore", err)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		for _, o := range []storage.Options{{}, {ChainID: ledgertest.ChainID, AuditRetention: 24 * time.Hour}} {
			if _, err := storage.Open(t.TempDir(), o); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("options %+v: got %v, want ErrInvalid", o, err)
			}
		}
	})
}

// setMeta rewrites one meta key of a closed store directly with bbolt.
func setMeta(t *testing.T, path, key string, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte(key), value) }); err != nil {
		t.Fatal(err)
	}
}

func TestCommitAndRead(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	c := newChain(t, 4)
	payload := []byte("an attachment: scanned certificate bytes")
	var batches []*storage.Batch
	for h := range 4 {
		spec := blockSpec{txs: 3, dataSize: 64}
		if h == 2 {
			spec.payloads = [][]byte{payload}
		}
		b := forNode(c.block(spec), 2)
		commit(t, s, b)
		batches = append(batches, b)
	}

	for h, b := range batches {
		hdr, err := s.Header(uint64(h))
		if err != nil {
			t.Fatal(err)
		}
		if hdr.ID != b.Block.ID() || hdr.Validators != 4 || hdr.ShardIndex != 2 {
			t.Fatalf("header %d = %+v", h, hdr)
		}
		byID, err := s.HeaderByID(b.Block.ID())
		if err != nil || byID.Height != uint64(h) {
			t.Fatalf("header by id %d: %v", h, err)
		}
		blk, err := s.Block(ctx, uint64(h), nil)
		if err != nil {
			t.Fatal(err)
		}
		if blk.ID() != b.Block.ID() || len(blk.Txs) != len(b.Block.Txs) {
			t.Fatalf("block %d differs", h)
		}
		if err := blk.CheckBody(); err != nil {
			t.Fatalf("block %d read back: %v", h, err)
		}
		cert, err := s.CommitCert(uint64(h))
		if err != nil || !bytes.Equal(cert, b.Cert) {
			t.Fatalf("certificate %d: %q, %v", h, cert, err)
		}
		sh, err := s.Shard(uint64(h))
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Verify(b.Block.Header.ShardRoot, 4, b.Block.Header.BodySize); err != nil || sh.Index != 2 {
			t.Fatalf("shard %d: index %d, %v", h, sh.Index, err)
		}
	}

	// Transactions: location and inclusion proof against the header.
	want := batches[2].Block.Txs[1]
	inc, err := s.Tx(ctx, want.ID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if inc.Height != 2 || inc.Index != 1 || inc.Tx.ID() != want.ID() {
		t.Fatalf("tx lookup = %+v", inc.TxLocation)
	}
	id := want.ID()
	if err := inc.Proof.Verify(inc.Header.TxRoot, id[:]); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	if _, err := s.TxLocation(gm.SM3([]byte("no such tx"))); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing tx: %v", err)
	}

	// Payloads come back by digest; bodies carry none.
	got, err := s.Payload(gm.SM3(payload))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("payload: %q, %v", got, err)
	}
	blk, _ := s.Block(ctx, 2, nil)
	for _, tx := range blk.Txs {
		if tx.Payload != nil {
			t.Fatal("stored body carries a payload")
		}
	}

	// State: values with the height of the last write, prefix scans, paging.
	v, h, err := s.Get([]byte("height"))
	if err != nil || binary.BigEndian.Uint64(v) != 3 || h != 3 {
		t.Fatalf("state height = %x at %d, %v", v, h, err)
	}
	v, h, err = s.Get(fmt.Appendf(nil, "prev/%08d", 1))
	id0 := batches[0].Block.ID()
	if err != nil || !bytes.Equal(v, id0[:]) || h != 1 {
		t.Fatalf("prev/1 = %x at %d, %v", v, h, err)
	}
	var keys []string
	if err := s.Scan([]byte("prev/"), nil, func(k, _ []byte, _ uint64) error {
		keys = append(keys, string(k))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 || keys[0] != "prev/00000000" || keys[3] != "prev/00000003" {
		t.Fatalf("scan prev/ = %v", keys)
	}
	keys = nil
	s.Scan([]byte("prev/"), []byte("prev/00000001\x00"), func(k, _ []byte, _ uint64) error {
		keys = append(keys, string(k))
		if len(keys) == 1 {
			return storage.SkipRest
		}
		return nil
	})
	if len(keys) != 1 || keys[0] != "prev/00000002" {
		t.Fatalf("paged scan = %v", keys)
	}
	if _, _, err := s.Get([]byte("nope")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	err = s.View(func(sn *storage.Snapshot) error {
		tip, ok := sn.Tip()
		if !ok || tip != 3 {
			return fmt.Errorf("snapshot tip %d %v", tip, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStateDeletesAndOverwrites(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	c := newChain(t, 1)
	b := c.block(blockSpec{txs: 1})
	commit(t, s, b)
	// A block whose writes delete one key and overwrite another.
	b2 := c.seal(nil)
	b2.Writes = []ledger.Write{
		{Key: []byte("prev/00000000"), Delete: true},
		{Key: []byte("height"), Value: []byte("first")},
		{Key: []byte("height"), Value: []byte("last wins")},
	}
	root, err := ledger.NextStateRoot(b.Block.Header.StateRoot, b2.Writes)
	if err != nil {
		t.Fatal(err)
	}
	b2.Block.Header.StateRoot = root // the chain's last block: nothing refers to its id yet
	commit(t, s, b2)
	if _, _, err := s.Get([]byte("prev/00000000")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if v, h, _ := s.Get([]byte("height")); string(v) != "last wins" || h != 1 {
		t.Fatalf("height = %q at %d", v, h)
	}
}

func TestCommitRefusesBadBatches(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	c := newChain(t, 4)
	commit(t, s, forNode(c.block(blockSpec{txs: 2}), 0))
	tip0, _ := s.Tip()

	// Each case gets a fresh valid next block and breaks one thing.
	cases := map[string]struct {
		breakIt func(b *storage.Batch)
		want    error
	}{
		"height skips": {func(b *storage.Batch) { b.Block.Header.Height++ }, storage.ErrNotNext},
		"wrong parent": {func(b *storage.Batch) { b.Block.Header.PrevHash = gm.SM3([]byte("x")) }, storage.ErrNotNext},
		"other chain": {func(b *storage.Batch) {
			b.Block.Header.ChainID = "other"
		}, storage.ErrMismatch},
		"tx root":       {func(b *storage.Batch) { b.Block.Header.TxRoot[0] ^= 1 }, storage.ErrMismatch},
		"body size":     {func(b *storage.Batch) { b.Block.Header.BodySize++ }, storage.ErrMismatch},
		"tx count":      {func(b *storage.Batch) { b.Block.Txs = b.Block.Txs[:1] }, storage.ErrMismatch},
		"shard root":    {func(b *storage.Batch) { b.Validators = 7 }, storage.ErrMismatch},
		"state root":    {func(b *storage.Batch) { b.Writes[0].Value = []byte("tampered") }, storage.ErrMismatch},
		"shard index":   {func(b *storage.Batch) { b.ShardIndex = 4 }, storage.ErrInvalid},
		"no validators": {func(b *storage.Batch) { b.Validators = 0 }, storage.ErrInvalid},
		"payload digest": {func(b *storage.Batch) {
			b.Block.Txs[len(b.Block.Txs)-1].Payload = []byte("not the payload")
		}, storage.ErrMismatch},
		"bad supplied shard": {func(b *storage.Batch) {
			body, _ := ledger.EncodeBody(b.Block.Txs)
			shards, _, _ := erasure.NewShards(body, 4)
			b.Shard = &shards[1]
			b.ShardIndex = 1
			b.Shard.Data[0] ^= 1
		}, storage.ErrMismatch},
		"audit entry without actor": {func(b *storage.Batch) {
			b.Audit = []storage.AuditEntry{{Time: 1, Action: "x", Outcome: "ok"}}
		}, storage.ErrInvalid},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			saved := *c
			b := forNode(c.block(blockSpec{txs: 2, payloads: [][]byte{[]byte("p")}}), 0)
			*c = saved // the chain does not advance past a refused block
			tc.breakIt(b)
			err := s.CommitBlock(ctx, b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tip, _ := s.Tip(); tip.Height != tip0.Height || tip.ID != tip0.ID {
				t.Fatalf("tip moved to %d", tip.Height)
			}
		})
	}

	// A replayed transaction (already committed at height 0) is refused
	// inside the write transaction, after the block's payload bytes were
	// written: those must be discarded, not left in the segment file.
	saved := *c
	rolledBack := []byte("payload of a block whose transaction aborted")
	b := c.block(blockSpec{txs: 1, payloads: [][]byte{rolledBack}})
	*c = saved
	first, err := s.Block(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rb := forNode(c.seal(append(b.Block.Txs, first.Txs[0])), 0)
	if err := s.CommitBlock(ctx, rb); !errors.Is(err, storage.ErrMismatch) {
		t.Fatalf("replayed transaction: got %v, want ErrMismatch", err)
	}
	*c = saved
	if hits := scanDir(t, s.Dir(), rolledBack); len(hits) > 0 {
		t.Fatalf("payload of the aborted commit remains in %v", hits)
	}

	// After all the refusals the store still takes the next valid block,
	// and the refused payload was not kept.
	good := c.block(blockSpec{txs: 2})
	commit(t, s, good)
	if tip, _ := s.Tip(); tip.Height != 1 || tip.ID != good.Block.ID() {
		t.Fatalf("tip = %d", tip.Height)
	}
	for _, p := range [][]byte{[]byte("p"), rolledBack} {
		if _, err := s.Payload(gm.SM3(p)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("payload of a refused block: %v", err)
		}
	}
}
