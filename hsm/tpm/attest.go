package tpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"hallmark/gm"
)

// ErrAttestation is wrapped by every failure to verify a certification.
var ErrAttestation = errors.New("TPM key certification does not verify")

// MaxNonceSize bounds the qualifying data of a certification.
const MaxNonceSize = 64

// akTemplate is Hallmark's attestation key: a restricted ECDSA P-256
// signing key, primary in the endorsement hierarchy. A primary key derives
// from the endorsement seed and the template alone, so every TPM has one
// fixed attestation key under this template that survives owner changes;
// enrolment records its public part. A restricted key signs only digests
// the TPM computed itself, so it cannot be made to sign a forged
// TPMS_ATTEST (which starts with TPM_GENERATED_VALUE).
func akTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// Certification is a TPM's statement, signed by its attestation key, that
// it holds the object with the given public area: TPM2_Certify's output
// with the inputs a verifier needs.
type Certification struct {
	KeyPublic []byte // TPMT_PUBLIC of the certified SM2 key
	AKPublic  []byte // TPMT_PUBLIC of the attestation key
	Attest    []byte // TPMS_ATTEST, the signed bytes
	Signature []byte // TPMT_SIGNATURE (ECDSA P-256, SHA-256) over Attest
}

// Certify has the TPM's attestation key certify k, binding nonce (at most
// MaxNonceSize bytes) as qualifying data for freshness.
func (k *Key) Certify(ctx context.Context, nonce []byte) (*Certification, error) {
	if len(nonce) > MaxNonceSize {
		return nil, fmt.Errorf("certification nonce of %d bytes exceeds %d", len(nonce), MaxNonceSize)
	}
	var cert *Certification
	err := k.conn.Do(ctx, func(t transport.TPM) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.ensureLoaded(t); err != nil {
			return err
		}
		ak, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.TPMRHEndorsement,
			InPublic:      tpm2.New2B(akTemplate()),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("creating attestation key: %w", err)
		}
		defer flush(t, ak.ObjectHandle)
		akPub, err := ak.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		rsp, err := tpm2.Certify{
			ObjectHandle:   tpm2.AuthHandle{Handle: k.handle(), Name: k.name, Auth: tpm2.PasswordAuth(nil)},
			SignHandle:     tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_Certify: %w", err)
		}
		cert = &Certification{
			KeyPublic: tpm2.Marshal(k.public),
			AKPublic:  tpm2.Marshal(*akPub),
			Attest:    rsp.CertifyInfo.Bytes(),
			Signature: tpm2.Marshal(rsp.Signature),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: certifying key: %w", k.conn.Addr(), err)
	}
	return cert, nil
}

// Verify checks the certification and returns the certified SM2 public
// key: the attestation key is a restricted fixed-TPM ECDSA P-256 key, its
// signature over Attest verifies, Attest is a TPM-generated certify
// statement carrying nonce and naming the object whose public area is
// KeyPublic, and that object is a fixed-TPM SM2 signing key. Whether the
// attestation key belongs to a TPM the verifier trusts is the verifier's
// business: compare AKPublic with the one recorded at enrolment.
func (c *Certification) Verify(nonce []byte) (*gm.PublicKey, error) {
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](c.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: attestation key: %v", ErrAttestation, err)
	}
	ak, err := ecdsaKey(akPub)
	if err != nil {
		return nil, err
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](c.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrAttestation, err)
	}
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("%w: signature algorithm 0x%04x", ErrAttestation, uint16(sig.SigAlg))
	}
	es, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	if es.Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: signature hash 0x%04x", ErrAttestation, uint16(es.Hash))
	}
	digest := sha256.Sum256(c.Attest)
	r := new(big.Int).SetBytes(es.SignatureR.Buffer)
	s := new(big.Int).SetBytes(es.SignatureS.Buffer)
	if !ecdsa.Verify(ak, digest[:], r, s) {
		return nil, fmt.Errorf("%w: attestation key's signature is invalid", ErrAttestation)
	}
	attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](c.Attest)
	if err != nil {
		return nil, fmt.Errorf("%w: TPMS_ATTEST: %v", ErrAttestation, err)
	}
	if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestCertify {
		return nil, fmt.Errorf("%w: not a TPM-generated certify statement", ErrAttestation)
	}
	if !bytes.Equal(attest.ExtraData.Buffer, nonce) {
		return nil, fmt.Errorf("%w: nonce differs", ErrAttestation)
	}
	info, err := attest.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	keyPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](c.KeyPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: key public area: %v", ErrAttestation, err)
	}
	name, err := tpm2.ObjectName(keyPub)
	if err != nil {
		return nil, fmt.Errorf("%w: key name: %v", ErrAttestation, err)
	}
	if !bytes.Equal(name.Buffer, info.Name.Buffer) {
		return nil, fmt.Errorf("%w: certified name is not the key's", ErrAttestation)
	}
	if !keyPub.ObjectAttributes.FixedTPM || !keyPub.ObjectAttributes.SensitiveDataOrigin {
		return nil, fmt.Errorf("%w: key is not generated in and fixed to the TPM", ErrAttestation)
	}
	pub, err := SM2PublicKey(keyPub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	return pub, nil
}

func ecdsaKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || !a.Restricted || !a.SignEncrypt || !a.FixedTPM || a.Decrypt {
		return nil, fmt.Errorf("%w: attestation key is not a restricted fixed-TPM ECC signing key", ErrAttestation)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: attestation key is not on P-256", ErrAttestation)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	if len(point.X.Buffer) > 32 || len(point.Y.Buffer) > 32 {
		return nil, fmt.Errorf("%w: attestation key coordinate longer than 32 bytes", ErrAttestation)
	}
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[33-len(point.X.Buffer):33], point.X.Buffer)
	copy(raw[65-len(point.Y.Buffer):], point.Y.Buffer)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: attestation key point: %v", ErrAttestation, err)
	}
	return key, nil
}

// AKPublic returns the TPMT_PUBLIC of the TPM's attestation key, for
// enrolment to record.
func AKPublic(ctx context.Context, c *Conn) ([]byte, error) {
	var out []byte
	err := c.Do(ctx, func(t transport.TPM) error {
		ak, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(akTemplate())}.Execute(t)
		if err != nil {
			return fmt.Errorf("creating attestation key: %w", err)
		}
		defer flush(t, ak.ObjectHandle)
		pub, err := ak.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		out = tpm2.Marshal(*pub)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: %w", c.Addr(), err)
	}
	return out, nil
}
