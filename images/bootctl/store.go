package bootctl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/ledger"
)

// Layout of the boot control partition (offsets from its start):
//
//	0       state copy 0 (4 KiB)
//	4 KiB   state copy 1 (4 KiB)
//	128 KiB signed manifest of slot A (128 KiB: 4-byte big-endian length, manifest)
//	256 KiB signed manifest of slot B (128 KiB)
//
// A state copy is: the magic "HMBOOTC1", a 4-byte big-endian length n, n
// bytes of canonical CBOR of [State], and SM3 over everything before it;
// zero padding fills the rest. Copy Seq%2 holds the state with that Seq, so
// a write never overwrites the newest valid copy.
const (
	copySize     = 4 << 10
	manifestArea = 128 << 10
	manifestA    = 128 << 10
	manifestB    = 256 << 10
	// PartitionSize is the least size the boot control partition needs.
	PartitionSize = manifestB + manifestArea
)

var magic = [8]byte{'H', 'M', 'B', 'O', 'O', 'T', 'C', '1'}

// ErrNoState is returned when neither copy holds a valid state.
var ErrNoState = errors.New("bootctl: no valid boot control state")

// Device is the storage the boot control partition lives on.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Store reads and writes the boot control state on a device, at the
// offset where the boot control partition starts.
type Store struct {
	dev  Device
	base int64
}

// NewStore returns a store for the boot control partition at offset base
// of dev.
func NewStore(dev Device, base int64) *Store { return &Store{dev: dev, base: base} }

// EncodeCopy returns the on-disk form of one state copy (copySize bytes).
func EncodeCopy(st State) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	body, err := ledger.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("bootctl: encode state: %w", err)
	}
	n := len(magic) + 4 + len(body) + gm.DigestSize
	if n > copySize {
		return nil, fmt.Errorf("bootctl: encoded state is %d bytes, limit %d", n, copySize)
	}
	out := make([]byte, copySize)
	copy(out, magic[:])
	binary.BigEndian.PutUint32(out[8:12], uint32(len(body)))
	copy(out[12:], body)
	sum := gm.SM3(out[:12+len(body)])
	copy(out[12+len(body):], sum[:])
	return out, nil
}

// decodeCopy parses one state copy; it never panics on garbage.
func decodeCopy(b []byte) (State, error) {
	if len(b) < 12+gm.DigestSize || !bytes.Equal(b[:8], magic[:]) {
		return State{}, fmt.Errorf("%w: no magic", ErrNoState)
	}
	n := int(binary.BigEndian.Uint32(b[8:12]))
	if n > len(b)-12-gm.DigestSize {
		return State{}, fmt.Errorf("%w: length %d", ErrNoState, n)
	}
	end := 12 + n
	if gm.SM3(b[:end]) != gm.Digest(b[end:end+gm.DigestSize]) {
		return State{}, fmt.Errorf("%w: checksum mismatch", ErrNoState)
	}
	var st State
	if err := ledger.Unmarshal(b[12:end], &st); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrNoState, err)
	}
	if err := st.Validate(); err != nil {
		return State{}, err
	}
	return st, nil
}

// DecodeState returns the newest valid state of the two copies at the
// start of a boot control partition's content.
func DecodeState(part []byte) (State, error) {
	if len(part) < 2*copySize {
		return State{}, fmt.Errorf("%w: partition too small", ErrNoState)
	}
	var best State
	var found bool
	var errs []error
	for i := range 2 {
		st, err := decodeCopy(part[i*copySize : (i+1)*copySize])
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d: %w", i, err))
			continue
		}
		if st.Seq%2 != uint64(i) {
			errs = append(errs, fmt.Errorf("copy %d: holds seq %d", i, st.Seq))
			continue
		}
		if !found || st.Seq > best.Seq {
			best, found = st, true
		}
	}
	if !found {
		return State{}, fmt.Errorf("%w: %w", ErrNoState, errors.Join(errs...))
	}
	return best, nil
}

// Load returns the newest valid state.
func (s *Store) Load() (State, error) {
	buf := make([]byte, 2*copySize)
	if _, err := s.dev.ReadAt(buf, s.base); err != nil {
		return State{}, fmt.Errorf("bootctl: read state: %w", err)
	}
	return DecodeState(buf)
}

// Save writes next as the state after prev: it gets prev.Seq+1 and goes to
// the copy the current state does not occupy, then the device is synced.
// It returns the state as written.
func (s *Store) Save(prev, next State) (State, error) {
	next.Seq = prev.Seq + 1
	b, err := EncodeCopy(next)
	if err != nil {
		return prev, err
	}
	off := s.base + int64(next.Seq%2)*copySize
	if _, err := s.dev.WriteAt(b, off); err != nil {
		return prev, fmt.Errorf("bootctl: write state: %w", err)
	}
	if err := s.dev.Sync(); err != nil {
		return prev, fmt.Errorf("bootctl: sync state: %w", err)
	}
	return next, nil
}

func manifestOffset(slot Slot) (int64, error) {
	switch slot {
	case SlotA:
		return manifestA, nil
	case SlotB:
		return manifestB, nil
	}
	return 0, fmt.Errorf("bootctl: no manifest area for slot %s", slot)
}

// WriteManifest stores the signed manifest of the release in slot.
func (s *Store) WriteManifest(slot Slot, manifest []byte) error {
	off, err := manifestOffset(slot)
	if err != nil {
		return err
	}
	if len(manifest) > manifestArea-4 {
		return fmt.Errorf("bootctl: manifest of %d bytes does not fit", len(manifest))
	}
	buf := make([]byte, manifestArea)
	binary.BigEndian.PutUint32(buf, uint32(len(manifest)))
	copy(buf[4:], manifest)
	if _, err := s.dev.WriteAt(buf, s.base+off); err != nil {
		return fmt.Errorf("bootctl: write manifest of slot %s: %w", slot, err)
	}
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("bootctl: sync manifest of slot %s: %w", slot, err)
	}
	return nil
}

// ReadManifest returns the signed manifest stored for slot, or nil if none
// is stored.
func (s *Store) ReadManifest(slot Slot) ([]byte, error) {
	off, err := manifestOffset(slot)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, manifestArea)
	if _, err := s.dev.ReadAt(buf, s.base+off); err != nil {
		return nil, fmt.Errorf("bootctl: read manifest of slot %s: %w", slot, err)
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n == 0 {
		return nil, nil
	}
	if n > manifestArea-4 || n > images.MaxManifestBytes {
		return nil, fmt.Errorf("bootctl: manifest of slot %s: bad length %d", slot, n)
	}
	return buf[4 : 4+n], nil
}

// ClearManifest removes the stored manifest of slot.
func (s *Store) ClearManifest(slot Slot) error {
	off, err := manifestOffset(slot)
	if err != nil {
		return err
	}
	if _, err := s.dev.WriteAt(make([]byte, 4), s.base+off); err != nil {
		return fmt.Errorf("bootctl: clear manifest of slot %s: %w", slot, err)
	}
	return s.dev.Sync()
}
