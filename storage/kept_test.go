package storage_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

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

// A store written before the safety data moved to its own file keeps
// working: its safety data and kept blocks are read from the main file
// until newer ones are saved, and its kept blocks can still be released.
func TestKeptBlocksInMainFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))
	s.Close()
	old := ledger.BlockID{7}
	db, err := bolt.Open(filepath.Join(dir, "hallmark.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("safety")).Put([]byte("current"), []byte("legacy")); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists([]byte("kept"))
		if err != nil {
			return err
		}
		return b.Put(append(binary.BigEndian.AppendUint64(nil, 1), old[:]...), []byte("old block"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "safety.db")); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	if got, _ := s.LoadSafety(); string(got) != "legacy" {
		t.Fatalf("safety %q, want the main file's", got)
	}
	got, err := s.KeptBlocks()
	if err != nil || len(got) != 1 || got[0].ID != old || string(got[0].Data) != "old block" {
		t.Fatalf("kept blocks %+v, %v", got, err)
	}
	if err := s.SaveSafety(ctx, []byte("new"), storage.KeptBlock{Height: 2, ID: ledger.BlockID{8}, Data: []byte("new block")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LoadSafety(); string(got) != "new" {
		t.Fatalf("safety %q after a save", got)
	}
	if got, _ = s.KeptBlocks(); len(got) != 2 || got[0].Height != 1 || got[1].Height != 2 {
		t.Fatalf("kept blocks %+v, want the old one then the new one", got)
	}
	if err := s.ReleaseKept(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.KeptBlocks(); len(got) != 1 || got[0].Height != 2 {
		t.Fatalf("kept blocks after releasing the old one: %+v", got)
	}
}

// keptForms reports, for each kept block key in dir's safety.db, whether
// it is stored in a bucket of its own (schema 2) rather than as a value
// (schema 1).
func keptForms(t *testing.T, dir string) map[uint64]bool {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "safety.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[uint64]bool{}
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("kept"))
		return b.ForEach(func(k, v []byte) error {
			out[binary.BigEndian.Uint64(k)] = v == nil && b.Bucket(k) != nil
			return nil
		})
	})
	return out
}

// A store of schema version 1 (kept blocks as values) opens and works: its
// kept blocks are read, saved and dropped in the old form until the first
// block commit upgrades the store to version 2, after which new kept
// blocks get buckets of their own and both forms are read, released and
// dropped.
func TestKeptBlocksSchema1(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))
	s.Close()

	setMeta(t, filepath.Join(dir, "hallmark.db"), "schema", binary.BigEndian.AppendUint32(nil, 1))
	kb := func(h uint64) storage.KeptBlock {
		return storage.KeptBlock{Height: h, ID: ledger.BlockID{byte(h)}, Data: bytes.Repeat(fmt.Appendf(nil, "block %d ", h), 500)}
	}
	db, err := bolt.Open(filepath.Join(dir, "safety.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := kb(4)
	err = db.Update(func(tx *bolt.Tx) error {
		key := binary.BigEndian.AppendUint64(nil, old.Height)
		return tx.Bucket([]byte("kept")).Put(append(key, old.ID[:]...), old.Data)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, storage.Options{})
	if m, _ := s.Meta(); m.Schema != 1 {
		t.Fatalf("schema %d after opening a version 1 store, want 1 (Open writes nothing)", m.Schema)
	}
	if err := s.SaveSafety(ctx, []byte("r1"), kb(5)); err != nil {
		t.Fatal(err)
	}
	commit(t, s, c.block(blockSpec{txs: 1}))
	if m, _ := s.Meta(); m.Schema != storage.SchemaVersion {
		t.Fatalf("schema %d after a commit, want %d", m.Schema, storage.SchemaVersion)
	}
	for _, h := range []uint64{5, 6, 7} { // 5 again: unchanged, not rewritten
		if err := s.SaveSafety(ctx, []byte("r2"), kb(h)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.KeptBlocks()
	if err != nil || len(got) != 4 {
		t.Fatalf("kept blocks: %d, %v", len(got), err)
	}
	for i, k := range got {
		if want := kb(uint64(4 + i)); k.Height != want.Height || k.ID != want.ID || !bytes.Equal(k.Data, want.Data) {
			t.Fatalf("kept block %d: height %d, %d bytes; want %d", i, k.Height, len(k.Data), want.Height)
		}
	}
	s.Close()
	if forms := keptForms(t, dir); forms[4] || forms[5] || !forms[6] || !forms[7] {
		t.Fatalf("forms (true: own bucket) %v, want 4 and 5 values, 6 and 7 buckets", forms)
	}

	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	if err := s.ReleaseKept(ctx, kb(4).ID, kb(6).ID); err != nil {
		t.Fatal(err)
	}
	for range 6 { // tip 7
		commit(t, s, c.block(blockSpec{txs: 1}))
	}
	if err := s.SaveSafety(ctx, []byte("r3"), kb(8)); err != nil { // drops 5 and 7
		t.Fatal(err)
	}
	got, err = s.KeptBlocks()
	if err != nil || len(got) != 1 || got[0].Height != 8 {
		t.Fatalf("kept blocks after release and commits: %d (first at %d), %v", len(got), got[0].Height, err)
	}
	s.Close()
	if forms := keptForms(t, dir); len(forms) != 1 || !forms[8] {
		t.Fatalf("left in safety.db (true: own bucket): %v, want only 8", forms)
	}
}
