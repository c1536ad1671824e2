package storage

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxPrunePerCommit bounds the bodies one commit drops, so that shrinking
// the window does not make one commit slow; Prune drops the rest.
const maxPrunePerCommit = 64

// keepsBody reports whether the body of the block at height belongs in
// the store: on an archive node always, otherwise when it is one of the
// Window most recent blocks.
func (s *Store) keepsBody(height uint64) bool {
	return s.opts.Archive || height+s.opts.Window > s.tipHeight()
}

// pruneCutoff returns the lowest height whose body is kept once tip is
// the tip (0: keep all).
func (s *Store) pruneCutoff(tip uint64) uint64 {
	if s.opts.Archive || tip+1 <= s.opts.Window {
		return 0
	}
	return tip + 1 - s.opts.Window
}

// pruneBodies drops up to max bodies below the window of tip inside tx
// and returns how many it dropped.
func (s *Store) pruneBodies(tx *bolt.Tx, tip uint64, max int) (int, error) {
	cutoff := s.pruneCutoff(tip)
	if cutoff == 0 {
		return 0, nil
	}
	b := tx.Bucket(bucketBodies)
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(doomed) < max; k, _ = c.Next() {
		h, err := parseHeightKey(k)
		if err != nil {
			return 0, err
		}
		if h >= cutoff {
			break
		}
		doomed = append(doomed, k)
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// Prune drops every body outside the window (after the window was made
// smaller, or archive mode was turned off), in transactions of bounded
// size, logging progress. State, headers, shards and indexes are kept:
// a pruned body is rebuilt from shards on demand. It returns the number
// of bodies dropped.
func (s *Store) Prune(ctx context.Context) (int, error) {
	const chunk = 1024
	total := 0
	last := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var dropped int
		s.writeMu.Lock()
		err := s.checkOpen()
		if err == nil {
			err = s.db.Update(func(tx *bolt.Tx) error {
				var err error
				dropped, err = s.pruneBodies(tx, s.tipHeight(), chunk)
				return err
			})
		}
		s.writeMu.Unlock()
		if err != nil {
			return total, fmt.Errorf("storage: prune bodies: %w", err)
		}
		total += dropped
		if time.Since(last) > 5*time.Second {
			s.log.Info("pruning bodies", "dropped", total)
			last = time.Now()
		}
		if dropped < chunk {
			if total > 0 {
				s.log.Info("bodies pruned", "dropped", total, "window", s.opts.Window)
			}
			return total, nil
		}
	}
}
