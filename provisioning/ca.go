package provisioning

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger"
)

// Kind is what an identity certificate is for.
type Kind string

// Identity kinds.
const (
	KindNode  Kind = "node"  // an appliance's identity and validator key (TPM)
	KindKiosk Kind = "kiosk" // a kiosk's account key
)

func (k Kind) valid() bool { return k == KindNode || k == KindKiosk }

// Certificate extensions Hallmark defines. Hallmark has no registered
// enterprise number, so they sit under the ITU-T/ISO example arc (2.999),
// beside the peer transport binding (2.999.1212.1.1); only Hallmark
// reads them.
var (
	// OIDAttestation carries the canonical CBOR of an [Attestation] of the
	// request's (and certificate's) key.
	OIDAttestation = asn1.ObjectIdentifier{2, 999, 1212, 2, 1}
	// OIDIdentity carries the canonical CBOR of an [identityExt]: the kind
	// of identity and the chain it is for.
	OIDIdentity = asn1.ObjectIdentifier{2, 999, 1212, 2, 2}
)

// identityExt is the OIDIdentity extension's value.
type identityExt struct {
	Kind    Kind   `cbor:"1,keyasint"`
	ChainID string `cbor:"2,keyasint"`
}

// ErrCertificate wraps every refused request or certificate.
var ErrCertificate = errors.New("provisioning: certificate")

// NewRootCA makes an organisation's self-signed root certificate for key
// (which stays in custody: a TPM, an HSM, or for development a file).
func NewRootCA(ctx context.Context, key gm.Signer, org string, notBefore, notAfter time.Time) (*gm.Certificate, error) {
	if len(org) == 0 || len(org) > ledger.MaxInstitutionLen || !utf8.ValidString(org) {
		return nil, fmt.Errorf("%w: organisation name must be UTF-8 of 1 to %d bytes", ErrCertificate, ledger.MaxInstitutionLen)
	}
	return gm.CreateCertificate(ctx, &gm.CertificateTemplate{
		Subject:   pkix.Name{CommonName: org + " root CA", Organization: []string{org}},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, MaxPathLen: 0,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, key.PublicKey(), nil, key)
}

// RequestOptions describe a certificate request.
type RequestOptions struct {
	Kind         Kind
	Organisation string
	ChainID      string
	// CommonName defaults to "<kind> <short key id>".
	CommonName string
	// Attestation of the key, bound to the chain (AttestationNonce);
	// required for nodes.
	Attestation *Attestation
}

// CreateRequest makes a PKCS#10 request signed by the key it is for
// (proof of possession), carrying the identity kind and chain and, for a
// node, the TPM attestation of the key.
func CreateRequest(ctx context.Context, key gm.Signer, o RequestOptions) ([]byte, error) {
	if !o.Kind.valid() {
		return nil, fmt.Errorf("%w: kind %q (want node or kiosk)", ErrCertificate, o.Kind)
	}
	if o.Organisation == "" || o.ChainID == "" {
		return nil, fmt.Errorf("%w: the organisation and the chain id are required", ErrCertificate)
	}
	pk := ledger.KeyBytes(key.PublicKey())
	if o.Kind == KindNode {
		if o.Attestation == nil {
			return nil, fmt.Errorf("%w: a node request needs the TPM attestation of its key", ErrCertificate)
		}
		if err := o.Attestation.Verify(key.PublicKey(), AttestationNonce(o.ChainID, pk)); err != nil {
			return nil, err
		}
	}
	cn := o.CommonName
	if cn == "" {
		cn = fmt.Sprintf("%s %s", o.Kind, pk.ID().String()[:16])
	}
	exts, err := identityExtensions(o.Kind, o.ChainID, o.Attestation)
	if err != nil {
		return nil, err
	}
	return gm.CreateCertificateRequest(ctx, pkix.Name{CommonName: cn, Organization: []string{o.Organisation}}, exts, key)
}

func identityExtensions(kind Kind, chainID string, att *Attestation) ([]pkix.Extension, error) {
	id, err := ledger.Marshal(&identityExt{Kind: kind, ChainID: chainID})
	if err != nil {
		return nil, err
	}
	exts := []pkix.Extension{{Id: OIDIdentity, Value: id}}
	if att != nil {
		a, err := ledger.Marshal(att)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: OIDAttestation, Value: a})
	}
	return exts, nil
}

