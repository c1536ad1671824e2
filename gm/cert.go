package gm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// ErrCertificate is returned for certificates that are malformed or not
// SM2-with-SM3 over an SM2 key.
var ErrCertificate = errors.New("gm: invalid SM2 certificate")

// CertificateTemplate lists the fields Hallmark sets when issuing an
// SM2-with-SM3 X.509 certificate.
type CertificateTemplate struct {
	SerialNumber    *big.Int // nil: a random 127-bit serial
	Subject         pkix.Name
	NotBefore       time.Time
	NotAfter        time.Time
	IsCA            bool
	MaxPathLen      int // for CAs: -1 means unlimited, 0 means no intermediates below
	KeyUsage        x509.KeyUsage
	ExtKeyUsage     []x509.ExtKeyUsage
	DNSNames        []string
	IPAddresses     []net.IP
	ExtraExtensions []pkix.Extension
}

// Certificate is a parsed SM2-with-SM3 X.509 certificate. It is immutable.
type Certificate struct {
	c   *smx509.Certificate
	pub *PublicKey
}

// CreateCertificate issues a certificate for subjectKey, signed by signer.
// With a nil issuer the certificate is self-signed, and signer's public key
// must equal subjectKey.
func CreateCertificate(ctx context.Context, tmpl *CertificateTemplate, subjectKey *PublicKey, issuer *Certificate, signer Signer) (*Certificate, error) {
	if tmpl == nil || subjectKey == nil || signer == nil {
		return nil, errors.New("gm: CreateCertificate needs a template, a subject key and a signer")
	}
	if !tmpl.NotAfter.After(tmpl.NotBefore) {
		return nil, fmt.Errorf("gm: certificate validity: NotAfter %v is not after NotBefore %v", tmpl.NotAfter, tmpl.NotBefore)
	}
	serial := tmpl.SerialNumber
	if serial == nil {
		var err error
		serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, fmt.Errorf("gm: certificate serial: %w", err)
		}
	}
	t := &smx509.Certificate{
		SerialNumber:          serial,
		Subject:               tmpl.Subject,
		NotBefore:             tmpl.NotBefore,
		NotAfter:              tmpl.NotAfter,
		IsCA:                  tmpl.IsCA,
		BasicConstraintsValid: true,
		KeyUsage:              smx509.KeyUsage(tmpl.KeyUsage),
		DNSNames:              tmpl.DNSNames,
		IPAddresses:           tmpl.IPAddresses,
		ExtraExtensions:       tmpl.ExtraExtensions,
		SignatureAlgorithm:    smx509.SM2WithSM3,
	}
	if tmpl.IsCA {
		switch {
		case tmpl.MaxPathLen < 0:
			t.MaxPathLen = -1
		case tmpl.MaxPathLen == 0:
			t.MaxPathLenZero = true
		default:
			t.MaxPathLen = tmpl.MaxPathLen
		}
	}
	for _, u := range tmpl.ExtKeyUsage {
		t.ExtKeyUsage = append(t.ExtKeyUsage, smx509.ExtKeyUsage(u))
	}
	parent := t
	if issuer != nil {
		parent = issuer.c
	} else if !signer.PublicKey().Equal(subjectKey) {
		return nil, errors.New("gm: a self-signed certificate must be signed by the subject's own key")
	}
	der, err := smx509.CreateCertificate(rand.Reader, t, parent, subjectKey.ECDSA(), &cryptoSigner{ctx: ctx, s: signer})
	if err != nil {
		return nil, fmt.Errorf("gm: create certificate: %w", err)
	}
	return ParseCertificate(der)
}

// ParseCertificate parses one DER certificate. It must carry an SM2 public
// key and an SM2-with-SM3 signature.
func ParseCertificate(der []byte) (*Certificate, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if c.SignatureAlgorithm != smx509.SM2WithSM3 {
		return nil, fmt.Errorf("%w: signature algorithm %v, want SM2-with-SM3", ErrCertificate, c.SignatureAlgorithm)
	}
	ek, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(ek) {
		return nil, fmt.Errorf("%w: subject key is not an SM2 key", ErrCertificate)
	}
	pub, err := newPublicKey(ek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	return &Certificate{c: c, pub: pub}, nil
}

// ParseCertificatesPEM parses every CERTIFICATE block in data.
func ParseCertificatesPEM(data []byte) ([]*Certificate, error) {
	var out []*Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block in PEM input", ErrCertificate)
	}
	return out, nil
}

// Raw returns the DER encoding.
func (c *Certificate) Raw() []byte { return append([]byte(nil), c.c.Raw...) }

// PEM returns the certificate as a PEM block.
func (c *Certificate) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.c.Raw})
}

// PublicKey returns the subject's SM2 key.
func (c *Certificate) PublicKey() *PublicKey { return c.pub }

// Subject returns the subject name.
func (c *Certificate) Subject() pkix.Name { return c.c.Subject }

