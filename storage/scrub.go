package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/storage/erasure"
)

// ScrubOptions tune a scrub pass.
type ScrubOptions struct {
	// Fetcher gets peers' shards to rebuild what this node cannot repair
	// from its own data. Nil limits repairs to local sources (a shard
	// re-encoded from an intact stored body). If it also implements
	// PayloadFetcher, corrupt payloads are fetched again.
	Fetcher ShardFetcher
	// BytesPerSecond caps how fast the pass reads stored data (0: no cap),
	// so that a scrub does not compete with commits for the disk.
	BytesPerSecond int64
	// ProgressEvery is the interval between progress log lines (default 10s).
	ProgressEvery time.Duration
}

// PayloadFetcher is implemented by fetchers that can also get a payload
// by digest from peers.
type PayloadFetcher interface {
	FetchPayload(ctx context.Context, digest gm.Digest) ([]byte, error)
}

// ScrubReport summarises a scrub pass.
type ScrubReport struct {
	From, To       uint64 // heights checked, inclusive
	Blocks         int
	ShardsChecked  int
	ShardsRepaired int
	BodiesChecked  int
	BodiesRepaired int // damaged bodies rewritten
	BodiesRestored int // bodies missing inside the window (or on an archive node) written
	Payloads       int
	PayloadsBad    int
	PayloadsFixed  int
	AuditSegments  int
	AuditBad       int
	// Unrepaired counts damage the pass found and could not fix; Problems
	// holds the first few reasons.
	Unrepaired int
	Problems   []error
}

const maxReportedProblems = 16

func (r *ScrubReport) problem(err error) {
	r.Unrepaired++
	if len(r.Problems) < maxReportedProblems {
		r.Problems = append(r.Problems, err)
	}
}

// pacer spaces reads so that they average at most rate bytes per second.
type pacer struct {
	rate  int64
	start time.Time
	done  int64
}

