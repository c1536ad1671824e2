package storage_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/storage"
)

// safetyState is what a store says about its safety data: the record
// (and whether there is one) and the kept blocks above the tip.
type safetyState struct {
	record    string
	hasRecord bool
	kept      []storage.KeptBlock
}

func readSafety(t testing.TB, s *storage.Store) safetyState {
	t.Helper()
	rec, err := s.LoadSafety()
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.KeptBlocks()
	if err != nil {
		t.Fatal(err)
	}
	return safetyState{record: string(rec), hasRecord: rec != nil, kept: kept}
}

func (st safetyState) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "record %q (%v), kept:", st.record, st.hasRecord)
	for _, k := range st.kept {
		fmt.Fprintf(&b, " %d/%x(%d bytes)", k.Height, k.ID[:2], len(k.Data))
	}
	return b.String()
}

func (st safetyState) equal(o safetyState) bool {
	return st.record == o.record && st.hasRecord == o.hasRecord &&
		slices.EqualFunc(st.kept, o.kept, func(a, b storage.KeptBlock) bool {
			return a.Height == b.Height && a.ID == b.ID && bytes.Equal(a.Data, b.Data)
		})
}

func wantSafety(t testing.TB, s *storage.Store, want safetyState) {
	t.Helper()
	if got := readSafety(t, s); !got.equal(want) {
		t.Fatalf("safety data\n got %v\nwant %v", got, want)
	}
}

func keptBlock(h uint64, tag byte, size int) storage.KeptBlock {
	unit := fmt.Appendf(nil, "block %d/%d ", h, tag)
	data := bytes.Repeat(unit, size/len(unit)+1)[:size]
	return storage.KeptBlock{Height: h, ID: ledger.BlockID{byte(h), tag, 0xAB}, Data: data}
}

// legacyLayout is where a store older than the safety log kept its
// safety data.
type legacyLayout int

const (
	layoutMainFile legacyLayout = iota // schema 1 before safety.db: buckets in hallmark.db
	layoutSchema1                      // safety.db, kept blocks as values
	layoutSchema2                      // safety.db, a bucket per kept block
)

// legacyStore makes a store of an older layout in dir, with a committed
// tip at height 1, the record and the kept blocks written as that
// layout's build wrote them (bucket and key names, value forms), and no
// safety.log. inMain are kept blocks of the main file (a store that had
// them from before safety.db).
func legacyStore(t *testing.T, dir string, layout legacyLayout, record []byte, kept, inMain []storage.KeptBlock) *chain {
	t.Helper()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))
	commit(t, s, c.block(blockSpec{txs: 1}))
	s.Close()
	if err := os.Remove(filepath.Join(dir, "safety.log")); err != nil {
		t.Fatal(err)
	}
	schema := uint32(2)
	if layout != layoutSchema2 {
		schema = 1
	}
	setMeta(t, filepath.Join(dir, "hallmark.db"), "schema", binary.BigEndian.AppendUint32(nil, schema))
	put := func(path string, record []byte, kept []storage.KeptBlock, ownBuckets bool) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			sb, err := tx.CreateBucketIfNotExists([]byte("safety"))
			if err != nil {
				return err
			}
			if record != nil {
				if err := sb.Put([]byte("current"), record); err != nil {
					return err
				}
			}
			kb, err := tx.CreateBucketIfNotExists([]byte("kept"))
			if err != nil {
				return err
			}
			for _, k := range kept {
				key := append(binary.BigEndian.AppendUint64(nil, k.Height), k.ID[:]...)
				if !ownBuckets {
					if err := kb.Put(key, k.Data); err != nil {
						return err
					}
					continue
				}
				sub, err := kb.CreateBucket(key)
				if err != nil {
					return err
				}
				if err := sub.Put([]byte("data"), k.Data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	switch layout {
	case layoutMainFile:
		put(filepath.Join(dir, "hallmark.db"), record, append(kept, inMain...), false)
	default:
		if len(inMain) > 0 {
			put(filepath.Join(dir, "hallmark.db"), []byte("older record in the main file"), inMain, false)
		}
		put(filepath.Join(dir, "safety.db"), record, kept, layout == layoutSchema2)
	}
	return c
}

func fileExists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// mainFileSafety reports what the main file still holds of the old
// safety buckets: whether safety/current is set and whether kept exists.
func mainFileSafety(t *testing.T, dir string) (record, kept bool) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "hallmark.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		record = tx.Bucket([]byte("safety")).Get([]byte("current")) != nil
		kept = tx.Bucket([]byte("kept")) != nil
		return nil
	})
	return record, kept
}

