package provisioning

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
)

// Attestation is hardware evidence that a key lives in a TPM, in canonical
// CBOR: a TPM2_Certify of the key by the TPM's attestation key (AK). It
// is hsm.Attestation in the form genesis files and certificate requests
// carry.
type Attestation struct {
	Format    string `cbor:"1,keyasint" json:"format"`    // hsm.AttestationTPM2Certify
	KeyPublic []byte `cbor:"2,keyasint" json:"keyPublic"` // TPMT_PUBLIC of the certified key
	AKPublic  []byte `cbor:"3,keyasint" json:"akPublic"`  // TPMT_PUBLIC of the attestation key
	Attest    []byte `cbor:"4,keyasint" json:"attest"`    // TPMS_ATTEST, the signed bytes
	Signature []byte `cbor:"5,keyasint" json:"signature"` // TPMT_SIGNATURE over Attest
}

// maxAttestationField bounds each TPM structure an attestation carries.
const maxAttestationField = 1024

// ErrAttestation is wrapped by every failure to verify an attestation.
var ErrAttestation = errors.New("provisioning: key attestation does not verify")

// AttestationFrom converts hsm's attestation.
func AttestationFrom(a *hsm.Attestation) (*Attestation, error) {
	if a == nil {
		return nil, fmt.Errorf("%w: the key's custody gives no attestation (software key?)", ErrAttestation)
	}
	if a.Format != hsm.AttestationTPM2Certify || a.TPM == nil {
		return nil, fmt.Errorf("%w: unsupported format %q", ErrAttestation, a.Format)
	}
	c := a.TPM
	return &Attestation{Format: a.Format, KeyPublic: c.KeyPublic, AKPublic: c.AKPublic, Attest: c.Attest, Signature: c.Signature}, nil
}

// HSM returns the attestation in hsm's form.
func (a *Attestation) HSM() *hsm.Attestation {
	return &hsm.Attestation{Format: a.Format, TPM: &tpm.Certification{
		KeyPublic: a.KeyPublic, AKPublic: a.AKPublic, Attest: a.Attest, Signature: a.Signature,
	}}
}

// Verify checks that the attestation certifies key, bound to nonce: the
// AK's signature, that the TPM generated the statement, the nonce, and
// that the certified object is a fixed-TPM SM2 signing key equal to key.
// Whether the AK belongs to a genuine TPM is a separate decision (see
// docs/KEYS.md §3.4).
func (a *Attestation) Verify(key *gm.PublicKey, nonce []byte) error {
	if a == nil {
		return fmt.Errorf("%w: none given", ErrAttestation)
	}
	for _, f := range [][]byte{a.KeyPublic, a.AKPublic, a.Attest, a.Signature} {
		if len(f) == 0 || len(f) > maxAttestationField {
			return fmt.Errorf("%w: a TPM structure is empty or longer than %d bytes", ErrAttestation, maxAttestationField)
		}
	}
	if err := a.HSM().Verify(key, nonce); err != nil {
		return fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	return nil
}

// AKID identifies the attestation key (SM3 of its TPMT_PUBLIC): stable
// for the TPM's life, so an operator can record which TPM a node key
// came from.
func (a *Attestation) AKID() gm.Digest { return gm.SM3(a.AKPublic) }

const attestationNonceDomain = "hallmark/node-attestation/v1\x00"

// AttestationNonce is the qualifying data a node key's attestation binds:
// SM3 of a domain tag, the chain id and the key. Binding the chain and
// the key stops evidence made for one enrolment from being replayed for
// another chain.
func AttestationNonce(chainID string, key ledger.PublicKeyBytes) []byte {
	msg := make([]byte, 0, len(attestationNonceDomain)+2+len(chainID)+len(key))
	msg = append(msg, attestationNonceDomain...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(chainID)))
	msg = append(msg, chainID...)
	msg = append(msg, key[:]...)
	d := gm.SM3(msg)
	return d[:]
}

// Attest asks a key in custody for its attestation bound to the chain:
// what a validator or an enrolling node hands to the ceremony.
func Attest(ctx context.Context, s hsm.Signer, chainID string) (*Attestation, error) {
	a, err := s.Attestation(ctx, AttestationNonce(chainID, ledger.KeyBytes(s.PublicKey())))
	if err != nil {
		return nil, fmt.Errorf("provisioning: attesting key %s: %w", s.KeyID(), err)
	}
	return AttestationFrom(a)
}
