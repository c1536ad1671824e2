package storage

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"hallmark/ledger"
)

// The consensus safety record and the kept blocks live in an append-only
// log, safety.log: every SaveSafety appends one frame with one write and
// makes it durable with one fdatasync. docs/STORAGE.md section 10
// describes the bytes; keep the two in step.
const (
	safetyLogName    = "safety.log"
	safetyLogTmpName = "safety.log.tmp"
	// legacySafetyName is the bbolt file that held the safety data in
	// schema versions 1 and 2; Open moves its contents into the log.
	legacySafetyName = "safety.db"

	safetyLogMagic   = "HMSAFETY"
	safetyLogFormat  = 1
	safetyHeaderSize = 8 + 4 + 8 + 4 // magic ‖ format ‖ first sequence ‖ CRC
	frameHeaderSize  = 4 + 8 + 4     // body length ‖ sequence ‖ CRC of these 12 bytes
	frameTrailerSize = 4             // CRC of header and body
	frameOverhead    = frameHeaderSize + frameTrailerSize

	// maxFrameBody bounds a frame's body: four kept blocks of the largest
	// size and a record fit.
	maxFrameBody = 1<<30 + 2<<20

	// DefaultSafetyCompactBytes is the size past which the safety log is
	// rewritten with only its live contents (or past four times the live
	// contents, if that is larger).
	DefaultSafetyCompactBytes = 64 << 20
)

// Entry tags inside a frame body. A frame's entries apply in order.
const (
	entryRecord  = 1 // length u32 ‖ record: replaces the safety record
	entryKeep    = 2 // height u64 ‖ block id [32] ‖ length u32 ‖ data: keeps a block
	entryRelease = 3 // height u64 ‖ block id [32]: forgets one kept block
	entryDropTo  = 4 // height u64: forgets every kept block at or below it
)

const (
	entryRecordHead  = 1 + 4
	entryKeepHead    = 1 + 8 + 32 + 4
	entryReleaseSize = 1 + 8 + 32
	entryDropToSize  = 1 + 8
)

// castagnoli is the CRC-32C table (read-only after initialisation; the
// standard library uses the CPU's CRC32 instruction where there is one).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keptRef names a kept block: its height and id.
type keptRef struct {
	height uint64
	id     ledger.BlockID
}

func (r keptRef) compare(o keptRef) int {
	if c := cmp.Compare(r.height, o.height); c != 0 {
		return c
	}
	return bytes.Compare(r.id[:], o.id[:])
}

// keptLoc is where a kept block's bytes lie in the log file.
type keptLoc struct {
	off int64
	n   int64
}

// safetyOp is one decoded entry, applied to the in-memory state once its
// frame is known to be intact (on replay) or durable (on append).
type safetyOp struct {
	tag    byte
	ref    keptRef // keep, release
	height uint64  // drop-to
	loc    keptLoc // keep
	record []byte  // record
}

// Crash points for tests: a step name at which an operation stops as if
// the process had died there, leaving the files as they are.
const (
	crashCompactTmpWritten = "compact-tmp-written" // temp file written, not synced
	crashCompactTmpSynced  = "compact-tmp-synced"  // temp file synced, not renamed
	crashCompactRenamed    = "compact-renamed"     // renamed, directory not synced
	crashMigrateLogWritten = "migrate-log-written" // safety.log in place, schema not bumped
	crashMigrateSchema     = "migrate-schema"      // schema bumped, safety.db not removed
)

var errSimulatedCrash = errors.New("storage: simulated crash (test hook)")

// safetyLog is the open safety log. Its in-memory state is the safety
// record and an index of the live kept blocks (their bytes stay in the
// file), so memory does not grow with the log.
type safetyLog struct {
	dir          string
	log          *slog.Logger
	compactBytes int64
	crashAt      string

	mu        sync.Mutex
	f         *os.File
	end       int64  // offset after the last frame
	nextSeq   uint64 // sequence number of the next frame
	record    []byte
	hasRecord bool
	kept      map[keptRef]keptLoc
	buf       []byte // frame buffer, reused while small
	scratch   []byte // for reading kept blocks back to compare
	// failed is set when the file's state is unknown (a failed fdatasync,
	// a write that could not be undone); every later write returns it.
	failed error
	// noCompactBefore holds compaction off after one failed, until the
	// log has grown by another eighth of the bound.
	noCompactBefore int64

	// Counters for benchmarks and tests.
	writes, syncs, written, compactions atomic.Int64
}