// checkMigrated checks the files of a migrated store, closed: safety.log
// in place, safety.db gone, no copy left in the main file, schema 3.
func checkMigrated(t *testing.T, dir string) {
	t.Helper()
	if schema := schemaOf(t, dir); schema != storage.SchemaVersion || storage.SchemaVersion != 3 {
		t.Fatalf("schema %d after migration, want 3 (older builds read up to 2 and must refuse the store)", schema)
	}
	if !fileExists(t, filepath.Join(dir, "safety.log")) || fileExists(t, filepath.Join(dir, "safety.db")) ||
		fileExists(t, filepath.Join(dir, "safety.log.tmp")) {
		t.Fatal("after migration: want safety.log and neither safety.db nor safety.log.tmp")
	}
	if rec, kept := mainFileSafety(t, dir); rec || kept {
		t.Fatalf("main file still holds safety data after migration: record %v, kept bucket %v", rec, kept)
	}
}

// schemaOf reads the schema version of the closed store in dir.
func schemaOf(t *testing.T, dir string) uint32 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "hallmark.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var schema uint32
	db.View(func(tx *bolt.Tx) error {
		schema = binary.BigEndian.Uint32(tx.Bucket([]byte("meta")).Get([]byte("schema")))
		return nil
	})
	return schema
}

// Stores of every older layout open with their record and kept blocks
// moved into safety.log, keep working, and reopen with the same data.
func TestMigrateSafety(t *testing.T) {
	record := []byte("round 17, locked 15")
	kept := []storage.KeptBlock{keptBlock(1, 9, 500), keptBlock(2, 1, 30_000), keptBlock(3, 1, 700), keptBlock(3, 2, 5000)}
	inMain := []storage.KeptBlock{keptBlock(4, 7, 900), keptBlock(3, 2, 11)} // 3/2: safety.db's copy wins
	for _, tc := range []struct {
		name   string
		layout legacyLayout
		inMain []storage.KeptBlock
	}{
		{"schema2", layoutSchema2, nil},
		{"schema2 with main-file blocks", layoutSchema2, inMain},
		{"schema1", layoutSchema1, nil},
		{"schema1 with main-file blocks", layoutSchema1, inMain},
		{"main file only", layoutMainFile, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := legacyStore(t, dir, tc.layout, record, kept, tc.inMain)
			// Tip 1: block 1/9 is at a committed height and not returned.
			want := safetyState{record: string(record), hasRecord: true, kept: kept[1:]}
			if len(tc.inMain) > 0 {
				want.kept = append(slices.Clone(kept[1:]), inMain[0])
			}
			s := openStore(t, dir, storage.Options{})
			wantSafety(t, s, want)
			s.Close()
			checkMigrated(t, dir)
			s = openStore(t, dir, storage.Options{})

			// It keeps working: a commit, a save that drops the committed
			// block 2, a release; and all of it survives a reopen.
			commit(t, s, c.block(blockSpec{txs: 1}))
			next := keptBlock(5, 1, 1000)
			if err := s.SaveSafety(ctx, []byte("round 18"), next); err != nil {
				t.Fatal(err)
			}
			if err := s.ReleaseKept(ctx, kept[2].ID); err != nil {
				t.Fatal(err)
			}
			want = safetyState{record: "round 18", hasRecord: true, kept: []storage.KeptBlock{kept[3]}}
			if len(tc.inMain) > 0 {
				want.kept = append(want.kept, inMain[0])
			}
			want.kept = append(want.kept, next)
			wantSafety(t, s, want)
			s.Close()
			s = openStore(t, dir, storage.Options{})
			defer s.Close()
			wantSafety(t, s, want)
		})
	}
}

// A legacy store without any safety data migrates to an empty log.
func TestMigrateSafetyEmpty(t *testing.T) {
	dir := t.TempDir()
	legacyStore(t, dir, layoutSchema2, nil, nil, nil)
	s := openStore(t, dir, storage.Options{})
	wantSafety(t, s, safetyState{kept: []storage.KeptBlock{}})
	s.Close()
	checkMigrated(t, dir)
}

