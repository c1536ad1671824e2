package images

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
)

// ManifestVersion is the only manifest format version this package reads
// and writes.
const ManifestVersion = 1

// Limits every decoder enforces.
const (
	MaxManifestBytes  = 64 << 10
	MaxParts          = 16
	MaxInputs         = 64
	MaxSignatures     = 16
	MaxNameLen        = 64
	MaxVersionLen     = 64
	MaxHardwareLen    = 64
	minSlotSize       = 1 << 20
	maxArtifactLength = 1 << 40
)

// signDomain separates release signatures from every other SM2 signature
// a key might make.
const signDomain = "hallmark/image-manifest/v1\x00"

// Errors a manifest check returns. Callers test them with errors.Is.
var (
	ErrMalformed    = errors.New("images: malformed manifest")
	ErrThreshold    = errors.New("images: not enough valid release signatures")
	ErrBadSignature = errors.New("images: invalid release signature")
	ErrPolicy       = errors.New("images: invalid trust policy")
)

// Firmware identifies the firmware a release carries. The slot content
// (kernel and initramfs in a FAT filesystem, see docs/IMAGES.md) is what a
// root slot holds; its SM3 digest is the measurement the booted firmware
// extends into the TPM.
type Firmware struct {
	// Version is the human release version, e.g. "1.4.0".
	Version string `cbor:"1,keyasint" json:"version"`
	// SecurityVersion is the anti-rollback number: a device refuses a
	// release whose SecurityVersion is below its NV counter. It is a small
	// integer raised only when a release fixes something an attacker could
	// exploit by installing the older one.
	SecurityVersion uint64 `cbor:"2,keyasint" json:"securityVersion"`
	// Hardware is the target hardware id; devices of another kind refuse it.
	Hardware string `cbor:"3,keyasint" json:"hardware"`
	// SlotSize is the exact length of the slot content in bytes.
	SlotSize uint64 `cbor:"4,keyasint" json:"slotSize"`
	// SlotDigest is SM3 over the slot content.
	SlotDigest gm.Digest `cbor:"5,keyasint" json:"slotDigest"`
}

// Measurement is the value the booted firmware extends into
// [MeasurementPCR]: the SM3 digest of the slot it booted from.
func (f Firmware) Measurement() gm.Digest { return f.SlotDigest }

// PCRValues are the PCR values a key sealed to this release expects: the
// SHA-256 bank of [MeasurementPCR] after a reset and the release's
// measurement. hsm.GenerateSealedTo and hsm.ResealTo take them.
func (f Firmware) PCRValues() hsm.PCRValues {
	return hsm.PCRValues{MeasurementPCR: PredictPCR(crypto.SHA256, f.Measurement())}
}

// Part is one contiguous byte range of the disk image and its digest. The
// parts of a manifest tile the image: together they cover every byte, so
// a changed byte anywhere changes some part's digest.
type Part struct {
	Name   string    `cbor:"1,keyasint" json:"name"`
	Offset uint64    `cbor:"2,keyasint" json:"offset"`
	Size   uint64    `cbor:"3,keyasint" json:"size"`
	Digest gm.Digest `cbor:"4,keyasint" json:"digest"`
}

// Input records one build input (kernel, init binary, kernel module...)
// by digest, so that anyone rebuilding the release can check they started
// from the same files.
type Input struct {
	Name   string    `cbor:"1,keyasint" json:"name"`
	Size   uint64    `cbor:"2,keyasint" json:"size"`
	Digest gm.Digest `cbor:"3,keyasint" json:"digest"`
}

// Body is the signed part of a manifest.
type Body struct {
	Version  uint16   `cbor:"1,keyasint" json:"manifestVersion"`
	Firmware Firmware `cbor:"2,keyasint" json:"firmware"`
	// ImageSize is the length of the disk image in bytes.
	ImageSize uint64 `cbor:"3,keyasint" json:"imageSize"`
	// Parts tile [0, ImageSize) in offset order.
	Parts []Part `cbor:"4,keyasint" json:"parts"`
	// Inputs lists the build inputs, sorted by name.
	Inputs []Input `cbor:"5,keyasint" json:"inputs"`
	// BuildEpoch is the fixed timestamp (seconds since 1970 UTC) written
	// into every timestamp field of the image, the SOURCE_DATE_EPOCH of
	// the build.
	BuildEpoch int64 `cbor:"6,keyasint" json:"buildEpoch"`
}

// Signature is one release key's signature over the manifest body.
type Signature struct {
	PublicKey ledger.PublicKeyBytes `cbor:"1,keyasint" json:"publicKey"`
	Signature gm.Signature          `cbor:"2,keyasint" json:"signature"`
}

