package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Payload blobs live outside bbolt, in append-only segment files
// (payloads/NNNNNNNN.seg). bbolt frees pages without zeroing them, so a
// payload written into the database could never be erased; a segment file
// can be overwritten in place. docs/STORAGE.md gives the ordering that
// keeps this crash-safe.

// segments manages the payload segment files. All methods except read are
// called with Store.writeMu held.
type segments struct {
	dir     string
	maxSize int64
	log     *slog.Logger
	// The committed state: the active segment and how many of its bytes
	// are referenced by committed bbolt transactions.
	active uint32
	length int64
	f      *os.File // the active segment, opened lazily
}

// pendingAppend describes payload bytes written to a segment but not yet
// committed in bbolt.
type pendingAppend struct {
	s        *segments
	segment  uint32
	start    int64 // where the block's payloads begin
	end      int64 // the segment length once committed
	newFile  bool  // the append opened a new segment
	f        *os.File
	locs     []payloadLoc
	digests  []gm.Digest
	nonEmpty bool
}

func segmentName(n uint32) string { return fmt.Sprintf("%08d.seg", n) }

func (s *segments) path(n uint32) string { return filepath.Join(s.dir, segmentName(n)) }

// openSegments loads the committed segment state and discards any bytes a
// crash left beyond it: the uncommitted tail of the active segment and any
// segment file numbered after it. Discarded bytes are zeroed before the
// file is truncated or removed, so no payload survives in freed blocks.
func openSegments(dir string, maxSize int64, db *bolt.DB, log *slog.Logger) (*segments, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	s := &segments{dir: dir, maxSize: maxSize, log: log}
	if err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaPayloadSeg)
		switch len(v) {
		case 0:
			return nil
		case 12:
			s.active = binary.BigEndian.Uint32(v)
			s.length = int64(binary.BigEndian.Uint64(v[4:]))
			return nil
		}
		return fmt.Errorf("%w: payload segment state of %d bytes", ErrCorrupt, len(v))
	}); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", dir, err)
	}
	changed := false
	for _, e := range entries {
		name := e.Name()
		num, ok := strings.CutSuffix(name, ".seg")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			continue
		}
		switch {
		case uint32(n) > s.active:
			if err := shredFile(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			log.Warn("discarded payload segment of a block that never committed", "segment", name)
			changed = true
		case uint32(n) == s.active:
			info, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("storage: stat %s: %w", name, err)
			}
			if info.Size() > s.length {
				if err := shredTail(filepath.Join(dir, name), s.length); err != nil {
					return nil, err
				}
				log.Warn("discarded payload bytes of a block that never committed",
					"segment", name, "bytes", info.Size()-s.length)
			} else if info.Size() < s.length {
				log.Error("payload segment is shorter than committed; payloads in the missing tail will fail their check",
					"segment", name, "size", info.Size(), "committed", s.length)
			}
		}
	}
	if changed {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *segments) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func (s *segments) activeFile() (*os.File, error) {
	if s.f != nil {
		return s.f, nil
	}
	f, err := os.OpenFile(s.path(s.active), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open payload segment: %w", err)
	}
	s.f = f
	return f, nil
}

// append writes blobs at the end of the active segment (or a new one when
// the active one is full), fsyncs, and returns what to record in bbolt.
// Each blob's location records the blob's height.
func (s *segments) append(blobs []payloadBlob) (*pendingAppend, error) {
	p := &pendingAppend{s: s, segment: s.active, start: s.length, end: s.length}
	if len(blobs) == 0 {
		return p, nil
	}
	p.nonEmpty = true
	var total int64
	for _, b := range blobs {
		total += int64(len(b.data))
	}
	var f *os.File
	if s.length > 0 && s.length+total > s.maxSize {
		p.segment, p.start, p.end, p.newFile = s.active+1, 0, 0, true
		nf, err := os.OpenFile(s.path(p.segment), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create payload segment: %w", err)
		}
		f = nf
	} else {
		af, err := s.activeFile()
		if err != nil {
			return nil, err
		}
		f = af
	}
	p.f = f
	for _, b := range blobs {
		if _, err := f.WriteAt(b.data, p.end); err != nil {
			return nil, errors.Join(fmt.Errorf("write payload %s: %w", short(b.digest), err), s.rollback(p))
		}
		p.locs = append(p.locs, payloadLoc{Segment: p.segment, Offset: p.end, Length: len(b.data), Height: b.height})
		p.digests = append(p.digests, b.digest)
		p.end += int64(len(b.data))
	}
	if err := f.Sync(); err != nil {
		return nil, errors.Join(fmt.Errorf("sync payload segment: %w", err), s.rollback(p))
	}
	if p.newFile {
		if err := syncDir(s.dir); err != nil {
			return nil, errors.Join(err, s.rollback(p))
		}
	}
	return p, nil
}

