package storage

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/storage/erasure"
)

// ShardRequest names one shard of one committed block.
type ShardRequest struct {
	Height  uint64
	BlockID ledger.BlockID
	// Epoch and Validators identify the validator set whose member at
	// Index holds the shard.
	Epoch      uint64
	Validators int
	Index      int
}

// ShardFetcher gets shards from the peers that hold them. The network
// layer implements it; the store never trusts what it returns and
// verifies every shard against the block's shard root.
type ShardFetcher interface {
	// FetchShard asks the validator at req.Index of the block's epoch for
	// its shard. It returns an error if the peer is unreachable or does
	// not have it.
	FetchShard(ctx context.Context, req ShardRequest) (*erasure.Shard, error)
	// ReportBadShard tells the network layer that the holder of
	// req.Index served a shard that failed verification, so it can
	// penalise or disconnect that peer.
	ReportBadShard(req ShardRequest, err error)
}

// rebuild reconstructs the body of rec from own (this node's verified
// shard, or nil) and shards fetched through f, verifying each, and checks
// the result against the header.
func (s *Store) rebuild(ctx context.Context, rec *blockRecord, own *erasure.Shard, f ShardFetcher) ([]byte, error) {
	h := rec.Header
	n := rec.Validators
	k := erasure.DataShards(n)
	have := make([][]byte, n)
	count := 0
	if own != nil {
		have[own.Index] = own.Data
		count++
	}
	var failures []error
	if count < k {
		if f == nil {
			return nil, fmt.Errorf("%w: block %d: %d of %d shards held locally and no peers to ask", ErrUnavailable, h.Height, count, k)
		}
		var got int
		got, failures = s.fetchShards(ctx, rec, have, k-count, f)
		count += got
	}
	if count < k {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: block %d: %d of %d shards: %w", ErrUnavailable, h.Height, count, k, errors.Join(failures...))
	}
	body, err := erasure.Reconstruct(have, n, h.BodySize)
	if err != nil {
		return nil, fmt.Errorf("%w: block %d: %v", ErrCorrupt, h.Height, err)
	}
	if err := checkBodyAgainstHeader(body, h); err != nil {
		return nil, err
	}
	return body, nil
}

// checkBodyAgainstHeader decodes body and compares it with the header's
// transaction count and root.
func checkBodyAgainstHeader(body []byte, h *ledger.Header) error {
	txs, err := ledger.DecodeBody(body)
	if err != nil {
		return fmt.Errorf("%w: rebuilt body of block %d: %v", ErrCorrupt, h.Height, err)
	}
	if len(txs) != int(h.TxCount) || ledger.TxRoot(txs) != h.TxRoot {
		return fmt.Errorf("%w: rebuilt body of block %d does not match its transaction root", ErrCorrupt, h.Height)
	}
	return nil
}

// fetchShards asks peers for shards until need more verified ones are in
// have or every holder was tried. It keeps need requests in flight,
// replacing each failure with a request to the next holder. Holders of
// shards that fail verification are reported.
func (s *Store) fetchShards(ctx context.Context, rec *blockRecord, have [][]byte, need int, f ShardFetcher) (int, []error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := rec.Header
	n := rec.Validators
	// Ask for data shards first: with all of them no decoding is needed.
	var candidates []int
	for i := range n {
		if have[i] == nil {
			candidates = append(candidates, i)
		}
	}
	type result struct {
		req   ShardRequest
		shard *erasure.Shard
		err   error
	}
	results := make(chan result)
	inflight, next, got := 0, 0, 0
	var failures []error
	launch := func() bool {
		if next >= len(candidates) {
			return false
		}
		req := ShardRequest{Height: h.Height, BlockID: rec.ID, Epoch: h.Epoch, Validators: n, Index: candidates[next]}
		next++
		inflight++
		go func() {
			sh, err := f.FetchShard(ctx, req)
			select {
			case results <- result{req, sh, err}:
			case <-ctx.Done():
			}
		}()
		return true
	}
	for got+inflight < need && launch() {
	}
	for got < need && inflight > 0 {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return got, append(failures, ctx.Err())
		}
		inflight--
		if r.err != nil {
			failures = append(failures, fmt.Errorf("shard %d: %w", r.req.Index, r.err))
		} else if err := verifyFetched(r.shard, r.req, h); err != nil {
			failures = append(failures, err)
			s.log.Warn("peer served a bad shard", "height", h.Height, "index", r.req.Index, "err", err)
			f.ReportBadShard(r.req, err)
		} else {
			have[r.req.Index] = r.shard.Data
			got++
		}
		for got+inflight < need && launch() {
		}
	}
	return got, failures
}

func verifyFetched(sh *erasure.Shard, req ShardRequest, h *ledger.Header) error {
	if sh == nil {
		return fmt.Errorf("%w: peer %d returned no shard", erasure.ErrShard, req.Index)
	}
	if int(sh.Index) != req.Index {
		return fmt.Errorf("%w: asked for shard %d, got %d", erasure.ErrShard, req.Index, sh.Index)
	}
	return sh.Verify(h.ShardRoot, req.Validators, h.BodySize)
}

// storeRebuilt writes back what this node should hold of a block whose
// body was rebuilt: its own shard if rewriteShard (it was damaged or
// missing), and the body if rewriteBody and the block is inside the window
// or this is an archive node.
func (s *Store) storeRebuilt(rec *blockRecord, body []byte, rewriteShard, rewriteBody bool) error {
	var shard []byte
	if rewriteShard {
		shards, root, err := erasure.NewShards(body, rec.Validators)
		if err != nil {
			return err
		}
		if root != rec.Header.ShardRoot {
			return fmt.Errorf("%w: rebuilt body of block %d re-encodes to another shard root", ErrCorrupt, rec.Header.Height)
		}
		if shard, err = erasure.EncodeShard(&shards[rec.ShardIndex]); err != nil {
			return err
		}
	}
	keepBody := rewriteBody && s.keepsBody(rec.Header.Height)
	if shard == nil && !keepBody {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		hk := heightKey(rec.Header.Height)
		if shard != nil {
			if err := tx.Bucket(bucketShards).Put(hk, shard); err != nil {
				return err
			}
			s.log.Info("shard rewritten", "height", rec.Header.Height, "index", rec.ShardIndex)
		}
		if keepBody {
			if err := tx.Bucket(bucketBodies).Put(hk, encodeBodyValue(body)); err != nil {
				return err
			}
			s.log.Info("body rewritten", "height", rec.Header.Height)
		}
		return nil
	})
}
