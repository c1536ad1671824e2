package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"hallmark/ledger"
)

// These tests work on the log alone, on real files, so that they can try
// every byte offset of a frame: opening a whole store per offset would
// take minutes.

type logState struct {
	record    string
	hasRecord bool
	kept      map[keptRef]string
}

func (l *safetyLog) testState(t *testing.T) logState {
	t.Helper()
	st := logState{record: string(l.record), hasRecord: l.hasRecord, kept: map[keptRef]string{}}
	for r, loc := range l.kept {
		data := make([]byte, loc.n)
		if _, err := l.f.ReadAt(data, loc.off); err != nil {
			t.Fatal(err)
		}
		st.kept[r] = string(data)
	}
	return st
}

func (st logState) equal(o logState) bool {
	return st.record == o.record && st.hasRecord == o.hasRecord && maps.Equal(st.kept, o.kept)
}

func openTestLog(t *testing.T, dir string) (*safetyLog, error) {
	t.Helper()
	return openSafetyLog(dir, slog.New(slog.DiscardHandler), 1<<40, "")
}

func ref(h uint64, tag byte) keptRef { return keptRef{height: h, id: ledger.BlockID{byte(h), tag}} }

func kb(h uint64, tag byte, size int) KeptBlock {
	unit := fmt.Appendf(nil, "kept %d/%d ", h, tag)
	r := ref(h, tag)
	return KeptBlock{Height: h, ID: r.id, Data: bytes.Repeat(unit, size/len(unit)+1)[:size]}
}

// frameLog is a log of five frames of each kind of entry, with the state
// after each frame and where each frame starts and ends.
type frameLog struct {
	dir    string
	data   []byte     // the file
	starts []int64    // frame i starts at starts[i] and ends at starts[i+1]
	states []logState // states[i]: after i frames
}

func buildFrameLog(t *testing.T) frameLog {
	t.Helper()
	dir := t.TempDir()
	if err := createSafetyLog(dir); err != nil {
		t.Fatal(err)
	}
	l, err := openTestLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	fl := frameLog{dir: dir, starts: []int64{l.end}, states: []logState{l.testState(t)}}
	step := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		fl.starts = append(fl.starts, l.end)
		fl.states = append(fl.states, l.testState(t))
	}
	step(l.save([]byte("round 1"), []KeptBlock{kb(1, 1, 900), kb(2, 1, 3000)}, 0, false))
	step(l.save([]byte("round 2"), []KeptBlock{kb(2, 2, 500)}, 0, false))
	step(l.release(map[ledger.BlockID]bool{ref(2, 2).id: true}, 0, false))
	step(l.save([]byte("round 3"), []KeptBlock{kb(3, 1, 700)}, 1, true)) // drops 1/1
	step(l.save([]byte("round 4"), []KeptBlock{kb(4, 1, 150)}, 1, true)) // small: every offset is tried
	if len(fl.states[5].kept) != 3 || fl.states[3].kept[ref(2, 2)] != "" || len(fl.states[4].kept) != 2 {
		t.Fatalf("unexpected states: %+v", fl.states)
	}
	if fl.data, err = os.ReadFile(safetyLogPath(dir)); err != nil {
		t.Fatal(err)
	}
	if int64(len(fl.data)) != fl.starts[5] {
		t.Fatalf("file of %d bytes, frames end at %d", len(fl.data), fl.starts[5])
	}
	return fl
}

