// Package envelope is the format of an encrypted record payload: the
// document encrypted once with SM4-GCM under a random 128-bit data key,
// and that data key encrypted with SM2 (C1 ‖ C3 ‖ C2) for each reader.
//
// Only holders of a listed reader's private key can read the document;
// the nodes store and replicate the envelope without being able to. The
// regulator reads plaintext by being one of the readers (the content
// filter can require that).
//
// Layout (canonical CBOR, integer keys):
//
//	Envelope   {1: version = 1, 2: [Recipient...], 3: ciphertext}
//	Recipient  {1: reader address, 2: key id, 3: wrapped data key}
//	ciphertext = nonce (12) ‖ SM4-GCM(data key, nonce, document, aad) ‖ tag (16)
//	aad        = "hallmark/envelope/v1\x00" ‖ SM3(canonical CBOR of the recipient list)
//
// Recipients are sorted by reader address, one entry per reader. Binding
// the recipient list into the AAD means an envelope whose list was altered
// does not open for anyone. The record body lists the same readers, so
// voters can check an envelope against its record without decrypting.
//
// Sealing needs randomness and is done by clients (kiosks, back-office
// systems); execution only decodes envelopes to check their shape.
package envelope

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
)

// Version is the only envelope version this build reads and writes.
const Version = 1

// Limits.
const (
	MaxReaders = 32
	// WrappedKeySize is the size of an SM2 ciphertext of a 16-byte data
	// key: C1 (65) ‖ C3 (32) ‖ C2 (16).
	WrappedKeySize = gm.UncompressedSize + gm.DigestSize + gm.SM4KeySize
	minCiphertext  = gm.GCMNonceSize + gm.GCMTagSize
)

const aadDomain = "hallmark/envelope/v1\x00"

// Errors.
var (
	ErrMalformed = errors.New("envelope: malformed")
	ErrNotReader = errors.New("envelope: key is not among the readers")
)

// Recipient is one reader's wrapped copy of the data key.
type Recipient struct {
	Reader     ledger.Address `cbor:"1,keyasint" json:"reader"`
	Key        gm.KeyID       `cbor:"2,keyasint" json:"keyId"`
	WrappedKey []byte         `cbor:"3,keyasint" json:"wrappedKey"`
}

// Envelope is an encrypted payload.
type Envelope struct {
	Version    uint16      `cbor:"1,keyasint" json:"version"`
	Recipients []Recipient `cbor:"2,keyasint" json:"recipients"`
	Ciphertext []byte      `cbor:"3,keyasint" json:"ciphertext"`
}

// Reader is an account the document is sealed for, with its current
// public key.
type Reader struct {
	Address ledger.Address
	Key     *gm.PublicKey
}

// Decrypter is a private key that can unwrap a data key. *gm.PrivateKey
// satisfies it.
type Decrypter interface {
	PublicKey() *gm.PublicKey
	Decrypt(ciphertext []byte) ([]byte, error)
}

// Seal encrypts document for readers and returns the encoded envelope,
// which becomes the record's payload. random supplies the data key, the
// GCM nonce and the SM2 ephemeral keys (crypto/rand if nil).
func Seal(random io.Reader, document []byte, readers []Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	if len(readers) == 0 || len(readers) > MaxReaders {
		return nil, fmt.Errorf("envelope: %d readers, want 1 to %d", len(readers), MaxReaders)
	}
	sorted := slices.Clone(readers)
	slices.SortFunc(sorted, func(a, b Reader) int { return bytes.Compare(a.Address[:], b.Address[:]) })
	dataKey, err := gm.NewSM4Key(random)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	env := Envelope{Version: Version, Recipients: make([]Recipient, len(sorted))}
	for i, r := range sorted {
		if r.Key == nil || r.Address.IsZero() {
			return nil, fmt.Errorf("envelope: reader %d has no address or key", i)
		}
		if i > 0 && sorted[i-1].Address == r.Address {
			return nil, fmt.Errorf("envelope: reader %s listed twice", r.Address)
		}
		wrapped, err := r.Key.Encrypt(random, dataKey)
		if err != nil {
			return nil, fmt.Errorf("envelope: wrapping the data key for %s: %w", r.Address, err)
		}
		env.Recipients[i] = Recipient{Reader: r.Address, Key: r.Key.ID(), WrappedKey: wrapped}
	}
	aad, err := additionalData(env.Recipients)
	if err != nil {
		return nil, err
	}
	if env.Ciphertext, err = gm.SealSM4GCM(random, dataKey, document, aad); err != nil {
		return nil, fmt.Errorf("envelope: encrypting: %w", err)
	}
	return ledger.Marshal(&env)
}

// Decode strictly decodes an envelope and checks its shape (it cannot
// check the ciphertexts without a reader's key).
func Decode(data []byte) (*Envelope, error) {
	if len(data) > ledger.MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed %d", ErrMalformed, len(data), ledger.MaxPayloadBytes)
	}
	var env Envelope
	if err := ledger.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Version != Version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, env.Version)
	}
	if len(env.Recipients) == 0 || len(env.Recipients) > MaxReaders {
		return nil, fmt.Errorf("%w: %d recipients, want 1 to %d", ErrMalformed, len(env.Recipients), MaxReaders)
	}
	for i, r := range env.Recipients {
		if r.Reader.IsZero() {
			return nil, fmt.Errorf("%w: recipient %d has no reader", ErrMalformed, i)
		}
		if i > 0 && bytes.Compare(env.Recipients[i-1].Reader[:], r.Reader[:]) >= 0 {
			return nil, fmt.Errorf("%w: recipients not in ascending reader order", ErrMalformed)
		}
		if len(r.WrappedKey) != WrappedKeySize {
			return nil, fmt.Errorf("%w: recipient %d: wrapped key of %d bytes, want %d", ErrMalformed, i, len(r.WrappedKey), WrappedKeySize)
		}
	}
	if len(env.Ciphertext) < minCiphertext {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes is too short", ErrMalformed, len(env.Ciphertext))
	}
	return &env, nil
}

// Readers returns the reader addresses in ascending order.
func (e *Envelope) Readers() []ledger.Address {
	out := make([]ledger.Address, len(e.Recipients))
	for i, r := range e.Recipients {
		out[i] = r.Reader
	}
	return out
}

// Open decrypts the document with the reader's private key.
func Open(data []byte, key Decrypter) ([]byte, error) {
	env, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return env.Open(key)
}

// Open decrypts the document with the reader's private key.
func (e *Envelope) Open(key Decrypter) ([]byte, error) {
	id := key.PublicKey().ID()
	i := slices.IndexFunc(e.Recipients, func(r Recipient) bool { return r.Key == id })
	if i < 0 {
		return nil, ErrNotReader
	}
	dataKey, err := key.Decrypt(e.Recipients[i].WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("envelope: unwrapping the data key: %w", err)
	}
	defer clear(dataKey)
	aad, err := additionalData(e.Recipients)
	if err != nil {
		return nil, err
	}
	doc, err := gm.OpenSM4GCM(dataKey, e.Ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("envelope: decrypting: %w", err)
	}
	return doc, nil
}

func additionalData(rs []Recipient) ([]byte, error) {
	enc, err := ledger.Marshal(rs)
	if err != nil {
		return nil, err
	}
	d := gm.SM3(enc)
	return append([]byte(aadDomain), d[:]...), nil
}
