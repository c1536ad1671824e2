package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"hallmark/ledger"
)

// MaxKeptBytes bounds one kept block's encoding (a proposal carries a whole
// block with its payloads).
const MaxKeptBytes = 256 << 20

// bucketKept holds uncommitted blocks consensus voted for or proposed:
// height (8) ‖ block id (32) → the caller's encoding. It is created on
// first use, so stores made before it existed open unchanged.
var bucketKept = []byte("kept")

// KeptBlock is an uncommitted block this node voted for or proposed,
// kept beside the safety data until it commits or is abandoned, so that a
// restarted node (or a whole cluster restarted at once) still has every
// block a quorum certified. Data is opaque to the store: the runtime's
// encoding of the block with its justification.
type KeptBlock struct {
	Height uint64
	ID     ledger.BlockID
	Data   []byte
}

func keptKey(height uint64, id ledger.BlockID) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, height)
	copy(k[8:], id[:])
	return k
}

// keptDataKey names the one key of a kept block's own bucket.
var keptDataKey = []byte("data")

// Since schema version 2 each kept block has a bucket of its own under
// its key in kept, holding its bytes under keptDataKey. Stores of version
// 1 hold the bytes as the key's value; both forms are read and deleted.
// With values, all the kept blocks (usually two to four) share one leaf
// node, which bbolt does not split below five keys, so every save
// rewrote all of them; in buckets of their own a save writes only the
// new block.

// keptData returns the bytes of the kept block under key in b, in either
// form, or nil if there is none.
func keptData(b *bolt.Bucket, key []byte) []byte {
	if sub := b.Bucket(key); sub != nil {
		return sub.Get(keptDataKey)
	}
	return b.Get(key)
}

// deleteKept removes the kept block under key in b, in either form.
func deleteKept(b *bolt.Bucket, key []byte) error {
	if b.Bucket(key) != nil {
		return b.DeleteBucket(key)
	}
	return b.Delete(key)
}

// putKept stores kept blocks, each in a bucket of its own if ownBuckets
// (schema version 2) or as a value (version 1).
func putKept(tx *bolt.Tx, keep []KeptBlock, ownBuckets bool) error {
	if len(keep) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketKept)
	if err != nil {
		return err
	}
	for _, k := range keep {
		key := keptKey(k.Height, k.ID)
		if bytes.Equal(keptData(b, key), k.Data) {
			// Already stored by an earlier save that returned after its
			// fsync: a leader saves its block when it signs the proposal
			// and again when it votes for it. Writing it again would only
			// rewrite the same bytes.
			continue
		}
		if err := deleteKept(b, key); err != nil {
			return err
		}
		if !ownBuckets {
			if err := b.Put(key, bytes.Clone(k.Data)); err != nil {
				return err
			}
			continue
		}
		sub, err := b.CreateBucket(key)
		if err != nil {
			return err
		}
		if err := sub.Put(keptDataKey, bytes.Clone(k.Data)); err != nil {
			return err
		}
	}
	return nil
}

// dropKeptUpTo deletes the kept blocks at or below height: a block at a
// committed height is either committed or can never be.
func dropKeptUpTo(tx *bolt.Tx, height uint64) error {
	b := tx.Bucket(bucketKept)
	if b == nil {
		return nil
	}
	var dead [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8 && binary.BigEndian.Uint64(k) <= height; k, _ = c.Next() {
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := deleteKept(b, k); err != nil {
			return err
		}
	}
	return nil
}

// KeptBlocks returns the kept blocks above the committed tip, in height
// order.
func (s *Store) KeptBlocks() ([]KeptBlock, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var tip uint64
	hasTip := false
	if t := s.tip.Load(); t != nil {
		tip, hasTip = t.Height, true
	}
	// Stores written before the safety file existed keep them in the main
	// file; both are read, the safety file's copy winning.
	byKey := map[string]KeptBlock{}
	for _, db := range []*bolt.DB{s.db, s.safe} {
		err := db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketKept)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				if len(k) != 8+len(ledger.BlockID{}) {
					return fmt.Errorf("%w: kept block key of %d bytes", ErrCorrupt, len(k))
				}
				h := binary.BigEndian.Uint64(k)
				if hasTip && h <= tip {
					return nil
				}
				v := keptData(b, k)
				if len(v) == 0 {
					return fmt.Errorf("%w: kept block %d %x has no data", ErrCorrupt, h, k[8:16])
				}
				var id ledger.BlockID
				copy(id[:], k[8:])
				byKey[string(k)] = KeptBlock{Height: h, ID: id, Data: bytes.Clone(v)}
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("storage: reading kept blocks: %w", err)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys) // height first, big-endian
	out := make([]KeptBlock, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out, nil
}

// ReleaseKept forgets kept blocks that can no longer commit (consensus
// abandoned them). Blocks at or below a committed height are dropped by
// the next SaveSafety (and ignored by KeptBlocks until then).
func (s *Store) ReleaseKept(ctx context.Context, ids ...ledger.BlockID) error {
	if len(ids) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	want := make(map[ledger.BlockID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for _, db := range []*bolt.DB{s.safe, s.db} {
		if db == s.db && !hasKept(db) {
			continue // no legacy kept blocks: no write transaction
		}
		if err := db.Update(func(tx *bolt.Tx) error { return releaseKept(tx, want) }); err != nil {
			return fmt.Errorf("storage: releasing kept blocks: %w", err)
		}
	}
	return nil
}

func hasKept(db *bolt.DB) bool {
	has := false
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketKept); b != nil {
			k, _ := b.Cursor().First()
			has = k != nil
		}
		return nil
	})
	return has
}

func releaseKept(tx *bolt.Tx, want map[ledger.BlockID]bool) error {
	b := tx.Bucket(bucketKept)
	if b == nil {
		return nil
	}
	var dead [][]byte
	err := b.ForEach(func(k, _ []byte) error {
		var id ledger.BlockID
		if len(k) == 8+len(id) {
			copy(id[:], k[8:])
			if want[id] {
				dead = append(dead, bytes.Clone(k))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		if err := deleteKept(b, k); err != nil {
			return err
		}
	}
	return nil
}

// openSafety opens (creating it if needed) the file that holds the safety
// data and kept blocks beside the main one.
func openSafety(dir string, o Options) (*bolt.DB, error) {
	path := filepath.Join(dir, safetyFileName)
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         o.LockTimeout,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: safetyMmapBytes,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %s)", ErrInUse, path, o.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	ready := false
	db.View(func(tx *bolt.Tx) error {
		ready = tx.Bucket(bucketSafety) != nil && tx.Bucket(bucketKept) != nil
		return nil
	})
	if !ready {
		// Only a new file is written to here, so a store on a full disk
		// that has one still opens for reading.
		err = db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketSafety, bucketKept} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("storage: initialise %s: %w", path, err)
		}
	}
	return db, nil
}