// Manifest is a release manifest: the body and the release signatures,
// sorted by public key with no key twice.
type Manifest struct {
	Body       Body        `cbor:"1,keyasint" json:"body"`
	Signatures []Signature `cbor:"2,keyasint" json:"signatures"`
}

// ID returns SM3 over the canonical encoding of the body. It names the
// release: two builds of the same inputs have the same id.
func (b *Body) ID() (gm.Digest, error) {
	enc, err := ledger.Marshal(b)
	if err != nil {
		return gm.Digest{}, fmt.Errorf("images: encode manifest body: %w", err)
	}
	return gm.SM3(enc), nil
}

// SignBytes returns the message a release key signs for the manifest with
// body id id: a domain tag followed by the id.
func SignBytes(id gm.Digest) []byte {
	msg := make([]byte, 0, len(signDomain)+gm.DigestSize)
	msg = append(msg, signDomain...)
	return append(msg, id[:]...)
}

// Validate checks the body's structure: version, field limits, and that
// the parts tile the image exactly.
func (b *Body) Validate() error {
	if b.Version != ManifestVersion {
		return fmt.Errorf("%w: manifest version %d, want %d", ErrMalformed, b.Version, ManifestVersion)
	}
	f := &b.Firmware
	if err := checkText("firmware version", f.Version, MaxVersionLen); err != nil {
		return err
	}
	if err := checkText("hardware id", f.Hardware, MaxHardwareLen); err != nil {
		return err
	}
	if f.SlotSize < minSlotSize || f.SlotSize%SectorSize != 0 {
		return fmt.Errorf("%w: slot size %d is not a whole number of sectors of at least %d bytes", ErrMalformed, f.SlotSize, minSlotSize)
	}
	if b.ImageSize == 0 || b.ImageSize > maxArtifactLength || b.ImageSize%SectorSize != 0 {
		return fmt.Errorf("%w: image size %d", ErrMalformed, b.ImageSize)
	}
	if len(b.Parts) == 0 || len(b.Parts) > MaxParts {
		return fmt.Errorf("%w: %d parts, want 1..%d", ErrMalformed, len(b.Parts), MaxParts)
	}
	var next uint64
	names := make(map[string]bool, len(b.Parts))
	for i, p := range b.Parts {
		if err := checkText("part name", p.Name, MaxNameLen); err != nil {
			return err
		}
		if names[p.Name] {
			return fmt.Errorf("%w: part %q listed twice", ErrMalformed, p.Name)
		}
		names[p.Name] = true
		if p.Offset != next {
			return fmt.Errorf("%w: part %d (%s) starts at %d, want %d: parts must tile the image", ErrMalformed, i, p.Name, p.Offset, next)
		}
		if p.Size == 0 || p.Size > b.ImageSize-p.Offset {
			return fmt.Errorf("%w: part %s size %d does not fit the image", ErrMalformed, p.Name, p.Size)
		}
		next = p.Offset + p.Size
	}
	if next != b.ImageSize {
		return fmt.Errorf("%w: parts end at %d, image size is %d", ErrMalformed, next, b.ImageSize)
	}
	if len(b.Inputs) > MaxInputs {
		return fmt.Errorf("%w: %d inputs, limit %d", ErrMalformed, len(b.Inputs), MaxInputs)
	}
	for i, in := range b.Inputs {
		if err := checkText("input name", in.Name, MaxNameLen); err != nil {
			return err
		}
		if i > 0 && b.Inputs[i-1].Name >= in.Name {
			return fmt.Errorf("%w: inputs not sorted by name or listed twice at %q", ErrMalformed, in.Name)
		}
	}
	return nil
}

// Part returns the part with the given name.
func (b *Body) Part(name string) (Part, bool) {
	for _, p := range b.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return Part{}, false
}

func checkText(what, s string, limit int) error {
	if s == "" || len(s) > limit || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q must be 1..%d bytes of UTF-8", ErrMalformed, what, s, limit)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q contains a control character", ErrMalformed, what, s)
		}
	}
	return nil
}

// Encode returns the canonical encoding of the manifest.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := ledger.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("images: encode manifest: %w", err)
	}
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: encoded manifest is %d bytes, limit %d", ErrMalformed, len(b), MaxManifestBytes)
	}
	return b, nil
}