// record adds the payload index entries and the new segment state to the
// block's write transaction.
func (p *pendingAppend) record(tx *bolt.Tx) error {
	if !p.nonEmpty {
		return nil
	}
	b := tx.Bucket(bucketPayloads)
	for i, d := range p.digests {
		if err := b.Put(d[:], p.locs[i].encode()); err != nil {
			return err
		}
	}
	state := binary.BigEndian.AppendUint64(u32(p.segment), uint64(p.end))
	return tx.Bucket(bucketMeta).Put(metaPayloadSeg, state)
}

// commit makes a recorded append the committed state.
func (s *segments) commit(p *pendingAppend) {
	if !p.nonEmpty {
		return
	}
	if p.newFile {
		if s.f != nil {
			s.f.Close()
		}
		s.f = p.f
		s.active = p.segment
	}
	s.length = p.end
}

// rollback zeroes and drops the bytes of an append whose transaction
// failed.
func (s *segments) rollback(p *pendingAppend) error {
	if p == nil || !p.nonEmpty {
		return nil
	}
	if p.newFile {
		p.f.Close()
		if err := shredFile(s.path(p.segment)); err != nil {
			return err
		}
		return syncDir(s.dir)
	}
	return shredTail(s.path(p.segment), s.length)
}

// read returns the bytes at loc.
func (s *segments) read(loc payloadLoc) ([]byte, error) {
	f, err := os.Open(s.path(loc.Segment))
	if err != nil {
		return nil, fmt.Errorf("%w: payload segment %d: %v", ErrCorrupt, loc.Segment, err)
	}
	defer f.Close()
	buf := make([]byte, loc.Length)
	if _, err := f.ReadAt(buf, loc.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: payload segment %d ends before offset %d+%d", ErrCorrupt, loc.Segment, loc.Offset, loc.Length)
		}
		return nil, fmt.Errorf("storage: read payload segment %d: %w", loc.Segment, err)
	}
	return buf, nil
}

// zero overwrites loc's bytes in place and fsyncs.
func (s *segments) zero(loc payloadLoc) error {
	f, err := os.OpenFile(s.path(loc.Segment), os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing left to erase
	}
	if err != nil {
		return fmt.Errorf("storage: open payload segment %d: %w", loc.Segment, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	end := min(loc.Offset+int64(loc.Length), info.Size())
	if err := zeroRange(f, loc.Offset, end); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: sync payload segment %d: %w", loc.Segment, err)
	}
	return nil
}

// zeroRange overwrites [from, to) of f with zero bytes, in place: the file
// keeps its blocks, so the old contents are overwritten on disk rather
// than released.
func zeroRange(f *os.File, from, to int64) error {
	zeros := make([]byte, min(64<<10, max(0, to-from)))
	for off := from; off < to; {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("storage: zero %s at %d: %w", f.Name(), off, err)
		}
		off += n
	}
	return nil
}

// shredTail zeroes everything from length on, fsyncs, then truncates to
// length and fsyncs again.
func shredTail(path string, length int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", path, err)
	}
	if info.Size() <= length {
		return nil
	}
	if err := zeroRange(f, length, info.Size()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: sync %s: %w", path, err)
	}
	if err := f.Truncate(length); err != nil {
		return fmt.Errorf("storage: truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: sync %s: %w", path, err)
	}
	return nil
}

// shredFile zeroes a whole file, fsyncs and removes it.
func shredFile(path string) error {
	if err := shredTail(path, 0); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: remove %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("storage: sync directory %s: %w", dir, err)
	}
	return nil
}

// newPayloads returns the blobs that are neither stored nor masked.
func (s *Store) newPayloads(blobs []payloadBlob) ([]payloadBlob, error) {
	var fresh []payloadBlob
	err := s.db.View(func(tx *bolt.Tx) error {
		stored, masked := tx.Bucket(bucketPayloads), tx.Bucket(bucketMasks)
		for _, b := range blobs {
			if stored.Get(b.digest[:]) != nil {
				continue
			}
			if masked.Get(b.digest[:]) != nil {
				s.log.Info("refused to store a masked payload", "digest", short(b.digest))
				continue
			}
			fresh = append(fresh, b)
		}
		return nil
	})
	return fresh, err
}