// Request is a parsed, checked certificate request.
type Request struct {
	Kind         Kind
	Organisation string
	ChainID      string
	CommonName   string
	Key          *gm.PublicKey
	// Attestation is set when the request carries one; it has been
	// verified for Key and the chain.
	Attestation *Attestation
	Raw         []byte
}

// ParseRequest parses a request and checks its signature (the key's proof
// of possession), its identity extension, and its attestation if any.
func ParseRequest(der []byte) (*Request, error) {
	csr, err := gm.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrCertificate, err)
	}
	r := &Request{Key: csr.PublicKey, CommonName: csr.Subject.CommonName, Raw: csr.Raw}
	if len(csr.Subject.Organization) != 1 {
		return nil, fmt.Errorf("%w: request must name exactly one organisation", ErrCertificate)
	}
	r.Organisation = csr.Subject.Organization[0]
	id, att, err := readExtensions(csr.Extensions)
	if err != nil {
		return nil, err
	}
	if id == nil {
		return nil, fmt.Errorf("%w: request lacks the Hallmark identity extension (make it with hallmarkctl enrol)", ErrCertificate)
	}
	r.Kind, r.ChainID = id.Kind, id.ChainID
	if att != nil {
		if err := att.Verify(r.Key, AttestationNonce(r.ChainID, ledger.KeyBytes(r.Key))); err != nil {
			return nil, err
		}
		r.Attestation = att
	}
	return r, nil
}

func readExtensions(exts []pkix.Extension) (*identityExt, *Attestation, error) {
	var id *identityExt
	var att *Attestation
	for _, e := range exts {
		switch {
		case e.Id.Equal(OIDIdentity):
			if id != nil {
				return nil, nil, fmt.Errorf("%w: identity extension twice", ErrCertificate)
			}
			id = new(identityExt)
			if err := ledger.Unmarshal(e.Value, id); err != nil {
				return nil, nil, fmt.Errorf("%w: identity extension: %v", ErrCertificate, err)
			}
			if !id.Kind.valid() || id.ChainID == "" || len(id.ChainID) > ledger.MaxChainIDLen {
				return nil, nil, fmt.Errorf("%w: identity extension: kind %q, chain %q", ErrCertificate, id.Kind, id.ChainID)
			}
		case e.Id.Equal(OIDAttestation):
			if att != nil {
				return nil, nil, fmt.Errorf("%w: attestation extension twice", ErrCertificate)
			}
			att = new(Attestation)
			if err := ledger.Unmarshal(e.Value, att); err != nil {
				return nil, nil, fmt.Errorf("%w: attestation extension: %v", ErrCertificate, err)
			}
		}
	}
	return id, att, nil
}

// IssueOptions shape an issued certificate.
type IssueOptions struct {
	NotBefore, NotAfter time.Time
	// AllowUnattested issues a node certificate for a request without a
	// TPM attestation (development only).
	AllowUnattested bool
	// ChainID, if set, must be the request's.
	ChainID string
}