// Issuer returns the issuer name.
func (c *Certificate) Issuer() pkix.Name { return c.c.Issuer }

// SerialNumber returns the serial number.
func (c *Certificate) SerialNumber() *big.Int { return new(big.Int).Set(c.c.SerialNumber) }

// NotBefore returns the start of validity.
func (c *Certificate) NotBefore() time.Time { return c.c.NotBefore }

// NotAfter returns the end of validity.
func (c *Certificate) NotAfter() time.Time { return c.c.NotAfter }

// IsCA reports whether the certificate may issue others.
func (c *Certificate) IsCA() bool { return c.c.BasicConstraintsValid && c.c.IsCA }

// Extensions returns all extensions as parsed.
func (c *Certificate) Extensions() []pkix.Extension { return c.c.Extensions }

// Fingerprint returns SM3 of the DER encoding.
func (c *Certificate) Fingerprint() Digest { return SM3(c.c.Raw) }

// CheckSignatureFrom verifies that parent signed c.
func (c *Certificate) CheckSignatureFrom(parent *Certificate) error {
	if err := c.c.CheckSignatureFrom(parent.c); err != nil {
		return fmt.Errorf("gm: certificate %q not signed by %q: %w", c.c.Subject.CommonName, parent.c.Subject.CommonName, err)
	}
	return nil
}

// VerifyChain builds a chain from leaf through intermediates to one of
// roots, valid at the given time, and returns it leaf first.
func VerifyChain(leaf *Certificate, intermediates, roots []*Certificate, at time.Time) ([]*Certificate, error) {
	if leaf == nil || len(roots) == 0 {
		return nil, errors.New("gm: VerifyChain needs a leaf and at least one root")
	}
	rootPool := smx509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r.c)
	}
	interPool := smx509.NewCertPool()
	for _, i := range intermediates {
		interPool.AddCert(i.c)
	}
	chains, err := leaf.c.Verify(smx509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   at,
		KeyUsages:     []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("gm: certificate chain for %q: %w", leaf.c.Subject.CommonName, err)
	}
	out := make([]*Certificate, 0, len(chains[0]))
	for _, c := range chains[0] {
		wrapped, err := ParseCertificate(c.Raw)
		if err != nil {
			return nil, err
		}
		out = append(out, wrapped)
	}
	return out, nil
}

// CertificateRequest is a parsed, signature-checked SM2 certificate request.
type CertificateRequest struct {
	Subject    pkix.Name
	PublicKey  *PublicKey
	Extensions []pkix.Extension
	Raw        []byte
}

// CreateCertificateRequest makes a PKCS#10 request for signer's key,
// carrying the given extensions (for example a key attestation).
func CreateCertificateRequest(ctx context.Context, subject pkix.Name, exts []pkix.Extension, signer Signer) ([]byte, error) {
	t := &smx509.CertificateRequest{
		Subject:            subject,
		ExtraExtensions:    exts,
		SignatureAlgorithm: smx509.SM2WithSM3,
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, t, &cryptoSigner{ctx: ctx, s: signer})
	if err != nil {
		return nil, fmt.Errorf("gm: create certificate request: %w", err)
	}
	return der, nil
}

// ParseCertificateRequest parses a DER request and checks its signature.
func ParseCertificateRequest(der []byte) (*CertificateRequest, error) {
	r, err := smx509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrCertificate, err)
	}
	if r.SignatureAlgorithm != smx509.SM2WithSM3 {
		return nil, fmt.Errorf("%w: request signature algorithm %v, want SM2-with-SM3", ErrCertificate, r.SignatureAlgorithm)
	}
	ek, ok := r.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: request key is not an SM2 key", ErrCertificate)
	}
	pub, err := newPublicKey(ek)
	if err != nil {
		return nil, err
	}
	if err := r.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: request signature: %v", ErrCertificate, err)
	}
	return &CertificateRequest{Subject: r.Subject, PublicKey: pub, Extensions: r.Extensions, Raw: append([]byte(nil), der...)}, nil
}

// cryptoSigner adapts a Signer to crypto.Signer and crypto.MessageSigner,
// so certificate code can sign with keys that never leave their hardware.
type cryptoSigner struct {
	ctx context.Context
	s   Signer
}

func (c *cryptoSigner) Public() crypto.PublicKey { return c.s.PublicKey().ECDSA() }

// SignMessage signs the raw message; the library passes the SM2 options
// asking for Z_A to be computed with the default user id.
func (c *cryptoSigner) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	sig, err := c.s.Sign(c.ctx, msg)
	if err != nil {
		return nil, err
	}
	return sig.DER()
}

// Sign is never the path SM2 certificate code takes (it prefers
// SignMessage); it refuses rather than sign a digest of unknown form.
func (c *cryptoSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("gm: SM2 signer signs messages, not pre-hashed digests")
}
