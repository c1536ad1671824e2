package storage

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
)

// MaxKeptBytes bounds one kept block's encoding (a proposal carries a whole
// block with its payloads).
const MaxKeptBytes = 256 << 20

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

// KeptBlocks returns the kept blocks above the committed tip, in height
// order (then block id).
func (s *Store) KeptBlocks() ([]KeptBlock, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	tip, hasTip := s.committedTip()
	return s.safety.keptBlocks(tip, hasTip)
}

// ReleaseKept forgets kept blocks that can no longer commit (consensus
// abandoned them), durably: it returns after the fdatasync of the frame
// that says so, if any of them was kept. Blocks at or below a committed
// height are dropped by the next SaveSafety (and ignored by KeptBlocks
// until then).
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
	tip, hasTip := s.committedTip()
	if err := s.safety.release(want, tip, hasTip); err != nil {
		return fmt.Errorf("storage: releasing kept blocks: %w", err)
	}
	return nil
}

func (s *Store) committedTip() (uint64, bool) {
	if t := s.tip.Load(); t != nil {
		return t.Height, true
	}
	return 0, false
}

// Layouts before the safety log (schema versions 1 and 2) kept blocks in
// a bbolt bucket, kept, under height (8) ‖ block id (32): in safety.db,
// and in the main file before safety.db existed. Open reads them once to
// move them into the log.
var bucketKept = []byte("kept")

// keptDataKey names the one key of a kept block's own bucket (schema 2).
var keptDataKey = []byte("data")

// keptData returns the bytes of the kept block under key in b: the value
// of the key in its own bucket (schema 2) or the key's value (schema 1).
func keptData(b *bolt.Bucket, key []byte) []byte {
	if sub := b.Bucket(key); sub != nil {
		return sub.Get(keptDataKey)
	}
	return b.Get(key)
}
