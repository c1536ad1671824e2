package gm

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync/atomic"

	"github.com/emmansun/gmsm/sm2"
)

// Sizes of SM2 encodings, in bytes.
const (
	PublicKeySize    = 64 // X ‖ Y, the ledger's account public key (spec 01_001)
	UncompressedSize = 65 // 0x04 ‖ X ‖ Y (SEC 1)
	PrivateKeySize   = 32 // the scalar d (spec 01_002)
	SignatureSize    = 64 // r ‖ s
	coordinateSize   = 32
)

// DefaultUID is the SM2 user id used when an account names none
// (GB/T 35276 and GM/T 0009 default).
const DefaultUID = "1234567812345678"

// Errors returned for malformed keys and signatures.
var (
	ErrPublicKey  = errors.New("gm: invalid SM2 public key")
	ErrPrivateKey = errors.New("gm: invalid SM2 private key")
	ErrSignature  = errors.New("gm: invalid SM2 signature encoding")
	ErrWiped      = errors.New("gm: private key was wiped")
)

// Signer signs messages with an SM2 key using the default user id, so that
// the signature verifies with [PublicKey.Verify]. Software keys
// ([PrivateKey]) and hardware-held keys (package hsm) both satisfy it.
// Sign may block (a hardware signer takes milliseconds) and honours ctx.
type Signer interface {
	PublicKey() *PublicKey
	Sign(ctx context.Context, msg []byte) (Signature, error)
}

// PublicKey is an SM2 public key. It is immutable and safe for concurrent use.
type PublicKey struct {
	key *ecdsa.PublicKey
	xy  [PublicKeySize]byte
	id  KeyID
	// za is Z_A for the default user id, computed on first use: every
	// signature checked under the key hashes it again otherwise.
	za atomic.Pointer[Digest]
}

// ParsePublicKey parses a public key given as 64 bytes X ‖ Y or 65 bytes
// 0x04 ‖ X ‖ Y. The point must lie on the SM2 curve and not be the point at
// infinity.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	var uncompressed []byte
	switch len(b) {
	case PublicKeySize:
		uncompressed = make([]byte, UncompressedSize)
		uncompressed[0] = 0x04
		copy(uncompressed[1:], b)
	case UncompressedSize:
		if b[0] != 0x04 {
			return nil, fmt.Errorf("%w: 65-byte key must start with 0x04, got 0x%02x", ErrPublicKey, b[0])
		}
		uncompressed = b
	default:
		return nil, fmt.Errorf("%w: want %d or %d bytes, got %d", ErrPublicKey, PublicKeySize, UncompressedSize, len(b))
	}
	key, err := sm2.NewPublicKey(uncompressed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPublicKey, err)
	}
	return newPublicKey(key)
}

// MustParsePublicKey is ParsePublicKey for keys known to be valid (tests,
// constants); it panics on error.
func MustParsePublicKey(b []byte) *PublicKey {
	k, err := ParsePublicKey(b)
	if err != nil {
		panic(err)
	}
	return k
}

func newPublicKey(key *ecdsa.PublicKey) (*PublicKey, error) {
	if key == nil || key.X == nil || key.Y == nil || !sm2.IsSM2PublicKey(key) {
		return nil, fmt.Errorf("%w: not a key on the SM2 curve", ErrPublicKey)
	}
	if !key.Curve.IsOnCurve(key.X, key.Y) {
		return nil, fmt.Errorf("%w: point not on the SM2 curve", ErrPublicKey)
	}
	p := &PublicKey{key: key}
	key.X.FillBytes(p.xy[:coordinateSize])
	key.Y.FillBytes(p.xy[coordinateSize:])
	p.id = KeyID(SM3(p.xy[:]))
	return p, nil
}

// PublicKeyFromECDSA wraps an SM2-curve key held in the standard library's
// type (as returned by certificate parsers).
func PublicKeyFromECDSA(key *ecdsa.PublicKey) (*PublicKey, error) {
	return newPublicKey(key)
}

// Bytes returns the 64-byte X ‖ Y encoding.
func (p *PublicKey) Bytes() []byte {
	out := p.xy
	return out[:]
}

// Array returns the 64-byte X ‖ Y encoding as an array.
func (p *PublicKey) Array() [PublicKeySize]byte { return p.xy }

