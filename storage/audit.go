package storage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
)

// AuditEntry is one audited event: who did what, when, to which record or
// grant, and with what outcome. Every read of a protected record by an
// authorised reader or the regulator, every grant and revocation, and
// every mask leaves one.
type AuditEntry struct {
	// Time of the event, ms since 1970 UTC.
	Time int64 `cbor:"1,keyasint" json:"time"`
	// Actor is who acted: an account address, key id or operator name.
	Actor string `cbor:"2,keyasint" json:"actor"`
	// Action is what was done, e.g. "record.read", "grant.create", "payload.mask".
	Action string `cbor:"3,keyasint" json:"action"`
	// Record names the record (or payload digest) concerned, if any.
	Record string `cbor:"4,keyasint,omitempty" json:"record,omitempty"`
	// Grant names the authorisation the access relied on, if any.
	Grant string `cbor:"5,keyasint,omitempty" json:"grant,omitempty"`
	// Outcome is "ok", "denied", or an error class.
	Outcome string `cbor:"6,keyasint" json:"outcome"`
	// Detail is optional free text.
	Detail string `cbor:"7,keyasint,omitempty" json:"detail,omitempty"`
	// Height of the block the event belongs to, if any.
	Height uint64 `cbor:"8,keyasint,omitempty" json:"height,omitempty"`
}

// Limits on audit entry fields, in bytes.
const (
	maxAuditName   = 256
	maxAuditAction = 64
	maxAuditDetail = 4096
)

func (e *AuditEntry) validate() error {
	bad := func(what string) error {
		return fmt.Errorf("%w: audit entry: %s", ErrInvalid, what)
	}
	switch {
	case e.Time <= 0:
		return bad("time must be positive milliseconds")
	case e.Actor == "" || len(e.Actor) > maxAuditName:
		return bad(fmt.Sprintf("actor must be 1 to %d bytes", maxAuditName))
	case e.Action == "" || len(e.Action) > maxAuditAction:
		return bad(fmt.Sprintf("action must be 1 to %d bytes", maxAuditAction))
	case e.Outcome == "" || len(e.Outcome) > maxAuditAction:
		return bad(fmt.Sprintf("outcome must be 1 to %d bytes", maxAuditAction))
	case len(e.Record) > maxAuditName || len(e.Grant) > maxAuditName || len(e.Detail) > maxAuditDetail:
		return bad("record, grant or detail too long")
	}
	for _, s := range []string{e.Actor, e.Action, e.Record, e.Grant, e.Outcome, e.Detail} {
		if !utf8.ValidString(s) {
			return bad("fields must be UTF-8")
		}
	}
	return nil
}

// auditDomain tags the audit hash chain.
const auditDomain = "hallmark/audit/v1\x00"

// AuditSegment is a closed run of consecutive audit entries and the chain
// digest after its last entry. Anchoring Digest on the chain (a
// TxAuditAnchor transaction) fixes every entry up to LastSeq: each chain
// value is SM3(domain ‖ previous chain value ‖ SM3(entry)).
type AuditSegment struct {
	Number   uint64    `cbor:"1,keyasint" json:"number"`
	FirstSeq uint64    `cbor:"2,keyasint" json:"firstSeq"`
	LastSeq  uint64    `cbor:"3,keyasint" json:"lastSeq"`
	Count    uint64    `cbor:"4,keyasint" json:"count"`
	MinTime  int64     `cbor:"5,keyasint" json:"minTime"`
	MaxTime  int64     `cbor:"6,keyasint" json:"maxTime"`
	Start    gm.Digest `cbor:"7,keyasint" json:"start"`  // chain value before FirstSeq
	Digest   gm.Digest `cbor:"8,keyasint" json:"digest"` // chain value after LastSeq
	// Pruned is set once the entries were dropped under the retention
	// policy; the segment record itself is kept.
	Pruned bool `cbor:"9,keyasint,omitempty" json:"pruned,omitempty"`
}