func safetyLogPath(dir string) string { return filepath.Join(dir, safetyLogName) }

// openSafetyLog opens dir's safety log and replays it. A torn or damaged
// last frame (a crash in the middle of an append) is cut off and logged;
// damage anywhere before it is ErrCorrupt.
func openSafetyLog(dir string, logger *slog.Logger, compactBytes int64, crashAt string) (*safetyLog, error) {
	path := safetyLogPath(dir)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	l := &safetyLog{
		dir: dir, log: logger, compactBytes: compactBytes, crashAt: crashAt,
		f: f, kept: map[keptRef]keptLoc{},
	}
	if err := l.replay(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// createSafetyLog writes an empty log and syncs it and the directory.
func createSafetyLog(dir string) error {
	snap, err := writeSafetySnapshot(dir, 1, nil, false, nil, "")
	if snap != nil {
		snap.f.Close()
	}
	return err
}

func encodeSafetyHeader(firstSeq uint64) []byte {
	h := make([]byte, 0, safetyHeaderSize)
	h = append(h, safetyLogMagic...)
	h = binary.BigEndian.AppendUint32(h, safetyLogFormat)
	h = binary.BigEndian.AppendUint64(h, firstSeq)
	return binary.BigEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

func parseSafetyHeader(path string, h []byte) (uint64, error) {
	if string(h[:8]) != safetyLogMagic {
		return 0, fmt.Errorf("%w: %s is not a Hallmark safety log", ErrCorrupt, path)
	}
	if crc32.Checksum(h[:20], castagnoli) != binary.BigEndian.Uint32(h[20:]) {
		return 0, fmt.Errorf("%w: %s: header checksum mismatch", ErrCorrupt, path)
	}
	if v := binary.BigEndian.Uint32(h[8:]); v != safetyLogFormat {
		return 0, fmt.Errorf("%w: %s has format %d, this build reads %d; run a newer hallmarkd",
			ErrSchemaTooNew, path, v, safetyLogFormat)
	}
	seq := binary.BigEndian.Uint64(h[12:])
	if seq == 0 {
		return 0, fmt.Errorf("%w: %s: first sequence number 0", ErrCorrupt, path)
	}
	return seq, nil
}

// errTorn marks a last frame that is incomplete or fails its checksum:
// what a crash in the middle of an append leaves.
type errTorn struct {
	reason string
	// headerBad: the frame header itself failed its checksum, so its
	// length cannot be trusted and the rest of the file is searched for a
	// later frame before the tail is called torn.
	headerBad bool
}

func (e *errTorn) Error() string { return e.reason }

func (l *safetyLog) replay() error {
	path := l.f.Name()
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("storage: %s: %w", path, err)
	}
	size := st.Size()
	if size < safetyHeaderSize {
		return fmt.Errorf("%w: %s is %d bytes, shorter than its header", ErrCorrupt, path, size)
	}
	hdr := make([]byte, safetyHeaderSize)
	if _, err := l.f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("storage: read %s: %w", path, err)
	}
	if l.nextSeq, err = parseSafetyHeader(path, hdr); err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(l.f, safetyHeaderSize, size-safetyHeaderSize), 256<<10)
	off := int64(safetyHeaderSize)
	frames := 0
	for off < size {
		ops, n, err := readFrame(r, path, off, size, l.nextSeq)
		var torn *errTorn
		if errors.As(err, &torn) {
			if torn.headerBad {
				at, found, err := l.findFrame(off+1, size, l.nextSeq+1)
				if err != nil {
					return err
				}
				if found {
					return fmt.Errorf("%w: %s: frame %d at offset %d is damaged (%s) and frames follow it (offset %d)",
						ErrCorrupt, path, l.nextSeq, off, torn.reason, at)
				}
			}
			if err := l.f.Truncate(off); err != nil {
				return fmt.Errorf("storage: cut the torn tail of %s: %w", path, err)
			}
			if err := l.f.Sync(); err != nil {
				return fmt.Errorf("storage: cut the torn tail of %s: %w", path, err)
			}
			l.log.Warn("safety log: cut off a torn last frame (a crash during a save); the previous frame stands",
				"file", path, "offset", off, "bytes", size-off, "sequence", l.nextSeq, "reason", torn.reason)
			size = off
			break
		}
		if err != nil {
			return err
		}
		for _, op := range ops {
			l.apply(op)
		}
		off += n
		l.nextSeq++
		frames++
	}
	l.end = size
	l.log.Debug("safety log replayed", "file", path, "frames", frames, "bytes", size, "kept", len(l.kept))
	return nil
}