// Issue has the organisation's CA (caKey, the key of caCert) certify the
// request's key. The request must be for the CA's organisation and, for a
// node, carry a verified attestation. The certificate keeps the identity
// and attestation extensions, so whoever later checks it (administrators
// approving gov.node-add) sees the TPM evidence too.
func Issue(ctx context.Context, caKey gm.Signer, caCert *gm.Certificate, req *Request, o IssueOptions) (*gm.Certificate, error) {
	if !caCert.IsCA() {
		return nil, fmt.Errorf("%w: the issuing certificate is not a CA certificate", ErrCertificate)
	}
	if !caCert.PublicKey().Equal(caKey.PublicKey()) {
		return nil, fmt.Errorf("%w: the CA key %s is not the key of the CA certificate (%s)", ErrCertificate, caKey.PublicKey().ID(), caCert.PublicKey().ID())
	}
	org := orgOf(caCert)
	if req.Organisation != org {
		return nil, fmt.Errorf("%w: the request is for organisation %q; this CA issues for %q", ErrCertificate, req.Organisation, org)
	}
	if o.ChainID != "" && req.ChainID != o.ChainID {
		return nil, fmt.Errorf("%w: the request is for chain %q, not %q", ErrCertificate, req.ChainID, o.ChainID)
	}
	if req.Kind == KindNode && req.Attestation == nil && !o.AllowUnattested {
		return nil, fmt.Errorf("%w: a node request must carry the TPM attestation of its key", ErrCertificate)
	}
	if !o.NotAfter.After(o.NotBefore) {
		return nil, fmt.Errorf("%w: validity ends before it starts", ErrCertificate)
	}
	if o.NotAfter.After(caCert.NotAfter()) {
		o.NotAfter = caCert.NotAfter()
	}
	exts, err := identityExtensions(req.Kind, req.ChainID, req.Attestation)
	if err != nil {
		return nil, err
	}
	return gm.CreateCertificate(ctx, &gm.CertificateTemplate{
		Subject:   pkix.Name{CommonName: req.CommonName, Organization: []string{org}},
		NotBefore: o.NotBefore, NotAfter: o.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: exts,
	}, req.Key, caCert, caKey)
}

func orgOf(c *gm.Certificate) string {
	if o := c.Subject().Organization; len(o) > 0 {
		return o[0]
	}
	return ""
}

// Identity is what a checked identity certificate says.
type Identity struct {
	Kind         Kind
	Organisation string
	ChainID      string
	Serial       *big.Int
	Key          ledger.PublicKeyBytes
	// Attested says the certificate carries a TPM attestation of the key,
	// verified for its chain; Attestation is that evidence.
	Attested    bool
	Attestation *Attestation
	Cert        *gm.Certificate
}

// VerifyIdentity checks an identity certificate: it certifies key (unless
// key is zero), chains to one of roots at time at, is of kind, and its
// attestation, if any, verifies.
func VerifyIdentity(der []byte, roots []*gm.Certificate, kind Kind, key ledger.PublicKeyBytes, at time.Time) (*Identity, error) {
	c, err := verifyChain(der, roots, at)
	if err != nil {
		return nil, err
	}
	pk := ledger.KeyBytes(c.PublicKey())
	if key != (ledger.PublicKeyBytes{}) && pk != key {
		return nil, fmt.Errorf("%w: the certificate is for key %s, not %s", ErrCertificate, pk.ID(), key.ID())
	}
	id, att, err := readExtensions(c.Extensions())
	if err != nil {
		return nil, err
	}
	if id == nil {
		return nil, fmt.Errorf("%w: the certificate lacks the Hallmark identity extension", ErrCertificate)
	}
	if id.Kind != kind {
		return nil, fmt.Errorf("%w: a %s certificate where a %s certificate is needed", ErrCertificate, id.Kind, kind)
	}
	out := &Identity{Kind: id.Kind, Organisation: orgOf(c), ChainID: id.ChainID, Serial: c.SerialNumber(), Key: pk, Cert: c}
	if att != nil {
		if err := att.Verify(c.PublicKey(), AttestationNonce(id.ChainID, pk)); err != nil {
			return nil, err
		}
		out.Attested, out.Attestation = true, att
	}
	return out, nil
}

// verifyChain parses a DER certificate and chains it to roots at time at.
func verifyChain(der []byte, roots []*gm.Certificate, at time.Time) (*gm.Certificate, error) {
	if len(der) > ledger.MaxCertBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrCertificate, len(der), ledger.MaxCertBytes)
	}
	c, err := gm.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no root to check it against", ErrCertificate)
	}
	if _, err := gm.VerifyChain(c, nil, roots, at); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	return c, nil
}