// auditHead is the running state of the log, in the meta bucket.
type auditHead struct {
	NextSeq uint64       `cbor:"1,keyasint"`
	Chain   gm.Digest    `cbor:"2,keyasint"`
	Open    AuditSegment `cbor:"3,keyasint"` // Count 0: no open segment
}

// AuditRecord is an entry as stored: its sequence number and chain value.
type AuditRecord struct {
	Seq   uint64
	Chain gm.Digest
	Entry AuditEntry
}

func encodeAuditEntries(entries []AuditEntry) ([][]byte, error) {
	out := make([][]byte, len(entries))
	for i := range entries {
		if err := entries[i].validate(); err != nil {
			return nil, err
		}
		enc, err := ledger.Marshal(&entries[i])
		if err != nil {
			return nil, err
		}
		out[i] = enc
	}
	return out, nil
}

func (s *Store) genesisAuditChain() gm.Digest {
	return gm.SM3Concat([]byte(auditDomain), []byte(s.opts.ChainID))
}

func (s *Store) loadAuditHead(tx *bolt.Tx) (*auditHead, error) {
	v := tx.Bucket(bucketMeta).Get(metaAuditHead)
	if v == nil {
		g := s.genesisAuditChain()
		return &auditHead{NextSeq: 1, Chain: g, Open: AuditSegment{Start: g}}, nil
	}
	var h auditHead
	if err := ledger.Unmarshal(v, &h); err != nil {
		return nil, fmt.Errorf("%w: audit head: %v", ErrCorrupt, err)
	}
	return &h, nil
}

func nextAuditChain(prev gm.Digest, entry []byte) gm.Digest {
	e := gm.SM3(entry)
	return gm.SM3Concat([]byte(auditDomain), prev[:], e[:])
}

const msPerDay = 24 * 60 * 60 * 1000

func utcDay(ms int64) int64 {
	d := ms / msPerDay
	if ms < 0 && ms%msPerDay != 0 {
		d--
	}
	return d
}

// appendAudit adds encoded entries to the log inside tx, sealing the open
// segment when an entry from a later UTC day arrives or it is full.
func (s *Store) appendAudit(tx *bolt.Tx, recs [][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	head, err := s.loadAuditHead(tx)
	if err != nil {
		return err
	}
	log, byTime := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditTime)
	for _, rec := range recs {
		var e AuditEntry
		if err := ledger.Unmarshal(rec, &e); err != nil {
			return err
		}
		if head.Open.Count > 0 && (utcDay(e.Time) > utcDay(head.Open.MinTime) ||
			head.Open.Count >= uint64(s.opts.AuditSegmentEntries)) {
			if err := sealAudit(tx, head); err != nil {
				return err
			}
		}
		seq := head.NextSeq
		head.Chain = nextAuditChain(head.Chain, rec)
		val := make([]byte, 0, gm.DigestSize+len(rec))
		val = append(append(val, head.Chain[:]...), rec...)
		if err := log.Put(u64(seq), val); err != nil {
			return err
		}
		if err := byTime.Put(auditTimeKey(e.Time, seq), nil); err != nil {
			return err
		}
		o := &head.Open
		if o.Count == 0 {
			number := o.Number
			*o = AuditSegment{Number: number, FirstSeq: seq, MinTime: e.Time, MaxTime: e.Time, Start: o.Start}
		}
		o.LastSeq, o.Digest = seq, head.Chain
		o.Count++
		o.MinTime, o.MaxTime = min(o.MinTime, e.Time), max(o.MaxTime, e.Time)
		head.NextSeq++
	}
	return putAuditHead(tx, head)
}

func putAuditHead(tx *bolt.Tx, h *auditHead) error {
	enc, err := ledger.Marshal(h)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(metaAuditHead, enc)
}