// frameReader reads a frame body, feeding the CRC and tracking the file
// offset; it never reads past the body. bad records the first entry that
// does not fit the body (a malformed body), ioErr a failed read.
type frameReader struct {
	r     *bufio.Reader
	crc   uint32
	left  int64
	off   int64 // file offset of the next byte
	bad   error
	ioErr error
}

func (fr *frameReader) ok() bool { return fr.bad == nil && fr.ioErr == nil }

func (fr *frameReader) fits(n int64) bool {
	if n > fr.left {
		fr.bad = fmt.Errorf("%w: %d bytes overrun the frame body (%d left)", errMalformed, n, fr.left)
		return false
	}
	return true
}

// read returns the next n bytes, or nil after a failure.
func (fr *frameReader) read(n int64) []byte {
	if !fr.ok() || !fr.fits(n) {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		fr.ioErr = err
		return nil
	}
	fr.crc = crc32.Update(fr.crc, castagnoli, b)
	fr.left -= n
	fr.off += n
	return b
}

// skip feeds the next n bytes through the CRC without keeping them.
func (fr *frameReader) skip(n int64) {
	if fr.ioErr != nil || !fr.fits(n) {
		return
	}
	for n > 0 {
		b, err := fr.r.Peek(int(min(n, int64(fr.r.Size()))))
		if err != nil {
			fr.ioErr = err
			return
		}
		fr.crc = crc32.Update(fr.crc, castagnoli, b)
		fr.r.Discard(len(b))
		n -= int64(len(b))
		fr.left -= int64(len(b))
		fr.off += int64(len(b))
	}
}

// readFrame reads the frame at off, whose sequence number must be seq. It
// returns its entries and length, an *errTorn for a last frame that is
// incomplete or damaged, or ErrCorrupt.
func readFrame(r *bufio.Reader, path string, off, size int64, seq uint64) ([]safetyOp, int64, error) {
	if size-off < frameHeaderSize {
		return nil, 0, &errTorn{reason: fmt.Sprintf("%d bytes, shorter than a frame header", size-off)}
	}
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, fmt.Errorf("storage: read %s at %d: %w", path, off, err)
	}
	if crc32.Checksum(hdr[:12], castagnoli) != binary.BigEndian.Uint32(hdr[12:]) {
		return nil, 0, &errTorn{reason: "frame header checksum mismatch", headerBad: true}
	}
	bodyLen := int64(binary.BigEndian.Uint32(hdr[0:]))
	if got := binary.BigEndian.Uint64(hdr[4:]); got != seq {
		return nil, 0, fmt.Errorf("%w: %s: frame at offset %d has sequence number %d, want %d", ErrCorrupt, path, off, got, seq)
	}
	if bodyLen > maxFrameBody {
		return nil, 0, fmt.Errorf("%w: %s: frame %d at offset %d claims %d bytes", ErrCorrupt, path, seq, off, bodyLen)
	}
	end := off + frameHeaderSize + bodyLen + frameTrailerSize
	if end > size {
		return nil, 0, &errTorn{reason: fmt.Sprintf("frame of %d bytes runs past the end of the file", bodyLen+frameOverhead)}
	}
	fr := &frameReader{r: r, crc: crc32.Checksum(hdr[:], castagnoli), left: bodyLen, off: off + frameHeaderSize}
	ops := parseEntries(fr)
	// Feed what is left of a body that did not parse through the CRC: it
	// is either torn (bad checksum) or really corrupt.
	malformed := fr.bad
	fr.bad = nil
	fr.skip(fr.left)
	if fr.ioErr != nil {
		return nil, 0, fmt.Errorf("storage: read %s at %d: %w", path, fr.off, fr.ioErr)
	}
	var tr [frameTrailerSize]byte
	if _, err := io.ReadFull(r, tr[:]); err != nil {
		return nil, 0, fmt.Errorf("storage: read %s at %d: %w", path, fr.off, err)
	}
	if fr.crc != binary.BigEndian.Uint32(tr[:]) {
		if end == size {
			return nil, 0, &errTorn{reason: "last frame checksum mismatch"}
		}
		return nil, 0, fmt.Errorf("%w: %s: frame %d at offset %d fails its checksum and %d bytes follow it",
			ErrCorrupt, path, seq, off, size-end)
	}
	if malformed != nil {
		return nil, 0, fmt.Errorf("%w: %s: frame %d at offset %d: %v", ErrCorrupt, path, seq, off, malformed)
	}
	return ops, end - off, nil
}