func (p *pacer) wait(ctx context.Context, n int) error {
	if p.rate <= 0 {
		return ctx.Err()
	}
	p.done += int64(n)
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Scrub re-hashes this node's shards, stored bodies, payloads and sealed
// audit segments, and repairs what it can: a corrupt or missing shard is
// re-encoded from the intact stored body or rebuilt from peers' shards; a
// corrupt body, or one missing inside the window (or anywhere on an
// archive node), is rebuilt and rewritten. A pass cancelled through ctx
// resumes where it stopped the next time. Progress is logged.
func (s *Store) Scrub(ctx context.Context, opts ScrubOptions) (ScrubReport, error) {
	var rep ScrubReport
	every := opts.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	pace := &pacer{rate: opts.BytesPerSecond, start: time.Now()}
	if tip, ok := s.Tip(); ok {
		if err := s.scrubBlocks(ctx, tip.Height, opts.Fetcher, pace, every, &rep); err != nil {
			return rep, err
		}
	}
	if err := s.scrubPayloads(ctx, opts.Fetcher, pace, &rep); err != nil {
		return rep, err
	}
	if err := s.scrubAudit(&rep); err != nil {
		return rep, err
	}
	s.log.Info("scrub finished", "blocks", rep.Blocks, "shards_checked", rep.ShardsChecked,
		"shards_repaired", rep.ShardsRepaired, "bodies_checked", rep.BodiesChecked,
		"bodies_repaired", rep.BodiesRepaired, "bodies_restored", rep.BodiesRestored,
		"payloads", rep.Payloads, "payloads_bad", rep.PayloadsBad, "payloads_fixed", rep.PayloadsFixed,
		"audit_segments", rep.AuditSegments, "audit_bad", rep.AuditBad, "unrepaired", rep.Unrepaired)
	return rep, nil
}

// scrubBlocks checks heights from the saved position to tip.
func (s *Store) scrubBlocks(ctx context.Context, tip uint64, f ShardFetcher, pace *pacer, every time.Duration, rep *ScrubReport) error {
	from, err := s.scrubCursor()
	if err != nil {
		return err
	}
	if from > tip {
		from = 0
	}
	rep.From, rep.To = from, tip
	lastLog := time.Now()
	s.log.Info("scrub started", "from", from, "to", tip)
	for h := from; h <= tip; h++ {
		if err := s.checkOpen(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			s.saveScrubCursor(h)
			s.log.Info("scrub interrupted", "at", h, "shards_repaired", rep.ShardsRepaired, "bodies_repaired", rep.BodiesRepaired)
			return err
		}
		n, err := s.scrubBlock(ctx, h, f, rep)
		if err != nil {
			s.saveScrubCursor(h)
			return err
		}
		if err := pace.wait(ctx, n); err != nil {
			s.saveScrubCursor(h + 1)
			s.log.Info("scrub interrupted", "at", h+1, "shards_repaired", rep.ShardsRepaired, "bodies_repaired", rep.BodiesRepaired)
			return err
		}
		if time.Since(lastLog) >= every {
			s.log.Info("scrub progress", "height", h, "to", tip,
				"percent", fmt.Sprintf("%.1f", 100*float64(h-from+1)/float64(tip-from+1)),
				"shards_repaired", rep.ShardsRepaired, "bodies_repaired", rep.BodiesRepaired+rep.BodiesRestored,
				"unrepaired", rep.Unrepaired)
			lastLog = time.Now()
			s.saveScrubCursor(h + 1)
		}
	}
	s.saveScrubCursor(0)
	return nil
}

// ScrubLoop runs a scrub pass every interval until ctx ends: the
// background task the node runtime starts.
func (s *Store) ScrubLoop(ctx context.Context, interval time.Duration, opts ScrubOptions) error {
	for {
		rep, err := s.Scrub(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrClosed) {
				return err
			}
			s.log.Error("scrub pass failed", "err", err)
		} else if rep.Unrepaired > 0 {
			s.log.Warn("scrub left damage unrepaired", "count", rep.Unrepaired, "first", rep.Problems[0])
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Store) scrubCursor() (uint64, error) {
	var h uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaScrubCursor); len(v) == 8 {
			h = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return h, err
}

func (s *Store) saveScrubCursor(h uint64) {
	if s.checkOpen() != nil {
		return
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaScrubCursor, u64(h))
	}); err != nil {
		s.log.Warn("saving scrub position", "err", err)
	}
}

// scrubBlock checks and repairs one block and returns the bytes it read.
func (s *Store) scrubBlock(ctx context.Context, h uint64, f ShardFetcher, rep *ScrubReport) (int, error) {
	var rec *blockRecord
	var own *erasure.Shard
	var body []byte
	var shardErr, bodyErr error
	bodyStored := false
	read := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getBlockRecord(tx, h); err != nil {
			return err
		}
		hk := heightKey(h)
		if rec.ShardIndex >= 0 {
			read += len(tx.Bucket(bucketShards).Get(hk))
			own, shardErr = ownShardOf(tx, rec)
		}
		if v := tx.Bucket(bucketBodies).Get(hk); v != nil {
			bodyStored = true
			read += len(v)
			body, bodyErr = localBody(tx, rec)
		}
		return nil
	})
	if err != nil {
		// A header that no longer decodes cannot be rebuilt from peers'
		// shards (it is what they are checked against): report it.
		rep.problem(fmt.Errorf("block %d: %w", h, err))
		return read, nil
	}
	rep.Blocks++
	if rec.ShardIndex >= 0 {
		rep.ShardsChecked++
	}
	if bodyStored {
		rep.BodiesChecked++
	}
	shardBad := shardErr != nil
	bodyBad := bodyErr != nil
	bodyMissing := !bodyStored && s.keepsBody(h)
	if !shardBad && !bodyBad && !bodyMissing {
		return read, nil
	}
	for _, e := range []error{shardErr, bodyErr} {
		if e != nil {
			s.log.Warn("scrub found damage", "height", h, "err", e)
		}
	}
	if body == nil {
		body, err = s.rebuild(ctx, rec, own, f)
		if err != nil {
			if ctx.Err() != nil {
				return read, ctx.Err()
			}
			rep.problem(fmt.Errorf("block %d: %w", h, err))
			return read, nil
		}
	}
	if err := s.storeRebuilt(rec, body, shardBad, bodyBad || bodyMissing); err != nil {
		rep.problem(fmt.Errorf("block %d: rewrite: %w", h, err))
		return read, nil
	}
	if shardBad {
		rep.ShardsRepaired++
	}
	switch {
	case bodyBad:
		rep.BodiesRepaired++
	case bodyMissing:
		rep.BodiesRestored++
	}
	return read, nil
}