// Uncompressed returns the 65-byte 0x04 ‖ X ‖ Y encoding.
func (p *PublicKey) Uncompressed() []byte {
	out := make([]byte, UncompressedSize)
	out[0] = 0x04
	copy(out[1:], p.xy[:])
	return out
}

// ID returns the key id: SM3 of the 64-byte encoding.
func (p *PublicKey) ID() KeyID { return p.id }

// Equal reports whether p and o are the same point.
func (p *PublicKey) Equal(o *PublicKey) bool {
	return p != nil && o != nil && p.xy == o.xy
}

// String returns the 64-byte encoding in hex.
func (p *PublicKey) String() string { return hex.EncodeToString(p.xy[:]) }

// ECDSA returns the key in the standard library's type, for APIs such as
// x509 and tls that need a crypto.PublicKey. The caller must not modify it.
func (p *PublicKey) ECDSA() *ecdsa.PublicKey { return p.key }

// Digest returns e = SM3(Z_A ‖ msg) for the default user id: the value a
// hardware signer signs when it cannot compute SM3 itself.
func (p *PublicKey) Digest(msg []byte) Digest {
	za := p.za.Load()
	if za == nil {
		z, err := p.zA([]byte(DefaultUID))
		if err != nil {
			// Only an invalid key makes this fail, and a PublicKey is
			// validated at construction.
			panic(fmt.Sprintf("gm: digest over a validated key failed: %v", err))
		}
		za = &z
		p.za.Store(za)
	}
	return SM3Concat(za[:], msg)
}

// zA returns Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A).
func (p *PublicKey) zA(uid []byte) (Digest, error) {
	z, err := sm2.CalculateZA(p.key, uid)
	if err != nil {
		return Digest{}, fmt.Errorf("gm: computing SM2 Z_A: %w", err)
	}
	return DigestFromBytes(z)
}

// DigestWithUID returns e = SM3(Z_A ‖ msg) for the given user id.
func (p *PublicKey) DigestWithUID(uid, msg []byte) (Digest, error) {
	if len(uid) == 0 {
		uid = []byte(DefaultUID)
	}
	if len(uid) > 8191 { // ENTL_A is a 16-bit count of bits
		return Digest{}, fmt.Errorf("gm: user id of %d bytes is too long", len(uid))
	}
	z, err := p.zA(uid)
	if err != nil {
		return Digest{}, err
	}
	return SM3Concat(z[:], msg), nil
}

// Verify reports whether sig is a valid SM2 signature of msg under the
// default user id.
func (p *PublicKey) Verify(msg []byte, sig Signature) bool {
	if p == nil || p.key == nil {
		return false
	}
	return p.VerifyDigest(p.Digest(msg), sig)
}

// VerifyWithUID reports whether sig is a valid SM2 signature of msg under uid.
func (p *PublicKey) VerifyWithUID(uid, msg []byte, sig Signature) bool {
	if p == nil || p.key == nil {
		return false
	}
	e, err := p.DigestWithUID(uid, msg)
	if err != nil {
		return false
	}
	return p.VerifyDigest(e, sig)
}

// VerifyDigest reports whether sig is a valid SM2 signature of the
// precomputed e = SM3(Z_A ‖ M).
func (p *PublicKey) VerifyDigest(e Digest, sig Signature) bool {
	if p == nil || p.key == nil {
		return false
	}
	der, err := sig.DER()
	if err != nil {
		return false
	}
	return sm2.VerifyASN1(p.key, e[:], der)
}

// Encrypt encrypts msg to p with SM2 public-key encryption, returning
// C1 ‖ C3 ‖ C2 with C1 uncompressed (GB/T 32918.4).
func (p *PublicKey) Encrypt(random io.Reader, msg []byte) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	if len(msg) == 0 {
		return nil, errors.New("gm: SM2 encryption of an empty message")
	}
	ct, err := sm2.Encrypt(random, p.key, msg, nil)
	if err != nil {
		return nil, fmt.Errorf("gm: SM2 encrypt: %w", err)
	}
	return ct, nil
}

// PrivateKey is an SM2 private key held in process memory. It satisfies
// [Signer]. Keys that must not live in process memory belong in package hsm.
type PrivateKey struct {
	key *sm2.PrivateKey
	pub *PublicKey
}