var errMalformed = errors.New("malformed entry")

// parseEntries decodes a frame body's entries; it stops at the first
// failure, which fr records.
func parseEntries(fr *frameReader) []safetyOp {
	var ops []safetyOp
	ref := func() keptRef {
		var r keptRef
		if b := fr.read(8 + 32); b != nil {
			r.height = binary.BigEndian.Uint64(b)
			copy(r.id[:], b[8:])
		}
		return r
	}
	length := func(least, most int64, what string) int64 {
		b := fr.read(4)
		if b == nil {
			return 0
		}
		n := int64(binary.BigEndian.Uint32(b))
		if n < least || n > most {
			fr.bad = fmt.Errorf("%w: %s of %d bytes", errMalformed, what, n)
		}
		return n
	}
	for fr.left > 0 && fr.ok() {
		tag := fr.read(1)
		if tag == nil {
			break
		}
		switch tag[0] {
		case entryRecord:
			n := length(0, MaxCertBytes, "safety record")
			if rec := fr.read(n); rec != nil {
				ops = append(ops, safetyOp{tag: entryRecord, record: rec})
			}
		case entryKeep:
			r := ref()
			n := length(1, MaxKeptBytes, "kept block")
			loc := keptLoc{off: fr.off, n: n}
			if fr.skip(n); fr.ok() {
				ops = append(ops, safetyOp{tag: entryKeep, ref: r, loc: loc})
			}
		case entryRelease:
			if r := ref(); fr.ok() {
				ops = append(ops, safetyOp{tag: entryRelease, ref: r})
			}
		case entryDropTo:
			if b := fr.read(8); b != nil {
				ops = append(ops, safetyOp{tag: entryDropTo, height: binary.BigEndian.Uint64(b)})
			}
		default:
			fr.bad = fmt.Errorf("%w: unknown entry tag %d", errMalformed, tag[0])
		}
	}
	return ops
}