// sealAudit closes the open segment and starts the next one.
func sealAudit(tx *bolt.Tx, head *auditHead) error {
	enc, err := ledger.Marshal(&head.Open)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketAuditSeg).Put(u64(head.Open.Number), enc); err != nil {
		return err
	}
	head.Open = AuditSegment{Number: head.Open.Number + 1, Start: head.Chain}
	return nil
}

// AppendAudit records entries in the audit log and returns once they are
// on disk. Concurrent calls are coalesced into shared transactions.
func (s *Store) AppendAudit(ctx context.Context, entries ...AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	recs, err := encodeAuditEntries(entries)
	if err != nil {
		return err
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.db.Batch(func(tx *bolt.Tx) error { return s.appendAudit(tx, recs) }); err != nil {
		return fmt.Errorf("storage: append audit: %w", err)
	}
	return nil
}

// SealAudit closes the open audit segment, if it holds entries, and
// returns it; the node anchors its digest on chain. It returns ok = false
// when there is nothing to seal.
func (s *Store) SealAudit(ctx context.Context) (seg AuditSegment, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return seg, false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		head, err := s.loadAuditHead(tx)
		if err != nil || head.Open.Count == 0 {
			return err
		}
		seg, ok = head.Open, true
		if err := sealAudit(tx, head); err != nil {
			return err
		}
		return putAuditHead(tx, head)
	})
	return seg, ok, err
}

// AuditSegments calls fn for every sealed segment in order.
func (s *Store) AuditSegments(fn func(AuditSegment) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAuditSeg).ForEach(func(_, v []byte) error {
			var seg AuditSegment
			if err := ledger.Unmarshal(v, &seg); err != nil {
				return fmt.Errorf("%w: audit segment: %v", ErrCorrupt, err)
			}
			return fn(seg)
		})
	})
}

// VerifyAuditSegment recomputes the chain over a sealed segment's entries
// and compares it with the recorded digest.
func (s *Store) VerifyAuditSegment(number uint64) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAuditSeg).Get(u64(number))
		if v == nil {
			return fmt.Errorf("%w: audit segment %d", ErrNotFound, number)
		}
		var seg AuditSegment
		if err := ledger.Unmarshal(v, &seg); err != nil {
			return fmt.Errorf("%w: audit segment %d: %v", ErrCorrupt, number, err)
		}
		if seg.Pruned {
			return fmt.Errorf("%w: audit segment %d was pruned", ErrNotFound, number)
		}
		chain := seg.Start
		c := tx.Bucket(bucketAudit).Cursor()
		n := uint64(0)
		for k, v := c.Seek(u64(seg.FirstSeq)); k != nil && binary.BigEndian.Uint64(k) <= seg.LastSeq; k, v = c.Next() {
			if len(v) < gm.DigestSize {
				return fmt.Errorf("%w: audit entry %d", ErrCorrupt, binary.BigEndian.Uint64(k))
			}
			chain = nextAuditChain(chain, v[gm.DigestSize:])
			if chain != gm.Digest(v[:gm.DigestSize]) {
				return fmt.Errorf("%w: audit entry %d breaks the chain", ErrCorrupt, binary.BigEndian.Uint64(k))
			}
			n++
		}
		if n != seg.Count || chain != seg.Digest {
			return fmt.Errorf("%w: audit segment %d: %d entries, chain %s; recorded %d, %s",
				ErrCorrupt, number, n, short(chain), seg.Count, short(seg.Digest))
		}
		return nil
	})
}

// auditChunk bounds how many entries one read transaction visits, so a
// long export never pins old pages for long.
const auditChunk = 1024

