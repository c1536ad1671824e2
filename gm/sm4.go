package gm

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/emmansun/gmsm/sm4"
)

// SM4 sizes in bytes.
const (
	SM4KeySize   = 16
	GCMNonceSize = 12
	GCMTagSize   = 16
)

// ErrOpen is returned when an SM4-GCM ciphertext fails authentication.
var ErrOpen = errors.New("gm: SM4-GCM authentication failed")

// NewSM4GCM returns SM4 in standard GCM mode (96-bit nonce, 128-bit tag).
func NewSM4GCM(key []byte) (cipher.AEAD, error) {
	block, err := newSM4Block(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gm: SM4-GCM: %w", err)
	}
	return aead, nil
}

// newSM4Block returns the raw SM4 block cipher (GB/T 32907). It stays
// unexported: Hallmark encrypts only with SM4-GCM; tests use the block to
// check the standard's single-block examples.
func newSM4Block(key []byte) (cipher.Block, error) {
	if len(key) != SM4KeySize {
		return nil, fmt.Errorf("gm: SM4 key must be %d bytes, got %d", SM4KeySize, len(key))
	}
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gm: SM4 cipher: %w", err)
	}
	return block, nil
}

// SealSM4GCM encrypts and authenticates plaintext (and authenticates aad)
// under key with a fresh random nonce. The result is nonce ‖ ciphertext ‖ tag.
func SealSM4GCM(random io.Reader, key, plaintext, aad []byte) ([]byte, error) {
	aead, err := NewSM4GCM(key)
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	out := make([]byte, GCMNonceSize, GCMNonceSize+len(plaintext)+GCMTagSize)
	if _, err := io.ReadFull(random, out); err != nil {
		return nil, fmt.Errorf("gm: SM4-GCM nonce: %w", err)
	}
	return aead.Seal(out, out[:GCMNonceSize], plaintext, aad), nil
}

// OpenSM4GCM reverses [SealSM4GCM].
func OpenSM4GCM(key, sealed, aad []byte) ([]byte, error) {
	aead, err := NewSM4GCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < GCMNonceSize+GCMTagSize {
		return nil, fmt.Errorf("gm: SM4-GCM ciphertext of %d bytes is too short", len(sealed))
	}
	pt, err := aead.Open(nil, sealed[:GCMNonceSize], sealed[GCMNonceSize:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// NewSM4Key returns a fresh random SM4 key.
func NewSM4Key(random io.Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	key := make([]byte, SM4KeySize)
	if _, err := io.ReadFull(random, key); err != nil {
		return nil, fmt.Errorf("gm: SM4 key: %w", err)
	}
	return key, nil
}