// Payload returns the payload with the given SM3 digest. It returns
// ErrMasked if the regulator masked it, ErrNotFound if this node never
// stored it, and ErrCorrupt if the stored bytes no longer hash to digest.
func (s *Store) Payload(digest gm.Digest) ([]byte, error) {
	var loc payloadLoc
	err := s.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMasks).Get(digest[:]); m != nil {
			mk, err := decodeMask(digest, m)
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: %s at height %d: %s", ErrMasked, short(digest), mk.Height, mk.Reason)
		}
		v := tx.Bucket(bucketPayloads).Get(digest[:])
		if v == nil {
			return fmt.Errorf("%w: payload %s", ErrNotFound, short(digest))
		}
		var err error
		loc, err = decodePayloadLoc(v)
		return err
	})
	if err != nil {
		return nil, err
	}
	data, err := s.payloads.read(loc)
	if err == nil && gm.SM3(data) != digest {
		err = fmt.Errorf("%w: payload %s does not match its digest", ErrCorrupt, short(digest))
	}
	if err != nil {
		// A mask may have zeroed the bytes since the location was read.
		if m, merr := s.Masked(digest); merr == nil {
			return nil, fmt.Errorf("%w: %s at height %d: %s", ErrMasked, short(digest), m.Height, m.Reason)
		}
		return nil, err
	}
	return data, nil
}

// PutPayload stores a payload that arrived after its block committed (for
// example during catch-up). It is a no-op for a payload already stored and
// returns ErrMasked for a masked one.
func (s *Store) PutPayload(ctx context.Context, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(payload) > ledger.MaxPayloadBytes {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrInvalid, len(payload), ledger.MaxPayloadBytes)
	}
	d := gm.SM3(payload)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	var masked bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		masked = tx.Bucket(bucketMasks).Get(d[:]) != nil
		return nil
	}); err != nil {
		return err
	}
	if masked {
		return fmt.Errorf("%w: %s", ErrMasked, short(d))
	}
	fresh, err := s.newPayloads([]payloadBlob{{digest: d, data: payload, height: s.tipHeight()}})
	if err != nil || len(fresh) == 0 {
		return err
	}
	return s.appendPayloads(fresh)
}

// appendPayloads stores blobs outside a block commit. Called with writeMu.
func (s *Store) appendPayloads(blobs []payloadBlob) error {
	pending, err := s.payloads.append(blobs)
	if err != nil {
		return fmt.Errorf("storage: write payloads: %w", err)
	}
	if err := s.db.Update(pending.record); err != nil {
		return errors.Join(fmt.Errorf("storage: record payloads: %w", err), s.payloads.rollback(pending))
	}
	s.payloads.commit(pending)
	return nil
}

func (s *Store) tipHeight() uint64 {
	if t := s.tip.Load(); t != nil {
		return t.Height
	}
	return 0
}

// Mask records the regulator's order to erase one payload.
type Mask struct {
	Digest gm.Digest `cbor:"1,keyasint" json:"digest"`
	// Time of the order, ms since 1970 UTC.
	Time int64 `cbor:"2,keyasint" json:"time"`
	// Height of the block that carried the order (0 if none).
	Height uint64 `cbor:"3,keyasint,omitempty" json:"height,omitempty"`
	// TxID of the masking transaction, if any.
	TxID *gm.Digest `cbor:"4,keyasint,omitempty" json:"txId,omitempty"`
	// By names who ordered it (the regulator's account or key id).
	By string `cbor:"5,keyasint" json:"by"`
	// Reason is free text for the audit trail.
	Reason string `cbor:"6,keyasint,omitempty" json:"reason,omitempty"`
}

func (m *Mask) validate() error {
	if m.Digest.IsZero() || m.Time <= 0 || m.By == "" || len(m.By) > 256 || len(m.Reason) > 1024 ||
		!utf8.ValidString(m.By) || !utf8.ValidString(m.Reason) {
		return fmt.Errorf("%w: mask of %s needs a digest, a positive time, who (≤256 bytes) and a reason of ≤1024 bytes",
			ErrInvalid, short(m.Digest))
	}
	return nil
}