// reopen writes data as the log of a fresh directory and opens it.
func reopenBytes(t *testing.T, dir string, data []byte) (*safetyLog, error) {
	t.Helper()
	if err := os.WriteFile(safetyLogPath(dir), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return openTestLog(t, dir)
}

// wantState opens data and checks that it holds the given state and
// that the file was cut to want bytes; then that appending works.
func wantState(t *testing.T, dir string, data []byte, want logState, size int64, what string) {
	t.Helper()
	l, err := reopenBytes(t, dir, data)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer l.close()
	if got := l.testState(t); !got.equal(want) {
		t.Fatalf("%s: state %+v, want %+v", what, got, want)
	}
	if st, _ := l.f.Stat(); st.Size() != size || l.end != size {
		t.Fatalf("%s: file is %d bytes (end %d), want %d", what, st.Size(), l.end, size)
	}
}

// A crash in the middle of an append leaves any prefix of the frame: at
// every length the log opens with the state before it, cut back to where
// the frame began, and takes new frames.
func TestSafetyLogTornTailEveryOffset(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	last := fl.starts[4]
	for cut := last; cut < fl.starts[5]; cut++ {
		wantState(t, dir, fl.data[:cut], fl.states[4], last, fmt.Sprintf("cut to %d", cut))
	}
	// The cut log goes on: a new frame, and it survives a reopen.
	l, err := reopenBytes(t, dir, fl.data[:last+7])
	if err != nil {
		t.Fatal(err)
	}
	if err := l.save([]byte("round 5"), []KeptBlock{kb(5, 1, 100)}, 1, true); err != nil {
		t.Fatal(err)
	}
	want := l.testState(t)
	l.close()
	l, err = openTestLog(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if got := l.testState(t); !got.equal(want) || got.record != "round 5" || got.kept[ref(3, 1)] == "" {
		t.Fatalf("after a new frame on a cut log: %+v, want %+v", got, want)
	}
	// A cut inside an earlier frame is a torn tail too (nothing follows).
	wantState(t, dir, fl.data[:fl.starts[2]+30], fl.states[2], fl.starts[2], "cut inside frame 3")
}

// Bytes past the last frame that are not a frame (a crash extended the
// file but its data never reached the disk) are cut off.
func TestSafetyLogTrailingGarbage(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	for _, tail := range [][]byte{{0}, make([]byte, 15), make([]byte, 16), make([]byte, 4096), bytes.Repeat([]byte{0xFF}, 100)} {
		data := append(bytes.Clone(fl.data), tail...)
		wantState(t, dir, data, fl.states[5], fl.starts[5], fmt.Sprintf("%d bytes of %#x after the last frame", len(tail), tail[0]))
	}
}

// A damaged byte anywhere in the last frame cannot be told from a torn
// write: the frame is cut off and the previous state stands.
func TestSafetyLogFlippedByteInLastFrame(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	for i := fl.starts[4]; i < fl.starts[5]; i++ {
		data := bytes.Clone(fl.data)
		data[i] ^= 0xFF
		wantState(t, dir, data, fl.states[4], fl.starts[4], fmt.Sprintf("byte %d flipped", i))
	}
}

// A damaged byte anywhere before the last frame is ErrCorrupt, never
// skipped: in the file header, in the header, body or checksum of an
// earlier frame.
func TestSafetyLogFlippedByteBeforeLastFrame(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	try := func(i int64) {
		data := bytes.Clone(fl.data)
		data[i] ^= 0xFF
		l, err := reopenBytes(t, dir, data)
		if err == nil {
			l.close()
			t.Fatalf("byte %d flipped: opened, want ErrCorrupt", i)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
		if got, _ := os.ReadFile(safetyLogPath(dir)); !bytes.Equal(got, data) {
			t.Fatalf("byte %d flipped: the file was changed", i)
		}
	}
	for i := range int64(safetyHeaderSize) {
		try(i)
	}
	// Every byte of frames 3 and 4 (a release and a save).
	for i := fl.starts[2]; i < fl.starts[4]; i++ {
		try(i)
	}
	// A sample of the large first frame: header, entry heads, data, checksum.
	for i := fl.starts[0]; i < fl.starts[1]; i += 97 {
		try(i)
	}
	for i := fl.starts[1] - frameTrailerSize; i < fl.starts[1]+frameHeaderSize; i++ {
		try(i)
	}
}

// rewriteFrame changes the frame at [start, end) of data with fn and
// recomputes both checksums, so that only the change itself is wrong.
func rewriteFrame(data []byte, start, end int64, fn func(frame []byte)) []byte {
	out := bytes.Clone(data)
	frame := out[start:end]
	fn(frame)
	binary.BigEndian.PutUint32(frame[12:], crc32.Checksum(frame[:12], castagnoli))
	binary.BigEndian.PutUint32(frame[len(frame)-4:], crc32.Checksum(frame[:len(frame)-4], castagnoli))
	return out
}

// Frames whose checksums hold but whose contents are wrong are refused:
// a sequence number out of order, an unknown entry, an entry that
// overruns the body.
func TestSafetyLogRefusesWellFormedNonsense(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		frame int
		fn    func(frame []byte)
	}{
		{"sequence skips", 2, func(f []byte) { binary.BigEndian.PutUint64(f[4:], 9) }},
		{"sequence skips in the last frame", 4, func(f []byte) { binary.BigEndian.PutUint64(f[4:], 9) }},
		{"unknown entry", 3, func(f []byte) { f[frameHeaderSize] = 9 }},
		{"record overruns", 3, func(f []byte) { binary.BigEndian.PutUint32(f[frameHeaderSize+entryDropToSize+1:], 1<<19) }},
		{"record too long", 1, func(f []byte) { binary.BigEndian.PutUint32(f[frameHeaderSize+1:], MaxCertBytes+1) }},
	} {
		data := rewriteFrame(fl.data, fl.starts[tc.frame], fl.starts[tc.frame+1], tc.fn)
		l, err := reopenBytes(t, dir, data)
		if err == nil {
			l.close()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// The untouched bytes open with every frame.
	wantState(t, dir, fl.data, fl.states[5], fl.starts[5], "untouched")
}

// A log written by a newer format is refused with ErrSchemaTooNew.
func TestSafetyLogNewerFormat(t *testing.T) {
	fl := buildFrameLog(t)
	data := bytes.Clone(fl.data)
	binary.BigEndian.PutUint32(data[8:], safetyLogFormat+1)
	binary.BigEndian.PutUint32(data[20:], crc32.Checksum(data[:20], castagnoli))
	_, err := reopenBytes(t, t.TempDir(), data)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("newer format: %v, want ErrSchemaTooNew", err)
	}
}

// Compaction writes the live state only, and the sequence numbers go on.
func TestSafetyLogCompactKeepsState(t *testing.T) {
	fl := buildFrameLog(t)
	dir := t.TempDir()
	l, err := reopenBytes(t, dir, fl.data)
	if err != nil {
		t.Fatal(err)
	}
	seq := l.nextSeq
	if err := l.compact(2, true); err != nil { // tip 2: drops 2/1
		t.Fatal(err)
	}
	want := fl.states[5]
	want.kept = maps.Clone(want.kept)
	delete(want.kept, ref(2, 1))
	if got := l.testState(t); !got.equal(want) {
		t.Fatalf("after compaction: %+v, want %+v", got, want)
	}
	if l.nextSeq != seq+3 { // two blocks and the record
		t.Fatalf("next sequence %d after compaction, want %d", l.nextSeq, seq+3)
	}
	if err := l.save([]byte("round 6"), nil, 2, true); err != nil {
		t.Fatal(err)
	}
	want.record = "round 6"
	l.close()
	if fileExistsInternal(filepath.Join(dir, safetyLogTmpName)) {
		t.Fatal("temporary file left after compaction")
	}
	if l, err = openTestLog(t, dir); err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if got := l.testState(t); !got.equal(want) {
		t.Fatalf("after reopen: %+v, want %+v", got, want)
	}
	if l.end >= int64(len(fl.data)) {
		t.Fatalf("compacted log of %d bytes, the original was %d", l.end, len(fl.data))
	}
}

func fileExistsInternal(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