// GenerateKey creates a new SM2 key from random (crypto/rand if nil).
func GenerateKey(random io.Reader) (*PrivateKey, error) {
	if random == nil {
		random = rand.Reader
	}
	k, err := sm2.GenerateKey(random)
	if err != nil {
		return nil, fmt.Errorf("gm: generating SM2 key: %w", err)
	}
	return wrapPrivateKey(k)
}

// NewPrivateKey builds a key from its 32-byte big-endian scalar d, which
// must lie in [1, n-2] (GB/T 32918.1).
func NewPrivateKey(d []byte) (*PrivateKey, error) {
	if len(d) != PrivateKeySize {
		return nil, fmt.Errorf("%w: want %d bytes, got %d", ErrPrivateKey, PrivateKeySize, len(d))
	}
	k, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPrivateKey, err)
	}
	return wrapPrivateKey(k)
}

func wrapPrivateKey(k *sm2.PrivateKey) (*PrivateKey, error) {
	pub, err := newPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{key: k, pub: pub}, nil
}

// PublicKey returns the public half.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Bytes returns the 32-byte scalar (zeros after [PrivateKey.Wipe]). The
// caller owns the slice and should zero it when done.
func (k *PrivateKey) Bytes() []byte {
	out := make([]byte, PrivateKeySize)
	if k.key != nil {
		k.key.D.FillBytes(out)
	}
	return out
}

// Wipe overwrites the scalar d in place and makes the key unusable: Sign,
// Decrypt and MarshalPKCS8 fail with ErrWiped afterwards. It cannot reach
// copies made elsewhere (temporaries of the arithmetic, a cached
// (1+d)^-1 inside the SM2 library, memory the garbage collector moved).
// It must not run concurrently with other methods of k.
func (k *PrivateKey) Wipe() {
	if k.key == nil {
		return
	}
	clear(k.key.D.Bits())
	k.key.D.SetInt64(0)
	k.key = nil
}

// Sign signs msg under the default user id. ctx is accepted to satisfy
// [Signer]; a software signature does not block.
func (k *PrivateKey) Sign(ctx context.Context, msg []byte) (Signature, error) {
	if err := ctx.Err(); err != nil {
		return Signature{}, err
	}
	return k.SignWithUID(nil, []byte(DefaultUID), msg)
}

// SignWithUID signs msg under uid, reading randomness from random
// (crypto/rand if nil).
func (k *PrivateKey) SignWithUID(random io.Reader, uid, msg []byte) (Signature, error) {
	e, err := k.pub.DigestWithUID(uid, msg)
	if err != nil {
		return Signature{}, err
	}
	return k.SignDigest(random, e)
}

// SignDigest signs a precomputed e = SM3(Z_A ‖ M).
func (k *PrivateKey) SignDigest(random io.Reader, e Digest) (Signature, error) {
	if k.key == nil {
		return Signature{}, ErrWiped
	}
	if random == nil {
		random = rand.Reader
	}
	der, err := sm2.SignASN1(random, k.key, e[:], nil)
	if err != nil {
		return Signature{}, fmt.Errorf("gm: SM2 sign: %w", err)
	}
	return ParseDERSignature(der)
}

// Decrypt decrypts a C1 ‖ C3 ‖ C2 ciphertext made by [PublicKey.Encrypt].
// C1 must be uncompressed (0x04 ‖ x ‖ y); other encodings some libraries
// produce (ASN.1, compressed C1, C1 ‖ C2 ‖ C3) are refused rather than
// guessed at.
func (k *PrivateKey) Decrypt(ciphertext []byte) ([]byte, error) {
	if k.key == nil {
		return nil, ErrWiped
	}
	if len(ciphertext) < UncompressedSize+DigestSize+1 {
		return nil, fmt.Errorf("gm: SM2 ciphertext of %d bytes is too short", len(ciphertext))
	}
	if ciphertext[0] != 0x04 {
		return nil, fmt.Errorf("gm: SM2 ciphertext must start with an uncompressed C1 (0x04), got 0x%02x", ciphertext[0])
	}
	pt, err := sm2.Decrypt(k.key, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("gm: SM2 decrypt: %w", err)
	}
	return pt, nil
}

