package peer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

// BindingOID identifies the certificate extension that binds a transport
// key to a node's SM2 identity. Hallmark has no registered enterprise
// number, so it sits under the ITU-T/ISO example arc (2.999); it is only
// ever read by Hallmark nodes. docs/PROTOCOL.md gives its layout.
var BindingOID = asn1.ObjectIdentifier{2, 999, 1212, 1, 1}

// bindingDomain separates binding signatures from every other SM2
// signature the identity key makes.
const bindingDomain = "hallmark/peer-transport/v1\x00"

// bindingVersion is the only binding format version.
const bindingVersion = 1

// ErrBinding is returned for a peer certificate that does not carry a
// valid identity binding, or whose identity is not admitted.
var ErrBinding = errors.New("peer: invalid identity binding")

// bindingStatement is what the identity key signs.
type bindingStatement struct {
	Version  uint16                `cbor:"1,keyasint"`
	ChainID  string                `cbor:"2,keyasint"`
	Identity ledger.PublicKeyBytes `cbor:"3,keyasint"`
	// Transport is the DER SubjectPublicKeyInfo of the TLS key.
	Transport []byte `cbor:"4,keyasint"`
	// NotAfter is the certificate's expiry in ms since 1970 UTC.
	NotAfter int64 `cbor:"5,keyasint"`
}

// bindingExtension is the extension's value: canonical CBOR.
type bindingExtension struct {
	Statement bindingStatement `cbor:"1,keyasint"`
	Signature gm.Signature     `cbor:"2,keyasint"`
}

// maxBindingBytes bounds the extension before decoding.
const maxBindingBytes = 1024

func bindingSignBytes(st *bindingStatement) ([]byte, error) {
	body, err := ledger.Marshal(st)
	if err != nil {
		return nil, err
	}
	return append([]byte(bindingDomain), body...), nil
}

// signFunc signs a message with an identity key.
type signFunc func(ctx context.Context, msg []byte) (gm.Signature, error)

// newCertificate creates a fresh ECDSA P-256 transport key and a
// self-signed certificate for it, valid from notBefore to notAfter, whose
// binding extension names identity and is signed by sign.
func newCertificate(ctx context.Context, chainID string, identity *gm.PublicKey, sign signFunc, notBefore, notAfter time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("peer: transport key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("peer: transport key: %w", err)
	}
	// x509 keeps whole seconds.
	notBefore, notAfter = notBefore.Truncate(time.Second), notAfter.Truncate(time.Second)
	st := bindingStatement{
		Version:   bindingVersion,
		ChainID:   chainID,
		Identity:  ledger.KeyBytes(identity),
		Transport: spki,
		NotAfter:  notAfter.UnixMilli(),
	}
	msg, err := bindingSignBytes(&st)
	if err != nil {
		return nil, fmt.Errorf("peer: binding: %w", err)
	}
	sig, err := sign(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("peer: signing the transport binding: %w", err)
	}
	ext, err := ledger.Marshal(&bindingExtension{Statement: st, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("peer: binding: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "hallmark node " + identity.ID().String()[:16]},
		NotBefore:       notBefore,
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: BindingOID, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("peer: transport certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: crypto.Signer(key), Leaf: leaf}, nil
}

// verifyBinding checks a peer's certificate chain as TLS delivers it and
// returns the SM2 identity it is bound to. It does not consult the
// admitted set.
func verifyBinding(rawCerts [][]byte, chainID string, now time.Time) (*gm.PublicKey, error) {
	if len(rawCerts) != 1 {
		return nil, fmt.Errorf("%w: %d certificates, want one self-signed", ErrBinding, len(rawCerts))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBinding, err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("%w: not self-signed: %v", ErrBinding, err)
	}
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: transport key on %s, want P-256", ErrBinding, k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("%w: transport key of type %T", ErrBinding, cert.PublicKey)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: transport certificate valid %s to %s, now %s", ErrBinding,
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	var raw []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(BindingOID) {
			if raw != nil {
				return nil, fmt.Errorf("%w: two binding extensions", ErrBinding)
			}
			raw = e.Value
		}
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: no binding extension", ErrBinding)
	}
	if len(raw) > maxBindingBytes {
		return nil, fmt.Errorf("%w: extension of %d bytes", ErrBinding, len(raw))
	}
	var ext bindingExtension
	if err := ledger.Unmarshal(raw, &ext); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBinding, err)
	}
	st := &ext.Statement
	switch {
	case st.Version != bindingVersion:
		return nil, fmt.Errorf("%w: version %d", ErrBinding, st.Version)
	case st.ChainID != chainID:
		return nil, fmt.Errorf("%w: chain %q, want %q", ErrBinding, st.ChainID, chainID)
	case !bytes.Equal(st.Transport, cert.RawSubjectPublicKeyInfo):
		return nil, fmt.Errorf("%w: binding names another transport key", ErrBinding)
	case st.NotAfter != cert.NotAfter.UnixMilli():
		return nil, fmt.Errorf("%w: binding expiry differs from the certificate's", ErrBinding)
	}
	identity, err := st.Identity.Parse()
	if err != nil {
		return nil, fmt.Errorf("%w: identity: %v", ErrBinding, err)
	}
	msg, err := bindingSignBytes(st)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBinding, err)
	}
	if !identity.Verify(msg, ext.Signature) {
		return nil, fmt.Errorf("%w: identity signature does not verify", ErrBinding)
	}
	return identity, nil
}