// AuditRange calls fn for each entry with from ≤ Time < to, in time order
// (ties in append order). It reads in short transactions, so entries
// appended meanwhile may or may not be seen.
func (s *Store) AuditRange(ctx context.Context, from, to time.Time, fn func(AuditRecord) error) error {
	start := auditTimeKey(from.UnixMilli(), 0)
	end := auditTimeKey(to.UnixMilli(), 0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch []AuditRecord
		var next []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketAuditTime).Cursor()
			log := tx.Bucket(bucketAudit)
			for k, _ := c.Seek(start); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
				if len(batch) == auditChunk {
					next = bytes.Clone(k)
					return nil
				}
				_, seq, err := parseAuditTimeKey(k)
				if err != nil {
					return err
				}
				v := log.Get(u64(seq))
				if len(v) < gm.DigestSize {
					return fmt.Errorf("%w: audit entry %d missing", ErrCorrupt, seq)
				}
				r := AuditRecord{Seq: seq, Chain: gm.Digest(v[:gm.DigestSize])}
				if err := ledger.Unmarshal(v[gm.DigestSize:], &r.Entry); err != nil {
					return fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, seq, err)
				}
				batch = append(batch, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		start = next
	}
}

// auditJSON is one line of an export.
type auditJSON struct {
	Seq   uint64    `json:"seq"`
	Chain gm.Digest `json:"chain"`
	At    string    `json:"at"`
	AuditEntry
}

// ExportAudit writes the entries with from ≤ Time < to to w as JSON lines
// (one object per line: seq, chain, at (RFC 3339), and the entry's
// fields) and returns how many it wrote.
func (s *Store) ExportAudit(ctx context.Context, w io.Writer, from, to time.Time) (int, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	err := s.AuditRange(ctx, from, to, func(r AuditRecord) error {
		n++
		return enc.Encode(auditJSON{
			Seq: r.Seq, Chain: r.Chain,
			At:         time.UnixMilli(r.Entry.Time).UTC().Format(time.RFC3339Nano),
			AuditEntry: r.Entry,
		})
	})
	if err != nil {
		return n, fmt.Errorf("storage: export audit: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("storage: export audit: %w", err)
	}
	return n, nil
}

// PruneAudit drops the entries of sealed segments whose newest entry is
// older than before. It refuses, with ErrRetention, a cutoff later than
// now minus the retention period, so no entry younger than that can be
// dropped. Segment records (with their digests) are kept. It returns the
// number of entries dropped.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	limit := s.opts.Now().Add(-s.opts.AuditRetention)
	if before.After(limit) {
		return 0, fmt.Errorf("%w: cutoff %s is after %s (now minus %s)",
			ErrRetention, before.UTC().Format(time.RFC3339), limit.UTC().Format(time.RFC3339), s.opts.AuditRetention)
	}
	cut := before.UnixMilli()
	var segs []AuditSegment
	if err := s.AuditSegments(func(seg AuditSegment) error {
		if !seg.Pruned && seg.MaxTime < cut {
			segs = append(segs, seg)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	dropped := 0
	for _, seg := range segs {
		// One segment per transaction; a segment holds at most
		// AuditSegmentEntries entries.
		if err := ctx.Err(); err != nil {
			return dropped, err
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			log, byTime := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditTime)
			for seq := seg.FirstSeq; seq <= seg.LastSeq; seq++ {
				v := log.Get(u64(seq))
				if v == nil {
					continue
				}
				var e AuditEntry
				if len(v) >= gm.DigestSize && ledger.Unmarshal(v[gm.DigestSize:], &e) == nil {
					if err := byTime.Delete(auditTimeKey(e.Time, seq)); err != nil {
						return err
					}
				}
				if err := log.Delete(u64(seq)); err != nil {
					return err
				}
				dropped++
			}
			seg.Pruned = true
			enc, err := ledger.Marshal(&seg)
			if err != nil {
				return err
			}
			return tx.Bucket(bucketAuditSeg).Put(u64(seg.Number), enc)
		})
		if err != nil {
			return dropped, fmt.Errorf("storage: prune audit segment %d: %w", seg.Number, err)
		}
		s.log.Info("audit segment pruned", "segment", seg.Number, "entries", seg.Count, "newest", time.UnixMilli(seg.MaxTime).UTC())
	}
	return dropped, nil
}
