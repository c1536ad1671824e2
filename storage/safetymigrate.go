package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"hallmark/ledger"
)

// openSafety opens the safety log, first creating it for a new store or
// moving the safety data of an older layout into it.
//
// The schema version in the main file says where the safety data is: in
// schema 3 only the log holds it; below 3, safety.db (and, in stores
// older still, the main file's safety and kept buckets) hold it, and
// whatever safety.log exists is a leftover of an interrupted migration
// that is written again. The version becomes 3 only after the log is
// durably in place, and safety.db is removed only after that, so a crash
// at any step leaves a store that opens with all of its safety data, and
// an older build refuses a migrated store (ErrSchemaTooNew) instead of
// starting without it.
func (s *Store) openSafety(fresh bool, schema uint32) error {
	logPath := safetyLogPath(s.dir)
	legacy := filepath.Join(s.dir, legacySafetyName)
	hasLog, err := exists(logPath)
	if err != nil {
		return err
	}
	hasLegacy, err := exists(legacy)
	if err != nil {
		return err
	}
	switch {
	case fresh:
		// The log comes first, so that a store whose main file says
		// schema 3 always has one. A log already here was written by an
		// Open that stopped before the metadata.
		if !hasLog {
			if hasLegacy {
				// A main file created anew beside an old safety.db: keep
				// its safety data rather than start without it.
				if err := s.migrateSafety(false); err != nil {
					return err
				}
			} else if err := createSafetyLog(s.dir); err != nil {
				return err
			}
		}
		if err := s.initMeta(); err != nil {
			return err
		}
	case schema < 3:
		if err := s.migrateSafety(true); err != nil {
			return err
		}
		if s.opts.crashAt == crashMigrateLogWritten {
			return errSimulatedCrash
		}
		if err := s.db.Update(func(tx *bolt.Tx) error {
			// The main file's copies (stores from before safety.db) go in
			// the same transaction that says the log holds the data.
			if err := tx.Bucket(bucketSafety).Delete(safetyKey); err != nil {
				return err
			}
			if tx.Bucket(bucketKept) != nil {
				if err := tx.DeleteBucket(bucketKept); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaSchema, u32(SchemaVersion))
		}); err != nil {
			return fmt.Errorf("storage: record schema version %d: %w", SchemaVersion, err)
		}
		s.log.Info("store layout upgraded", "from", schema, "schema", SchemaVersion)
		if s.opts.crashAt == crashMigrateSchema {
			return errSimulatedCrash
		}
	case !hasLog:
		return fmt.Errorf("%w: %s is missing: this node's consensus safety record is gone, and starting without it could make the node vote twice in a round",
			ErrCorrupt, logPath)
	}
	// Leftovers of a migration or compaction a crash interrupted: the
	// schema is 3 now, so safety.db is no longer read, and a temporary
	// file was never renamed into place.
	removed := false
	for _, name := range []string{legacySafetyName, safetyLogTmpName} {
		err := os.Remove(filepath.Join(s.dir, name))
		switch {
		case err == nil:
			removed = true
			s.log.Info("removed a leftover safety file", "file", name)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("storage: remove %s: %w", name, err)
		}
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	l, err := openSafetyLog(s.dir, s.log, s.opts.safetyCompactBytes, s.opts.crashAt)
	if err != nil {
		return err
	}
	s.safety = l
	return nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	return true, nil
}

// migrateSafety writes safety.log from the legacy safety data: the record
// of safety.db, or of the main file if safety.db has none (and fromMain);
// and the kept blocks of both, safety.db's winning. Both kept-block forms
// are read: schema 2's bucket per block and schema 1's values. The log is
// synced and renamed into place and the directory synced before it
// returns; the legacy data is left untouched.
func (s *Store) migrateSafety(fromMain bool) error {
	var dbs []*bolt.DB // read in this order; a later file's copy wins
	if fromMain {
		dbs = append(dbs, s.db)
	}
	legacy := filepath.Join(s.dir, legacySafetyName)
	if ok, err := exists(legacy); err != nil {
		return err
	} else if ok {
		if err := checkBoltFile(legacy); err != nil {
			return err
		}
		db, err := bolt.Open(legacy, 0o600, &bolt.Options{ReadOnly: true, Timeout: s.opts.LockTimeout})
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("%w: %s (waited %s)", ErrInUse, legacy, s.opts.LockTimeout)
		}
		if err != nil {
			return fmt.Errorf("storage: open %s: %w", legacy, err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}

	var record []byte
	hasRecord := false
	from := map[keptRef]*bolt.DB{}
	for _, db := range dbs {
		err := db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketSafety); b != nil {
				if v := b.Get(safetyKey); v != nil {
					record, hasRecord = bytes.Clone(v), true
				}
			}
			b := tx.Bucket(bucketKept)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				r, err := parseLegacyKeptKey(k)
				if err != nil {
					return err
				}
				from[r] = db
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("storage: reading the safety data to migrate: %w", err)
		}
	}
	if len(record) > MaxCertBytes {
		return fmt.Errorf("%w: legacy safety record of %d bytes", ErrCorrupt, len(record))
	}
	blocks := func(yield func(keptRef, []byte) error) error {
		for _, db := range dbs {
			err := db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketKept)
				if b == nil {
					return nil
				}
				return b.ForEach(func(k, _ []byte) error {
					r, err := parseLegacyKeptKey(k)
					if err != nil || from[r] != db {
						return err
					}
					return yield(r, keptData(b, k))
				})
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	snap, err := writeSafetySnapshot(s.dir, 1, record, hasRecord, blocks, "")
	if err != nil {
		return fmt.Errorf("storage: moving the safety data into %s: %w", safetyLogName, err)
	}
	if err := snap.f.Close(); err != nil {
		return fmt.Errorf("storage: moving the safety data into %s: %w", safetyLogName, err)
	}
	s.log.Info("safety data moved into the safety log", "file", safetyLogName, "record", hasRecord, "keptBlocks", len(snap.kept))
	return nil
}

func parseLegacyKeptKey(k []byte) (keptRef, error) {
	var r keptRef
	if len(k) != 8+len(ledger.BlockID{}) {
		return r, fmt.Errorf("%w: kept block key of %d bytes", ErrCorrupt, len(k))
	}
	r.height = binary.BigEndian.Uint64(k)
	copy(r.id[:], k[8:])
	return r, nil
}