// findFrame looks for an intact frame with a sequence number of at least
// seq anywhere in [from, size). It is called only when a frame header
// fails its checksum, to tell a torn tail (nothing intact follows) from
// damage in the middle of the log.
func (l *safetyLog) findFrame(from, size int64, seq uint64) (int64, bool, error) {
	const chunk = 1 << 20
	maxSeq := seq + uint64((size-from)/frameOverhead)
	buf := make([]byte, chunk+frameHeaderSize)
	for base := from; base+frameHeaderSize+frameTrailerSize <= size; base += chunk {
		n, err := l.f.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, false, fmt.Errorf("storage: read %s: %w", l.f.Name(), err)
		}
		for i := 0; i+frameHeaderSize <= n && i < chunk; i++ {
			h := buf[i : i+frameHeaderSize]
			s := binary.BigEndian.Uint64(h[4:])
			if s < seq || s > maxSeq {
				continue
			}
			if crc32.Checksum(h[:12], castagnoli) != binary.BigEndian.Uint32(h[12:]) {
				continue
			}
			at := base + int64(i)
			bodyLen := int64(binary.BigEndian.Uint32(h))
			if bodyLen > maxFrameBody || at+frameHeaderSize+bodyLen+frameTrailerSize > size {
				continue
			}
			ok, err := l.frameIntact(at, bodyLen)
			if err != nil {
				return 0, false, err
			}
			if ok {
				return at, true, nil
			}
		}
	}
	return 0, false, nil
}

// frameIntact reports whether the frame at off with the given body length
// passes its checksum.
func (l *safetyLog) frameIntact(off, bodyLen int64) (bool, error) {
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(l.f, off, frameHeaderSize+bodyLen)); err != nil {
		return false, fmt.Errorf("storage: read %s: %w", l.f.Name(), err)
	}
	var tr [frameTrailerSize]byte
	if _, err := l.f.ReadAt(tr[:], off+frameHeaderSize+bodyLen); err != nil {
		return false, fmt.Errorf("storage: read %s: %w", l.f.Name(), err)
	}
	return h.Sum32() == binary.BigEndian.Uint32(tr[:]), nil
}

func (l *safetyLog) apply(op safetyOp) {
	switch op.tag {
	case entryRecord:
		l.record, l.hasRecord = op.record, true
	case entryKeep:
		l.kept[op.ref] = op.loc
	case entryRelease:
		delete(l.kept, op.ref)
	case entryDropTo:
		for r := range l.kept {
			if r.height <= op.height {
				delete(l.kept, r)
			}
		}
	}
}

// frameBuilder assembles one frame in a buffer and the ops it carries.
type frameBuilder struct {
	b    []byte
	base int64 // file offset the frame will be written at
	ops  []safetyOp
}

func newFrameBuilder(buf []byte, base int64) *frameBuilder {
	return &frameBuilder{b: append(buf[:0], make([]byte, frameHeaderSize)...), base: base}
}

func (fb *frameBuilder) bodyLen() int64 { return int64(len(fb.b)) - frameHeaderSize }

func (fb *frameBuilder) record(data []byte) {
	fb.b = append(fb.b, entryRecord)
	fb.b = binary.BigEndian.AppendUint32(fb.b, uint32(len(data)))
	fb.b = append(fb.b, data...)
	fb.ops = append(fb.ops, safetyOp{tag: entryRecord, record: bytes.Clone(data)})
}

func (fb *frameBuilder) keep(r keptRef, data []byte) {
	fb.b = append(fb.b, entryKeep)
	fb.b = binary.BigEndian.AppendUint64(fb.b, r.height)
	fb.b = append(fb.b, r.id[:]...)
	fb.b = binary.BigEndian.AppendUint32(fb.b, uint32(len(data)))
	loc := keptLoc{off: fb.base + int64(len(fb.b)), n: int64(len(data))}
	fb.b = append(fb.b, data...)
	fb.ops = append(fb.ops, safetyOp{tag: entryKeep, ref: r, loc: loc})
}

func (fb *frameBuilder) release(r keptRef) {
	fb.b = append(fb.b, entryRelease)
	fb.b = binary.BigEndian.AppendUint64(fb.b, r.height)
	fb.b = append(fb.b, r.id[:]...)
	fb.ops = append(fb.ops, safetyOp{tag: entryRelease, ref: r})
}

func (fb *frameBuilder) dropTo(height uint64) {
	fb.b = append(fb.b, entryDropTo)
	fb.b = binary.BigEndian.AppendUint64(fb.b, height)
	fb.ops = append(fb.ops, safetyOp{tag: entryDropTo, height: height})
}