// Signature is an SM2 signature as r ‖ s, each 32 bytes big-endian. A
// value decoded without [ParseSignature] (from CBOR or JSON) may hold any
// 64 bytes; one whose r or s lies outside [1, n-1] never verifies and has
// no DER form.
type Signature [SignatureSize]byte

// ParseSignature copies a 64-byte r ‖ s signature. Like
// [ParseDERSignature] it rejects r or s outside [1, n-1], which no SM2
// signer produces and no verifier accepts.
func ParseSignature(b []byte) (Signature, error) {
	var s Signature
	if len(b) != SignatureSize {
		return s, fmt.Errorf("%w: want %d bytes, got %d", ErrSignature, SignatureSize, len(b))
	}
	copy(s[:], b)
	if _, _, err := s.scalars(); err != nil {
		return Signature{}, err
	}
	return s, nil
}

// ParseDERSignature converts an ASN.1 SEQUENCE { r INTEGER, s INTEGER }
// into r ‖ s. The encoding must be DER (minimal lengths and integers,
// nothing trailing), and r and s must lie in [1, n-1] where n is the order
// of the SM2 curve: every value outside that range is rejected here rather
// than left for [PublicKey.Verify] to refuse, so a signature that parses
// always re-encodes to the same bytes.
func ParseDERSignature(der []byte) (Signature, error) {
	var sig Signature
	r, s, err := parseDERIntegers(der)
	if err != nil {
		return sig, err
	}
	if !inScalarRange(r) || !inScalarRange(s) {
		return sig, fmt.Errorf("%w: r or s outside [1, n-1]", ErrSignature)
	}
	r.FillBytes(sig[:coordinateSize])
	s.FillBytes(sig[coordinateSize:])
	return sig, nil
}

// DER returns the ASN.1 encoding other SM2 libraries exchange. It fails for
// a signature whose r or s lies outside [1, n-1].
func (s Signature) DER() ([]byte, error) {
	r, ss := s[:coordinateSize], s[coordinateSize:]
	if !scalarInRange(r) || !scalarInRange(ss) {
		return nil, fmt.Errorf("%w: r or s outside [1, n-1]", ErrSignature)
	}
	return appendDERIntegers(make([]byte, 0, 2+2*(2+coordinateSize+1)), r, ss), nil
}

// scalars returns r and s, or an error if either lies outside [1, n-1].
func (s Signature) scalars() (r, ss *big.Int, err error) {
	r = new(big.Int).SetBytes(s[:coordinateSize])
	ss = new(big.Int).SetBytes(s[coordinateSize:])
	if !inScalarRange(r) || !inScalarRange(ss) {
		return nil, nil, fmt.Errorf("%w: r or s outside [1, n-1]", ErrSignature)
	}
	return r, ss, nil
}

// inScalarRange reports whether 1 <= x <= n-1 for the SM2 curve order n.
func inScalarRange(x *big.Int) bool {
	return x.Sign() > 0 && x.Cmp(sm2.P256().Params().N) < 0
}

// String returns the signature in hex.
func (s Signature) String() string { return hex.EncodeToString(s[:]) }

// KeyID identifies a public key: SM3 of its 64-byte encoding.
type KeyID Digest

// String returns the key id in hex.
func (id KeyID) String() string { return Digest(id).String() }

// MarshalText renders the key id as hex.
func (id KeyID) MarshalText() ([]byte, error) { return Digest(id).MarshalText() }

// UnmarshalText parses a hex key id.
func (id *KeyID) UnmarshalText(text []byte) error { return (*Digest)(id).UnmarshalText(text) }

// Short returns the first 8 bytes of the key id, the form carried in the
// kiosk datagram header and used as the kernel fast path's map key.
func (id KeyID) Short() [8]byte {
	var s [8]byte
	copy(s[:], id[:8])
	return s
}

// MarshalText renders the signature as hex (used by encoding/json).
func (s Signature) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(SignatureSize))
	hex.Encode(out, s[:])
	return out, nil
}

// UnmarshalText parses a hex signature.
func (s *Signature) UnmarshalText(text []byte) error {
	if hex.DecodedLen(len(text)) != SignatureSize {
		return fmt.Errorf("%w: want %d hex characters, got %d", ErrSignature, 2*SignatureSize, len(text))
	}
	if _, err := hex.Decode(s[:], text); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}
