package gm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

// DigestSize is the size of an SM3 digest in bytes.
const DigestSize = 32

// Digest is an SM3 digest.
type Digest [DigestSize]byte

// SM3 returns the SM3 digest of data.
func SM3(data []byte) Digest {
	return Digest(sm3.Sum(data))
}

// SM3Concat returns the SM3 digest of the concatenation of parts, without
// building the concatenation in memory.
func SM3Concat(parts ...[]byte) Digest {
	h := sm3.New()
	for _, p := range parts {
		h.Write(p)
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

// NewSM3 returns a streaming SM3 hash.
func NewSM3() hash.Hash {
	return sm3.New()
}

// String returns the digest in lower-case hex.
func (d Digest) String() string {
	return hex.EncodeToString(d[:])
}

// IsZero reports whether d is all zero bytes.
func (d Digest) IsZero() bool {
	return d == Digest{}
}

// MarshalText renders the digest as hex (used by encoding/json).
func (d Digest) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(DigestSize))
	hex.Encode(out, d[:])
	return out, nil
}

// UnmarshalText parses a hex digest.
func (d *Digest) UnmarshalText(text []byte) error {
	parsed, err := ParseDigest(string(text))
	if err != nil {
		return err
	}
	*d = parsed
	return nil
}

// ErrDigestLength is returned for a digest that is not 32 bytes.
var ErrDigestLength = errors.New("gm: digest must be 32 bytes")

// ParseDigest parses a 64-character hex digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if hex.DecodedLen(len(s)) != DigestSize {
		return d, fmt.Errorf("%w: got %d hex characters", ErrDigestLength, len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("gm: digest: %w", err)
	}
	return d, nil
}

// DigestFromBytes copies a 32-byte slice into a Digest.
func DigestFromBytes(b []byte) (Digest, error) {
	var d Digest
	if len(b) != DigestSize {
		return d, fmt.Errorf("%w: got %d bytes", ErrDigestLength, len(b))
	}
	copy(d[:], b)
	return d, nil
}
