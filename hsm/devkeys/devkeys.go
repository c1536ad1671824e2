// Package devkeys is the development keystore's file format: an SM2
// private key encrypted with SM4-GCM under a key derived from a passphrase
// with Argon2id (memory-hard, golang.org/x/crypto/argon2).
//
// The file is the canonical CBOR of [File]. Every field except the
// ciphertext is authenticated as associated data, so changing the KDF
// parameters or the public key makes decryption fail rather than yield a
// weaker or different key. A wrong passphrase and a tampered file are
// indistinguishable by design; both return ErrWrongPassphrase.
package devkeys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"

	"hallmark/gm"
	"hallmark/ledger"
)

// Format is the file's self-description, so a dev key file is never
// mistaken for another kind of key file.
const Format = "hallmark/dev-key/v1"

// Errors.
var (
	ErrWrongPassphrase = errors.New("wrong passphrase (or the key file was altered)")
	ErrFormat          = errors.New("not a Hallmark development key file")
	ErrEmptyPassphrase = errors.New("empty passphrase")
)

// Params are Argon2id's cost parameters.
type Params struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8
}

// DefaultParams costs about 0.1 s and 64 MiB on the appliance class of
// machine (RFC 9106's second recommendation, reduced in memory for small
// machines).
func DefaultParams() Params { return Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2} }

// Bounds a file's parameters must respect, so that a hostile file cannot
// make the reader allocate gigabytes or spin for hours.
const (
	maxTime      = 64
	maxMemoryKiB = 1 << 20 // 1 GiB
	saltSize     = 16
	maxFileSize  = 4096
)

func (p Params) check() error {
	if p.Time < 1 || p.Time > maxTime {
		return fmt.Errorf("argon2id time %d outside 1-%d", p.Time, maxTime)
	}
	if p.Threads < 1 {
		return fmt.Errorf("argon2id needs at least one thread")
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB {
		return fmt.Errorf("argon2id memory %d KiB outside %d-%d", p.MemoryKiB, 8*uint32(p.Threads), maxMemoryKiB)
	}
	return nil
}

// File is the on-disk structure.
type File struct {
	Format    string                `cbor:"1,keyasint"`
	KDF       string                `cbor:"2,keyasint"`
	Salt      []byte                `cbor:"3,keyasint"`
	Time      uint32                `cbor:"4,keyasint"`
	MemoryKiB uint32                `cbor:"5,keyasint"`
	Threads   uint8                 `cbor:"6,keyasint"`
	PublicKey ledger.PublicKeyBytes `cbor:"7,keyasint"`
	// Sealed is SM4-GCM nonce ‖ ciphertext ‖ tag of the 32-byte scalar.
	Sealed []byte `cbor:"8,keyasint"`
}

const kdfArgon2id = "argon2id"

// header is what the AEAD authenticates: the file without its ciphertext.
func (f *File) header() ([]byte, error) {
	h := *f
	h.Sealed = nil
	return ledger.Marshal(&h)
}

func (f *File) params() Params {
	return Params{Time: f.Time, MemoryKiB: f.MemoryKiB, Threads: f.Threads}
}

func deriveKey(passphrase, salt []byte, p Params) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, gm.SM4KeySize)
}

// Encrypt returns the file holding key under passphrase. random is
// crypto/rand when nil.
func Encrypt(random io.Reader, key *gm.PrivateKey, passphrase []byte, p Params) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	f := &File{
		Format: Format, KDF: kdfArgon2id,
		Salt: make([]byte, saltSize),
		Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads,
		PublicKey: ledger.KeyBytes(key.PublicKey()),
	}
	if _, err := io.ReadFull(random, f.Salt); err != nil {
		return nil, fmt.Errorf("devkeys: salt: %w", err)
	}
	aad, err := f.header()
	if err != nil {
		return nil, err
	}
	k := deriveKey(passphrase, f.Salt, p)
	defer clear(k)
	d := key.Bytes()
	defer clear(d)
	f.Sealed, err = gm.SealSM4GCM(random, k, d, aad)
	if err != nil {
		return nil, fmt.Errorf("devkeys: %w", err)
	}
	return ledger.Marshal(f)
}

// Parse decodes a key file without decrypting it.
func Parse(data []byte) (*File, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrFormat, len(data))
	}
	var f File
	if err := ledger.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("%w: format %q", ErrFormat, f.Format)
	}
	if f.KDF != kdfArgon2id || len(f.Salt) != saltSize {
		return nil, fmt.Errorf("%w: unsupported KDF %q or salt of %d bytes", ErrFormat, f.KDF, len(f.Salt))
	}
	if err := f.params().check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if _, err := f.PublicKey.Parse(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if len(f.Sealed) != gm.GCMNonceSize+gm.PrivateKeySize+gm.GCMTagSize {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrFormat, len(f.Sealed))
	}
	return &f, nil
}

// Public returns the public key recorded in the file (no passphrase
// needed).
func (f *File) Public() (*gm.PublicKey, error) { return f.PublicKey.Parse() }

// Decrypt returns the private key. The caller wipes it when done.
func Decrypt(data []byte, passphrase []byte) (*gm.PrivateKey, error) {
	f, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	aad, err := f.header()
	if err != nil {
		return nil, err
	}
	k := deriveKey(passphrase, f.Salt, f.params())
	defer clear(k)
	d, err := gm.OpenSM4GCM(k, f.Sealed, aad)
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	defer clear(d)
	key, err := gm.NewPrivateKey(d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if [gm.PublicKeySize]byte(f.PublicKey) != key.PublicKey().Array() {
		key.Wipe()
		return nil, fmt.Errorf("%w: decrypted key does not match the recorded public key", ErrFormat)
	}
	return key, nil
}