// finish fills in the header and appends the checksum.
func (fb *frameBuilder) finish(seq uint64) []byte {
	binary.BigEndian.PutUint32(fb.b[0:], uint32(fb.bodyLen()))
	binary.BigEndian.PutUint64(fb.b[4:], seq)
	binary.BigEndian.PutUint32(fb.b[12:], crc32.Checksum(fb.b[:12], castagnoli))
	fb.b = binary.BigEndian.AppendUint32(fb.b, crc32.Checksum(fb.b, castagnoli))
	return fb.b
}

// save appends one frame: kept blocks at or below the committed tip are
// dropped, the record replaced and the given blocks kept, in that order
// (as the bbolt transaction did before). It returns after the fdatasync.
func (l *safetyLog) save(record []byte, keep []KeptBlock, tip uint64, hasTip bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return l.failed
	}
	size := int64(entryDropToSize + entryRecordHead + len(record))
	for _, k := range keep {
		size += entryKeepHead + int64(len(k.Data))
	}
	if size > maxFrameBody {
		return fmt.Errorf("%w: a safety save of %d bytes (at most %d)", ErrInvalid, size, int64(maxFrameBody))
	}
	fb := newFrameBuilder(l.buf, l.end)
	if hasTip {
		for r := range l.kept {
			if r.height <= tip {
				fb.dropTo(tip)
				break
			}
		}
	}
	fb.record(record)
	for _, k := range keep {
		r := keptRef{height: k.Height, id: k.ID}
		if !(hasTip && r.height <= tip) {
			same, err := l.holds(r, k.Data)
			if err != nil {
				return err
			}
			if same && !slices.ContainsFunc(fb.ops, func(op safetyOp) bool { return op.tag == entryKeep && op.ref == r }) {
				// Already stored by an earlier save that returned after its
				// fdatasync: a leader saves its block when it signs the
				// proposal and again when it votes for it.
				continue
			}
		}
		fb.keep(r, k.Data)
	}
	if err := l.append(fb); err != nil {
		return err
	}
	l.maybeCompact(tip, hasTip)
	return nil
}

// holds reports whether the kept block r is stored with exactly data,
// reading it back a piece at a time. Called with mu.
func (l *safetyLog) holds(r keptRef, data []byte) (bool, error) {
	loc, ok := l.kept[r]
	if !ok || loc.n != int64(len(data)) {
		return false, nil
	}
	if l.scratch == nil {
		l.scratch = make([]byte, 64<<10)
	}
	for off := int64(0); off < loc.n; {
		piece := l.scratch[:min(int64(len(l.scratch)), loc.n-off)]
		if _, err := l.f.ReadAt(piece, loc.off+off); err != nil {
			return false, fmt.Errorf("storage: read kept block %d %s: %w", r.height, short(r.id), err)
		}
		if !bytes.Equal(piece, data[off:off+int64(len(piece))]) {
			return false, nil
		}
		off += int64(len(piece))
	}
	return true, nil
}