// scrubPayloads re-hashes every stored payload, in chunks of digests.
func (s *Store) scrubPayloads(ctx context.Context, f ShardFetcher, pace *pacer, rep *ScrubReport) error {
	pf, _ := f.(PayloadFetcher)
	var after []byte
	for {
		type item struct {
			digest gm.Digest
			loc    payloadLoc
		}
		var items []item
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketPayloads).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(items) < 256; k, v = c.Next() {
				loc, err := decodePayloadLoc(v)
				if err != nil {
					rep.problem(fmt.Errorf("payload %x: %w", k[:8], err))
					continue
				}
				items = append(items, item{gm.Digest(k), loc})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return nil
		}
		after = bytes.Clone(items[len(items)-1].digest[:])
		for _, it := range items {
			if err := pace.wait(ctx, it.loc.Length); err != nil {
				return err
			}
			rep.Payloads++
			data, err := s.payloads.read(it.loc)
			if err == nil && gm.SM3(data) == it.digest {
				continue
			}
			rep.PayloadsBad++
			s.log.Warn("scrub found a damaged payload", "digest", short(it.digest), "err", err)
			if pf == nil {
				rep.problem(fmt.Errorf("payload %s is damaged and no peer can be asked", short(it.digest)))
				continue
			}
			fresh, err := pf.FetchPayload(ctx, it.digest)
			if err == nil && gm.SM3(fresh) != it.digest {
				err = fmt.Errorf("peer served bytes that do not hash to the digest")
			}
			if err == nil {
				err = s.replacePayload(it.digest, fresh, it.loc)
			}
			if err != nil {
				rep.problem(fmt.Errorf("payload %s: %w", short(it.digest), err))
				continue
			}
			rep.PayloadsFixed++
		}
	}
}

// replacePayload stores a fresh copy of a damaged payload and queues the
// old location for zeroing in the same transaction.
func (s *Store) replacePayload(d gm.Digest, data []byte, old payloadLoc) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	pending, err := s.payloads.append([]payloadBlob{{digest: d, data: data, height: old.Height}})
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMasks).Get(d[:]) != nil {
			return fmt.Errorf("%w: %s was masked meanwhile", ErrMasked, short(d))
		}
		if err := pending.record(tx); err != nil {
			return err
		}
		return queueErasure(tx, d, old)
	})
	if err != nil {
		return errors.Join(err, s.payloads.rollback(pending))
	}
	s.payloads.commit(pending)
	return s.finishErasures()
}

// scrubAudit verifies the hash chain of every sealed, unpruned segment.
func (s *Store) scrubAudit(rep *ScrubReport) error {
	var segs []uint64
	if err := s.AuditSegments(func(seg AuditSegment) error {
		if !seg.Pruned {
			segs = append(segs, seg.Number)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, n := range segs {
		rep.AuditSegments++
		if err := s.VerifyAuditSegment(n); err != nil {
			rep.AuditBad++
			rep.problem(err)
			s.log.Error("audit segment fails its chain", "segment", n, "err", err)
		}
	}
	return nil
}
