// Package audit is the key-lifecycle audit log: an append-only file of
// JSON lines in which every entry carries the hash of the one before it.
//
// Entry n's hash is SM3("hallmark/key-audit/v1\x00" ‖ canonical CBOR of
// the entry without its hash), and the entry's Prev field is entry n-1's
// hash (all zeros for the first). Editing, inserting, deleting or
// reordering entries breaks the chain, and so does cutting entries from
// the front. Cutting entries from the end leaves a shorter valid chain:
// it is detectable only against a head recorded elsewhere (the ledger, an
// officer's notes), which [VerifyFile] checks when given one.
//
// Appends take an exclusive flock on the file, write the line with one
// write call, and fsync before returning. A line torn by a crash (no
// trailing newline) was never acknowledged; the next Append discards it
// and records that it did.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

const domain = "hallmark/key-audit/v1\x00"

// MaxLineSize bounds one entry's JSON line.
const MaxLineSize = 16 << 10

// ErrBroken is wrapped by every verification failure.
var ErrBroken = errors.New("audit log chain is broken")

// Entry is one lifecycle event.
type Entry struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Op      string            `json:"op"`
	Actor   string            `json:"actor"`
	Ref     string            `json:"ref,omitempty"`
	Custody string            `json:"custody,omitempty"`
	KeyID   string            `json:"keyId,omitempty"`
	Outcome string            `json:"outcome"` // "ok" or the error
	Detail  map[string]string `json:"detail,omitempty"`
	Prev    gm.Digest         `json:"prev"`
	Hash    gm.Digest         `json:"hash"`
}

// Event is what a caller records; Append fills in the rest.
type Event struct {
	Op      string
	Actor   string
	Ref     string
	Custody string
	KeyID   string
	Err     error // nil: outcome "ok"
	Detail  map[string]string
}

// hashed is the canonical form an entry's hash covers.
type hashed struct {
	Seq     uint64            `cbor:"1,keyasint"`
	Time    int64             `cbor:"2,keyasint"` // Unix nanoseconds
	Op      string            `cbor:"3,keyasint"`
	Actor   string            `cbor:"4,keyasint"`
	Ref     string            `cbor:"5,keyasint"`
	Custody string            `cbor:"6,keyasint"`
	KeyID   string            `cbor:"7,keyasint"`
	Outcome string            `cbor:"8,keyasint"`
	Detail  map[string]string `cbor:"9,keyasint"`
	Prev    gm.Digest         `cbor:"10,keyasint"`
}

func (e *Entry) computeHash() (gm.Digest, error) {
	b, err := ledger.Marshal(&hashed{
		Seq: e.Seq, Time: e.Time.UnixNano(), Op: e.Op, Actor: e.Actor, Ref: e.Ref,
		Custody: e.Custody, KeyID: e.KeyID, Outcome: e.Outcome, Detail: e.Detail, Prev: e.Prev,
	})
	if err != nil {
		return gm.Digest{}, err
	}
	return gm.SM3Concat([]byte(domain), b), nil
}

// Head identifies the last entry of a log: record it somewhere the log's
// owner cannot rewrite to detect later truncation.
type Head struct {
	Seq  uint64    `json:"seq"`
	Hash gm.Digest `json:"hash"`
}

// Log appends to one audit file. It holds no open file between calls, so
// several processes may share the file.
type Log struct {
	path string
	now  func() time.Time
}

// Open returns a log writing to path, creating its directory (0700) if
// needed. The file itself is created on the first Append.
func Open(path string) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Log{path: path, now: time.Now}, nil
}

// Path returns the file's path.
func (l *Log) Path() string { return l.path }