// A crash at any step of the migration leaves a store that opens with
// its safety data: before the log is renamed into place (a temporary
// file is left), after the rename but before the schema is recorded,
// and after that but before safety.db is removed.
func TestMigrateSafetyCrash(t *testing.T) {
	record := []byte("round 40")
	kept := []storage.KeptBlock{keptBlock(2, 1, 20_000), keptBlock(3, 1, 300)}
	want := safetyState{record: string(record), hasRecord: true, kept: kept}
	for _, tc := range []struct {
		step        string
		schemaAfter uint32
	}{
		{"", 2}, // a torn temporary file, as a crash while writing it leaves
		{storage.CrashMigrateLogWritten, 2},
		{storage.CrashMigrateSchema, 3},
	} {
		t.Run("at "+tc.step, func(t *testing.T) {
			dir := t.TempDir()
			legacyStore(t, dir, layoutSchema2, record, kept, []storage.KeptBlock{keptBlock(4, 4, 100)})
			if tc.step == "" {
				if err := os.WriteFile(filepath.Join(dir, "safety.log.tmp"), []byte("HMSAFETY\x00\x00"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				_, err := storage.Open(dir, storage.WithCrashAt(storage.Options{ChainID: ledgertest.ChainID}, tc.step))
				if !errors.Is(err, storage.ErrSimulatedCrash) {
					t.Fatalf("open with a crash at %s: %v", tc.step, err)
				}
				if !fileExists(t, filepath.Join(dir, "safety.log")) || !fileExists(t, filepath.Join(dir, "safety.db")) {
					t.Fatal("after the crash: want both safety.log and safety.db")
				}
			}
			if schema := schemaOf(t, dir); schema != tc.schemaAfter {
				t.Fatalf("schema %d after the crash, want %d", schema, tc.schemaAfter)
			}
			s := openStore(t, dir, storage.Options{})
			w := want
			w.kept = append(slices.Clone(kept), keptBlock(4, 4, 100))
			wantSafety(t, s, w)
			s.Close()
			checkMigrated(t, dir)
		})
	}
}

// Until the schema says 3, safety.db is what counts: an older build that
// ran on the store after a migration stopped before recording the schema
// (and saved newer safety data into safety.db) has that data migrated,
// not the stale log's.
func TestMigrateSafetyAfterOlderBuildRan(t *testing.T) {
	dir := t.TempDir()
	legacyStore(t, dir, layoutSchema2, []byte("round 1"), []storage.KeptBlock{keptBlock(2, 1, 100)}, nil)
	_, err := storage.Open(dir, storage.WithCrashAt(storage.Options{ChainID: ledgertest.ChainID}, storage.CrashMigrateLogWritten))
	if !errors.Is(err, storage.ErrSimulatedCrash) {
		t.Fatal(err)
	}
	// What an older build's SaveSafety writes.
	db, err := bolt.Open(filepath.Join(dir, "safety.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	newer := keptBlock(3, 1, 200)
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("safety")).Put([]byte("current"), []byte("round 2")); err != nil {
			return err
		}
		sub, err := tx.Bucket([]byte("kept")).CreateBucket(append(binary.BigEndian.AppendUint64(nil, 3), newer.ID[:]...))
		if err != nil {
			return err
		}
		return sub.Put([]byte("data"), newer.Data)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, storage.Options{})
	wantSafety(t, s, safetyState{record: "round 2", hasRecord: true, kept: []storage.KeptBlock{keptBlock(2, 1, 100), newer}})
	s.Close()
	checkMigrated(t, dir)
}

// A store of schema 3 without its safety.log is refused: starting without
// the safety record could make the node vote twice in a round.
func TestOpenRefusesMissingSafetyLog(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	if err := s.SaveSafety(ctx, []byte("round 3")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "safety.log")); err != nil {
		t.Fatal(err)
	}
	_, err := storage.Open(dir, storage.Options{ChainID: ledgertest.ChainID})
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("open without safety.log: %v, want ErrCorrupt", err)
	}
	t.Logf("error shown: %v", err)
}

// A main file created anew beside an old safety.db (the main file lost)
// keeps that safety data rather than start without it.
func TestFreshStoreKeepsOldSafetyFile(t *testing.T) {
	dir := t.TempDir()
	legacyStore(t, dir, layoutSchema2, []byte("round 9"), []storage.KeptBlock{keptBlock(7, 1, 100)}, nil)
	if err := os.Remove(filepath.Join(dir, "hallmark.db")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, storage.Options{})
	wantSafety(t, s, safetyState{record: "round 9", hasRecord: true, kept: []storage.KeptBlock{keptBlock(7, 1, 100)}})
	s.Close()
	checkMigrated(t, dir)
}