// release appends a frame forgetting the kept blocks with the given ids,
// if any is kept, and returns after its fdatasync.
func (l *safetyLog) release(want map[ledger.BlockID]bool, tip uint64, hasTip bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return l.failed
	}
	var refs []keptRef
	for r := range l.kept {
		if want[r.id] {
			refs = append(refs, r)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	slices.SortFunc(refs, keptRef.compare)
	fb := newFrameBuilder(l.buf, l.end)
	for _, r := range refs {
		fb.release(r)
	}
	if err := l.append(fb); err != nil {
		return err
	}
	l.maybeCompact(tip, hasTip)
	return nil
}

// append writes the frame with one write at the end of the file, makes it
// durable with one fdatasync, and applies its entries. Called with mu.
func (l *safetyLog) append(fb *frameBuilder) error {
	frame := fb.finish(l.nextSeq)
	if cap(frame) <= 4<<20 {
		l.buf = frame[:0]
	}
	l.writes.Add(1)
	if _, err := l.f.WriteAt(frame, l.end); err != nil {
		// Whatever part of the frame reached the file is cut off again,
		// so the next frame starts where it should.
		if terr := l.f.Truncate(l.end); terr != nil {
			l.failed = fmt.Errorf("storage: safety log unusable until reopened: a failed append could not be undone: %w", terr)
		} else if serr := l.f.Sync(); serr != nil {
			l.failed = fmt.Errorf("storage: safety log unusable until reopened: %w", serr)
		}
		return fmt.Errorf("storage: save safety data: %w", err)
	}
	l.syncs.Add(1)
	if err := fdatasync(l.f); err != nil {
		// After a failed fdatasync the kernel may have dropped the dirty
		// pages and a retry could report success: nothing written after
		// this can be trusted until the file is read back from disk.
		l.failed = fmt.Errorf("storage: safety log unusable until reopened: fdatasync failed: %w", err)
		return fmt.Errorf("storage: save safety data: %w", err)
	}
	l.written.Add(int64(len(frame)))
	for _, op := range fb.ops {
		l.apply(op)
	}
	l.end += int64(len(frame))
	l.nextSeq++
	return nil
}

// liveBytes is the size of a compacted log: the record and the kept
// blocks above the tip.
func (l *safetyLog) liveBytes(tip uint64, hasTip bool) int64 {
	n := int64(safetyHeaderSize + frameOverhead + entryRecordHead + len(l.record))
	for r, loc := range l.kept {
		if !hasTip || r.height > tip {
			n += frameOverhead + entryKeepHead + loc.n
		}
	}
	return n
}

// maybeCompact rewrites the log with only its live contents once it has
// grown past its bound. The save that triggered it is already durable, so
// a failure is logged and retried later. Called with mu.
func (l *safetyLog) maybeCompact(tip uint64, hasTip bool) {
	if l.end <= max(l.compactBytes, 4*l.liveBytes(tip, hasTip)) || l.end < l.noCompactBefore {
		return
	}
	if err := l.compact(tip, hasTip); err != nil {
		l.noCompactBefore = l.end + l.compactBytes/8
		l.log.Error("safety log: compaction failed; the log keeps growing until it succeeds", "bytes", l.end, "err", err)

	}
}

// compact writes the live state (the record and the kept blocks above the
// tip) to a temporary file, syncs it, renames it over the log and syncs
// the directory; only then does the next frame go to the new file. A
// crash at any step leaves either the old log or the new one under the
// name, both holding the same state. Called with mu.
func (l *safetyLog) compact(tip uint64, hasTip bool) error {
	refs := make([]keptRef, 0, len(l.kept))
	for r := range l.kept {
		if !hasTip || r.height > tip {
			refs = append(refs, r)
		}
	}
	slices.SortFunc(refs, keptRef.compare)
	blocks := func(yield func(keptRef, []byte) error) error {
		for _, r := range refs {
			loc := l.kept[r]
			data := make([]byte, loc.n)
			if _, err := l.f.ReadAt(data, loc.off); err != nil {
				return fmt.Errorf("storage: read kept block %d %s: %w", r.height, short(r.id), err)
			}
			if err := yield(r, data); err != nil {
				return err
			}
		}
		return nil
	}
	before := l.end
	snap, err := writeSafetySnapshot(l.dir, l.nextSeq, l.record, l.hasRecord, blocks, l.crashAt)
	switch {
	case errors.Is(err, errSimulatedCrash):
		l.failed = err
		return err
	case err != nil && snap != nil:
		// Renamed, but the directory sync failed: after a crash the name
		// may point at either file, so nothing more may be appended to
		// either until the store is reopened.
		l.f.Close()
		l.f = snap.f
		l.failed = fmt.Errorf("storage: safety log unusable until reopened: %w", err)
		return err
	case err != nil:
		return err
	}
	l.f.Close()
	l.f, l.end, l.nextSeq, l.kept = snap.f, snap.end, snap.nextSeq, snap.kept
	l.compactions.Add(1)
	l.log.Info("safety log compacted", "from", before, "to", snap.end, "kept", len(snap.kept))
	return nil
}

// safetySnapshot is a freshly written log.
type safetySnapshot struct {
	f       *os.File // open for appending
	end     int64
	nextSeq uint64
	kept    map[keptRef]keptLoc
}

// writeSafetySnapshot writes a complete log holding the blocks blocks
// yields (one frame each) and the record (if hasRecord, in the last
// frame) to safety.log.tmp; syncs it; renames it to safety.log; and syncs
// the directory. If only the directory sync failed, the snapshot is
// returned with the error.
func writeSafetySnapshot(dir string, firstSeq uint64, record []byte, hasRecord bool,
	blocks func(yield func(keptRef, []byte) error) error, crashAt string,
) (snap *safetySnapshot, err error) {
	tmp := filepath.Join(dir, safetyLogTmpName)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("storage: remove %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", tmp, err)
	}
	renamed := false
	defer func() {
		switch {
		case errors.Is(err, errSimulatedCrash):
			f.Close() // the files stay as a crash would leave them
		case err != nil && !renamed:
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := w.Write(encodeSafetyHeader(firstSeq)); err != nil {
		return nil, fmt.Errorf("storage: write %s: %w", tmp, err)
	}
	snap = &safetySnapshot{f: f, end: safetyHeaderSize, nextSeq: firstSeq, kept: map[keptRef]keptLoc{}}
	var buf []byte
	put := func(fb *frameBuilder) error {
		frame := fb.finish(snap.nextSeq)
		if _, err := w.Write(frame); err != nil {
			return fmt.Errorf("storage: write %s: %w", tmp, err)
		}
		for _, op := range fb.ops {
			if op.tag == entryKeep {
				snap.kept[op.ref] = op.loc
			}
		}
		snap.end += int64(len(frame))
		snap.nextSeq++
		buf = frame[:0]
		return nil
	}
	if blocks != nil {
		err := blocks(func(r keptRef, data []byte) error {
			if len(data) == 0 || len(data) > MaxKeptBytes {
				return fmt.Errorf("%w: kept block %d %s of %d bytes", ErrCorrupt, r.height, short(r.id), len(data))
			}
			fb := newFrameBuilder(buf, snap.end)
			fb.keep(r, data)
			return put(fb)
		})
		if err != nil {
			return nil, err
		}
	}
	if hasRecord {
		fb := newFrameBuilder(buf, snap.end)
		fb.record(record)
		if err := put(fb); err != nil {
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("storage: write %s: %w", tmp, err)
	}
	if crashAt == crashCompactTmpWritten {
		return nil, errSimulatedCrash
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("storage: sync %s: %w", tmp, err)
	}
	if crashAt == crashCompactTmpSynced {
		return nil, errSimulatedCrash
	}
	if err := os.Rename(tmp, safetyLogPath(dir)); err != nil {
		return nil, fmt.Errorf("storage: rename %s: %w", tmp, err)
	}
	renamed = true
	if crashAt == crashCompactRenamed {
		return nil, errSimulatedCrash
	}
	if err := syncDir(dir); err != nil {
		return snap, err
	}
	return snap, nil
}

// load returns the safety record, or nil if none was saved.
func (l *safetyLog) load() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.hasRecord {
		return nil
	}
	return bytes.Clone(l.record)
}

// keptBlocks returns the kept blocks above the tip, in height order, read
// from the file.
func (l *safetyLog) keptBlocks(tip uint64, hasTip bool) ([]KeptBlock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	refs := make([]keptRef, 0, len(l.kept))
	for r := range l.kept {
		if !hasTip || r.height > tip {
			refs = append(refs, r)
		}
	}
	slices.SortFunc(refs, keptRef.compare)
	out := make([]KeptBlock, 0, len(refs))
	for _, r := range refs {
		loc := l.kept[r]
		data := make([]byte, loc.n)
		if _, err := l.f.ReadAt(data, loc.off); err != nil {
			return nil, fmt.Errorf("storage: read kept block %d %s: %w", r.height, short(r.id), err)
		}
		out = append(out, KeptBlock{Height: r.height, ID: r.id, Data: data})
	}
	return out, nil
}

func (l *safetyLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if l.failed == nil {
		l.failed = ErrClosed
	}
	return err
}
