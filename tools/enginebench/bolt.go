package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// boltEngine is bbolt configured as storage.Open configures hallmark.db.
type boltEngine struct {
	db      *bolt.DB
	path    string
	seq     bool
	size    int64 // file size after the last commit
	nsyncs  int64
	buckets [numWritten][]byte
}

// boltMmapBytes is storage's mainMmapBytes on 64-bit platforms.
const boltMmapBytes = 1 << 30

func openBolt(dir string, seq bool) (engine, error) {
	path := filepath.Join(dir, "hallmark.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: boltMmapBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	e := &boltEngine{db: db, path: path, seq: seq}
	copy(e.buckets[:], bucketNames[:])
	// Like storage.Open, opening an existing store writes nothing.
	var exists bool
	if err := db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket([]byte("meta")) != nil
		return nil
	}); err != nil {
		db.Close()
		return nil, err
	}
	if !exists {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, name := range append(bucketNames[:], otherBuckets...) {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, 2))
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("create buckets: %w", err)
	}
	if e.size, err = fileSize(path); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (e *boltEngine) commit(b *block) error {
	ops, checks := b.ops, b.checks
	if e.seq {
		ops, checks = b.seqOps, b.seqChecks
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		var bk [numWritten]*bolt.Bucket
		for i, name := range e.buckets {
			bk[i] = tx.Bucket(name)
		}
		// The duplicate checks storage's putBlock makes: the block id
		// first, then each transaction id just before its put.
		next := 0
		for _, o := range ops {
			for next < len(checks) && checks[next].bucket == o.bucket && string(checks[next].key) == string(o.key) {
				if bk[o.bucket].Get(o.key) != nil {
					return fmt.Errorf("block %d: %w", b.height, errDuplicate)
				}
				next++
			}
			bucket := bk[o.bucket]
			if o.append {
				bucket.FillPercent = 1.0
			}
			var err error
			if o.del {
				err = bucket.Delete(o.key)
			} else {
				err = bucket.Put(o.key, o.val)
			}
			if err != nil {
				return err
			}
		}
		if next != len(checks) {
			return fmt.Errorf("block %d: %d of %d checks made", b.height, next, len(checks))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A commit fdatasyncs its pages and then its meta page; a commit that
	// grows the file truncates and fsyncs it first (NoGrowSync off).
	e.nsyncs += 2
	size, err := fileSize(e.path)
	if err != nil {
		return err
	}
	if size != e.size {
		e.nsyncs++
		e.size = size
	}
	return nil
}

func (e *boltEngine) lookup(key []byte) (bool, error) {
	var found bool
	err := e.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketNames[bucketTxs]).Get(key) != nil
		return nil
	})
	return found, err
}

func (e *boltEngine) syncs() int64 { return e.nsyncs }

func (e *boltEngine) pageWrites() int64 {
	st := e.db.Stats()
	return st.TxStats.GetWrite()
}

func (e *boltEngine) settle() error { return nil }

func (e *boltEngine) close() error { return e.db.Close() }