func decodeMask(d gm.Digest, v []byte) (*Mask, error) {
	var m Mask
	if err := ledger.Unmarshal(v, &m); err != nil || m.Digest != d {
		return nil, fmt.Errorf("%w: mask record of %s", ErrCorrupt, short(d))
	}
	return &m, nil
}

// putMask records the mask and, if this node holds the payload, moves its
// location from the index to the erase queue. The bytes are zeroed after
// the transaction commits (finishErasures).
func putMask(tx *bolt.Tx, m *Mask) error {
	enc, err := ledger.Marshal(m)
	if err != nil {
		return err
	}
	masks := tx.Bucket(bucketMasks)
	if masks.Get(m.Digest[:]) == nil {
		if err := masks.Put(m.Digest[:], enc); err != nil {
			return err
		}
	}
	idx := tx.Bucket(bucketPayloads)
	if v := idx.Get(m.Digest[:]); v != nil {
		loc, err := decodePayloadLoc(v)
		if err != nil {
			return err
		}
		if err := queueErasure(tx, m.Digest, loc); err != nil {
			return err
		}
		if err := idx.Delete(m.Digest[:]); err != nil {
			return err
		}
	}
	return nil
}

// queueErasure records, inside tx, a range of payload bytes to zero once
// tx has committed. The key is digest ‖ segment uint32 BE ‖ offset uint64
// BE, so one digest may have several ranges queued.
func queueErasure(tx *bolt.Tx, d gm.Digest, loc payloadLoc) error {
	key := make([]byte, 0, gm.DigestSize+12)
	key = append(key, d[:]...)
	key = binary.BigEndian.AppendUint32(key, loc.Segment)
	key = binary.BigEndian.AppendUint64(key, uint64(loc.Offset))
	return tx.Bucket(bucketErasePending).Put(key, loc.encode())
}

// MaskPayload erases a payload on this node: from the moment it returns,
// Payload reports ErrMasked, the payload is refused if it arrives again,
// and its bytes are overwritten on disk. The audit entry, if given, is
// recorded in the same transaction as the mask.
func (s *Store) MaskPayload(ctx context.Context, m Mask, audit *AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return err
	}
	var recs [][]byte
	if audit != nil {
		var err error
		if recs, err = encodeAuditEntries([]AuditEntry{*audit}); err != nil {
			return err
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putMask(tx, &m); err != nil {
			return err
		}
		return s.appendAudit(tx, recs)
	}); err != nil {
		return fmt.Errorf("storage: mask %s: %w", short(m.Digest), err)
	}
	return s.finishErasures()
}

// Masked returns the mask record of digest, or ErrNotFound.
func (s *Store) Masked(digest gm.Digest) (*Mask, error) {
	var m *Mask
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMasks).Get(digest[:])
		if v == nil {
			return fmt.Errorf("%w: no mask for %s", ErrNotFound, short(digest))
		}
		var err error
		m, err = decodeMask(digest, v)
		return err
	})
	return m, err
}

// finishErasures zeroes the bytes of every payload in the erase queue,
// fsyncs, then removes the queue entries. It is idempotent, so Open runs
// it to finish erasures a crash interrupted. Called with writeMu held (or
// before the store is shared).
func (s *Store) finishErasures() error {
	type job struct {
		key    []byte
		digest gm.Digest
		loc    payloadLoc
	}
	var jobs []job
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketErasePending).ForEach(func(k, v []byte) error {
			loc, err := decodePayloadLoc(v)
			if err != nil {
				return err
			}
			if len(k) != gm.DigestSize+12 {
				return fmt.Errorf("%w: erase queue key of %d bytes", ErrCorrupt, len(k))
			}
			jobs = append(jobs, job{bytes.Clone(k), gm.Digest(k[:gm.DigestSize]), loc})
			return nil
		})
	}); err != nil {
		return err
	}
	if len(jobs) == 0 {
		return nil
	}
	for _, j := range jobs {
		if err := s.payloads.zero(j.loc); err != nil {
			return fmt.Errorf("storage: erase payload %s: %w", short(j.digest), err)
		}
		s.log.Info("payload erased", "digest", short(j.digest), "bytes", j.loc.Length, "segment", j.loc.Segment)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketErasePending)
		for _, j := range jobs {
			if err := b.Delete(j.key); err != nil {
				return err
			}
		}
		return nil
	})
}