// Append records ev and returns the entry as written.
func (l *Log) Append(ev Event) (*Entry, error) {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("audit: locking %s: %w", l.path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it anyway

	last, end, torn, err := lastEntry(f)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", l.path, err)
	}
	detail := ev.Detail
	if torn > 0 {
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("audit: discarding torn entry: %w", err)
		}
		detail = cloneDetail(detail)
		detail["discardedTornBytes"] = fmt.Sprint(torn)
	}
	e := &Entry{
		Seq: 1, Time: l.now().UTC(), Op: ev.Op, Actor: ev.Actor, Ref: ev.Ref,
		Custody: ev.Custody, KeyID: ev.KeyID, Outcome: "ok", Detail: detail,
	}
	if ev.Err != nil {
		e.Outcome = ev.Err.Error()
	}
	if last != nil {
		e.Seq, e.Prev = last.Seq+1, last.Hash
	}
	if e.Hash, err = e.computeHash(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if len(line) >= MaxLineSize {
		return nil, fmt.Errorf("audit: entry of %d bytes exceeds %d", len(line), MaxLineSize)
	}
	line = append(line, '\n')
	if _, err := f.WriteAt(line, end); err != nil {
		return nil, fmt.Errorf("audit: writing %s: %w", l.path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("audit: syncing %s: %w", l.path, err)
	}
	if e.Seq == 1 {
		syncDir(filepath.Dir(l.path))
	}
	return e, nil
}

func cloneDetail(d map[string]string) map[string]string {
	out := make(map[string]string, len(d)+1)
	for k, v := range d {
		out[k] = v
	}
	return out
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// lastEntry returns the last complete entry (nil for an empty log), the
// offset where the next entry goes, and the size of a torn tail.
func lastEntry(f *os.File) (*Entry, int64, int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, 0, err
	}
	if size == 0 {
		return nil, 0, 0, nil
	}
	chunk := int64(2 * MaxLineSize)
	start := max(size-chunk, 0)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return nil, 0, 0, err
	}
	end := size
	var torn int64
	if buf[len(buf)-1] != '\n' {
		i := bytes.LastIndexByte(buf, '\n')
		if i < 0 && start > 0 {
			return nil, 0, 0, fmt.Errorf("%w: last line longer than %d bytes", ErrBroken, chunk)
		}
		end = start + int64(i+1)
		torn = size - end
		buf = buf[:i+1]
	}
	if len(buf) == 0 {
		return nil, end, torn, nil
	}
	body := buf[:len(buf)-1]
	line := body[bytes.LastIndexByte(body, '\n')+1:]
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: last entry: %v", ErrBroken, err)
	}
	return &e, end, torn, nil
}

// Verify reads a whole log and checks every entry's hash and link. It
// returns the entries and the head. An empty log has a zero head.
func Verify(r io.Reader) ([]Entry, Head, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineSize)
	var entries []Entry
	var head Head
	for n := 1; sc.Scan(); n++ {
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return entries, head, fmt.Errorf("%w: line %d: %v", ErrBroken, n, err)
		}
		if e.Seq != head.Seq+1 {
			return entries, head, fmt.Errorf("%w: line %d: sequence %d follows %d", ErrBroken, n, e.Seq, head.Seq)
		}
		if e.Prev != head.Hash {
			return entries, head, fmt.Errorf("%w: line %d: does not link to the entry before it", ErrBroken, n)
		}
		want, err := e.computeHash()
		if err != nil {
			return entries, head, fmt.Errorf("%w: line %d: %v", ErrBroken, n, err)
		}
		if e.Hash != want {
			return entries, head, fmt.Errorf("%w: line %d: content does not match its hash", ErrBroken, n)
		}
		entries = append(entries, e)
		head = Head{Seq: e.Seq, Hash: e.Hash}
	}
	if err := sc.Err(); err != nil {
		return entries, head, fmt.Errorf("%w: %v", ErrBroken, err)
	}
	return entries, head, nil
}

// VerifyFile verifies the log at path. If expect is not nil, the log must
// also contain that entry (same sequence number and hash): a log cut
// short after the head was recorded fails.
func VerifyFile(path string, expect *Head) ([]Entry, Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Head{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	entries, head, err := Verify(f)
	if err != nil {
		return entries, head, fmt.Errorf("audit: %s: %w", path, err)
	}
	if expect != nil {
		if expect.Seq == 0 || expect.Seq > uint64(len(entries)) {
			return entries, head, fmt.Errorf("audit: %s: %w: recorded head %d is beyond the last entry %d (entries were cut)", path, ErrBroken, expect.Seq, head.Seq)
		}
		if entries[expect.Seq-1].Hash != expect.Hash {
			return entries, head, fmt.Errorf("audit: %s: %w: entry %d differs from the recorded head", path, ErrBroken, expect.Seq)
		}
	}
	return entries, head, nil
}
