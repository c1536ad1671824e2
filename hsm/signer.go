package hsm

import (
	"context"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/hsm/tpm"
)

// Kind names a custody: where a private key lives.
type Kind string

// The custody kinds.
const (
	// KindTPM: an SM2 key generated inside a TPM 2.0 with native SM2; the
	// private key never leaves the TPM.
	KindTPM Kind = "tpm"
	// KindTPMSealed: a software SM2 key sealed by the TPM to PCR values;
	// it is in process memory while the signer is open.
	KindTPMSealed Kind = "tpm-sealed"
	// KindPKCS11: a key in an HSM reached through PKCS#11 with a vendor
	// SM2 mechanism.
	KindPKCS11 Kind = "pkcs11"
	// KindDev: a software key in a passphrase-encrypted file, for
	// development only.
	KindDev Kind = "dev"
)

// Kinds lists the custody kinds.
func Kinds() []Kind { return []Kind{KindTPM, KindTPMSealed, KindPKCS11, KindDev} }

func (k Kind) valid() bool {
	switch k {
	case KindTPM, KindTPMSealed, KindPKCS11, KindDev:
		return true
	}
	return false
}

// Signer is a key in custody. It satisfies gm.Signer, so consensus, the
// network layer and provisioning sign through it without knowing the
// backend. Sign may block for milliseconds (a TPM) and honours ctx.
type Signer interface {
	gm.Signer
	// KeyID is the SM3 digest of the 64-byte public key.
	KeyID() gm.KeyID
	// Custody says where the private key lives.
	Custody() Kind
	// Ref is the key reference the signer was opened from.
	Ref() string
	// Attestation returns evidence from the custody hardware that it
	// holds the key, bound to nonce; (nil, nil) when the backend has none.
	Attestation(ctx context.Context, nonce []byte) (*Attestation, error)
	// Close releases the key: it wipes software keys from memory and
	// closes connections the signer opened. Sign fails afterwards.
	Close() error
}

// AttestationTPM2Certify is the attestation format of a TPM key:
// TPM2_Certify by the TPM's endorsement-hierarchy attestation key.
const AttestationTPM2Certify = "tpm2-certify"

// Attestation is hardware evidence about a key.
type Attestation struct {
	Format string             `json:"format"`
	TPM    *tpm.Certification `json:"tpm,omitempty"`
}

// Verify checks the attestation for pub and nonce. For a TPM
// certification the verifier must separately decide whether it trusts the
// attestation key (compare TPM.AKPublic with the one enrolment recorded).
func (a *Attestation) Verify(pub *gm.PublicKey, nonce []byte) error {
	if a == nil {
		return errors.New("hsm: no attestation")
	}
	switch a.Format {
	case AttestationTPM2Certify:
		if a.TPM == nil {
			return fmt.Errorf("hsm: %s attestation without a certification", a.Format)
		}
		got, err := a.TPM.Verify(nonce)
		if err != nil {
			return fmt.Errorf("hsm: %w", err)
		}
		if !got.Equal(pub) {
			return fmt.Errorf("hsm: attestation certifies key %s, not %s", got.ID(), pub.ID())
		}
		return nil
	default:
		return fmt.Errorf("hsm: unknown attestation format %q", a.Format)
	}
}

// Errors callers act on. Backend errors wrap them (errors.Is), and their
// messages carry the details: the address, the path, the handle.
var (
	ErrKeyNotFound     = errors.New("key not found")
	ErrKeyExists       = errors.New("key already exists")
	ErrWrongPassphrase = errors.New("wrong passphrase")
	ErrPCRState        = errors.New("wrong PCR state: the sealed key unseals only with the PCR values it was sealed to")
	ErrWrongTPM        = errors.New("sealed or wrapped key belongs to another TPM")
	ErrProduction      = errors.New("development keystore refused: the node is configured for production")
	ErrClosed          = errors.New("signer is closed")
	ErrBadRef          = errors.New("malformed key reference")
	ErrCustodyMismatch = errors.New("custody kinds differ")
	// ErrPKCS11Unavailable: the binary was built without PKCS#11 support.
	ErrPKCS11Unavailable = errors.New("built without PKCS#11 support (rebuild with CGO_ENABLED=1 and -tags pkcs11)")
	// ErrTPMUnreachable and ErrNoSM2 are the tpm package's sentinels.
	ErrTPMUnreachable = tpm.ErrUnreachable
	ErrNoSM2          = tpm.ErrNoSM2
)