// DecodeManifest parses a canonical manifest and checks its structure. It
// does not check signatures: call [Manifest.Verify] for that.
func DecodeManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(data), MaxManifestBytes)
	}
	var m Manifest
	if err := ledger.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.Body.Validate(); err != nil {
		return nil, err
	}
	if err := m.checkSignatureList(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) checkSignatureList() error {
	if len(m.Signatures) > MaxSignatures {
		return fmt.Errorf("%w: %d signatures, limit %d", ErrMalformed, len(m.Signatures), MaxSignatures)
	}
	for i := 1; i < len(m.Signatures); i++ {
		if !lessKey(m.Signatures[i-1].PublicKey, m.Signatures[i].PublicKey) {
			return fmt.Errorf("%w: signatures not sorted by public key or a key signed twice", ErrMalformed)
		}
	}
	return nil
}

func lessKey(a, b ledger.PublicKeyBytes) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Sign adds signer's signature over the body, keeping the list sorted. A
// key that already signed is replaced, so signing twice is harmless.
func (m *Manifest) Sign(ctx context.Context, signer gm.Signer) error {
	if err := m.Body.Validate(); err != nil {
		return err
	}
	id, err := m.Body.ID()
	if err != nil {
		return err
	}
	sig, err := signer.Sign(ctx, SignBytes(id))
	if err != nil {
		return fmt.Errorf("images: sign manifest: %w", err)
	}
	pub := signer.PublicKey()
	if !pub.Verify(SignBytes(id), sig) {
		return fmt.Errorf("%w: signer %s produced a signature its public key rejects", ErrBadSignature, pub.ID().Short())
	}
	entry := Signature{PublicKey: ledger.KeyBytes(pub), Signature: sig}
	out := make([]Signature, 0, len(m.Signatures)+1)
	placed := false
	for _, s := range m.Signatures {
		switch {
		case s.PublicKey == entry.PublicKey:
			continue
		case !placed && lessKey(entry.PublicKey, s.PublicKey):
			out = append(out, entry)
			placed = true
		}
		out = append(out, s)
	}
	if !placed {
		out = append(out, entry)
	}
	if len(out) > MaxSignatures {
		return fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxSignatures)
	}
	m.Signatures = out
	return nil
}

// Policy says which release keys a device trusts and how many of them
// must sign a release.
type Policy struct {
	Keys      []*gm.PublicKey
	Threshold int
}

// Validate checks that the threshold is reachable and no key is listed
// twice.
func (p Policy) Validate() error {
	if len(p.Keys) == 0 {
		return fmt.Errorf("%w: no trusted release keys", ErrPolicy)
	}
	if p.Threshold < 1 || p.Threshold > len(p.Keys) {
		return fmt.Errorf("%w: threshold %d with %d trusted keys", ErrPolicy, p.Threshold, len(p.Keys))
	}
	seen := make(map[gm.KeyID]bool, len(p.Keys))
	for _, k := range p.Keys {
		if k == nil {
			return fmt.Errorf("%w: nil key", ErrPolicy)
		}
		if seen[k.ID()] {
			return fmt.Errorf("%w: key %x listed twice", ErrPolicy, k.ID().Short())
		}
		seen[k.ID()] = true
	}
	return nil
}

// Verification is what [Manifest.Verify] found.
type Verification struct {
	ID gm.Digest
	// Trusted lists the trusted keys whose signatures verified.
	Trusted []gm.KeyID
	// Untrusted counts signatures by keys outside the policy; they are
	// ignored.
	Untrusted int
}

// Verify checks the body's structure and that at least Threshold distinct
// trusted keys signed it. A signature by a trusted key that does not verify
// is an error even when the threshold is met without it: it means the
// manifest was changed after signing.
func (m *Manifest) Verify(p Policy) (Verification, error) {
	if err := p.Validate(); err != nil {
		return Verification{}, err
	}
	if err := m.Body.Validate(); err != nil {
		return Verification{}, err
	}
	if err := m.checkSignatureList(); err != nil {
		return Verification{}, err
	}
	id, err := m.Body.ID()
	if err != nil {
		return Verification{}, err
	}
	trusted := make(map[ledger.PublicKeyBytes]*gm.PublicKey, len(p.Keys))
	for _, k := range p.Keys {
		trusted[ledger.KeyBytes(k)] = k
	}
	v := Verification{ID: id}
	msg := SignBytes(id)
	for _, s := range m.Signatures {
		key, ok := trusted[s.PublicKey]
		if !ok {
			v.Untrusted++
			continue
		}
		if !key.Verify(msg, s.Signature) {
			return v, fmt.Errorf("%w: key %x does not verify manifest %s", ErrBadSignature, key.ID().Short(), id)
		}
		v.Trusted = append(v.Trusted, key.ID())
	}
	if len(v.Trusted) < p.Threshold {
		return v, fmt.Errorf("%w: %d of %d required trusted signatures (%d untrusted ignored)", ErrThreshold, len(v.Trusted), p.Threshold, v.Untrusted)
	}
	return v, nil
}
