package provisioning

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
)

// GenesisFileVersion is the only genesis file version this build reads.
const GenesisFileVersion = 1

// genesisFileDomain tags what founding administrators sign: this tag
// followed by the digest of the genesis body.
const genesisFileDomain = "hallmark/genesis-file/v1\x00"

// Limits on a genesis file.
const (
	MaxGenesisFileBytes = 16 << 20
	MaxOrganisations    = 64
)

// ErrGenesis wraps every reason a genesis file is refused.
var ErrGenesis = errors.New("genesis")

// Organisation is a founding member institution and the root of its
// certificate authority: the SM2 X.509 certificate that every node and
// kiosk certificate of the organisation chains to.
type Organisation struct {
	Name   string `cbor:"1,keyasint" json:"name"`
	RootCA []byte `cbor:"2,keyasint" json:"rootCa"` // DER
}

// ValidatorEvidence is what the ceremony knows about one initial
// validator beyond its PeerConfig: the certificate its organisation's CA
// issued for its key, and the TPM's attestation that the key lives there.
type ValidatorEvidence struct {
	PeerID      gm.KeyID     `cbor:"1,keyasint" json:"peerId"`
	Certificate []byte       `cbor:"2,keyasint,omitempty" json:"certificate,omitempty"`
	Attestation *Attestation `cbor:"3,keyasint,omitempty" json:"attestation,omitempty"`
}

// GenesisBody is what the founding administrators approve: the genesis
// document every node derives its initial state from, the organisations
// with their root certificates, and the evidence about the validators.
type GenesisBody struct {
	Doc           app.GenesisDoc      `cbor:"1,keyasint" json:"doc"`
	Organisations []Organisation      `cbor:"2,keyasint" json:"organisations"`
	Validators    []ValidatorEvidence `cbor:"3,keyasint,omitempty" json:"validatorEvidence,omitempty"`
}

// Approval is one founding administrator's SM2 signature over
// "hallmark/genesis-file/v1\x00" ‖ SM3(canonical body).
type Approval struct {
	PublicKey ledger.PublicKeyBytes `cbor:"1,keyasint" json:"publicKey"`
	Signature gm.Signature          `cbor:"2,keyasint" json:"signature"`
}

// GenesisFile is the genesis ceremony's product and what every node reads:
// the body and the administrators' approvals, sorted by public key. Until
// the approvals reach the governance threshold it is a draft; a node
// refuses it.
type GenesisFile struct {
	Version   uint16      `cbor:"1,keyasint" json:"version"`
	Body      GenesisBody `cbor:"2,keyasint" json:"body"`
	Approvals []Approval  `cbor:"3,keyasint,omitempty" json:"approvals,omitempty"`
}

// NewGenesis starts a draft for chainID at time t with the default
// parameters and no validators, accounts or organisations.
func NewGenesis(chainID string, t time.Time) (*GenesisFile, error) {
	if len(chainID) == 0 || len(chainID) > ledger.MaxChainIDLen || !utf8.ValidString(chainID) {
		return nil, fmt.Errorf("%w: chain id must be UTF-8 of 1 to %d bytes", ErrGenesis, ledger.MaxChainIDLen)
	}
	if t.UnixMilli() <= 0 {
		return nil, fmt.Errorf("%w: genesis time must be after 1970", ErrGenesis)
	}
	return &GenesisFile{Version: GenesisFileVersion, Body: GenesisBody{Doc: app.GenesisDoc{
		Version: app.GenesisVersion, ChainID: chainID, Time: t.UnixMilli(), Params: ledger.DefaultParams(),
	}}}, nil
}

// Encode returns the file's canonical CBOR.
func (g *GenesisFile) Encode() ([]byte, error) { return ledger.Marshal(g) }

// DecodeGenesisFile strictly decodes a genesis file (draft or approved).
// It checks the encoding only; Check and Verify check the content.
func DecodeGenesisFile(b []byte) (*GenesisFile, error) {
	if len(b) > MaxGenesisFileBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrGenesis, len(b), MaxGenesisFileBytes)
	}
	var g GenesisFile
	if err := ledger.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("%w: not a genesis file: %v", ErrGenesis, err)
	}
	if g.Version != GenesisFileVersion {
		return nil, fmt.Errorf("%w: file version %d, this build reads %d", ErrGenesis, g.Version, GenesisFileVersion)
	}
	return &g, nil
}

// Digest returns SM3 of the body's canonical encoding: what the
// administrators approve. Compare it out of band before signing.
func (g *GenesisFile) Digest() (gm.Digest, error) {
	enc, err := ledger.Marshal(&g.Body)
	if err != nil {
		return gm.Digest{}, err
	}
	return gm.SM3(enc), nil
}

// GenesisSignBytes returns the message an administrator signs for the
// body digest d.
func GenesisSignBytes(d gm.Digest) []byte {
	return append([]byte(genesisFileDomain), d[:]...)
}

// CheckOptions say how strictly a genesis is checked.
type CheckOptions struct {
	// RequireAttestation refuses validators without a verified TPM
	// attestation (production nodes set it).
	RequireAttestation bool
}

// Check validates the body: the genesis document (app.GenesisDoc.Validate,
// which includes at least as many administrators as the threshold), the
// organisations (unique names, self-signed SM2 CA certificates valid at
// the genesis time), that each validator belongs to a listed
// organisation, its evidence (a certificate for its key chaining to its
// organisation's root, an attestation of its key bound to this chain),
// and that account certificates chain to an organisation's root.
func (g *GenesisFile) Check(o CheckOptions) error {
	b := &g.Body
	doc := &b.Doc
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrGenesis, err)
	}
	at := time.UnixMilli(doc.Time)
	roots, err := b.roots(at)
	if err != nil {
		return err
	}
	evidence := map[gm.KeyID]*ValidatorEvidence{}
	for i := range b.Validators {
		e := &b.Validators[i]
		if _, dup := evidence[e.PeerID]; dup {
			return fmt.Errorf("%w: evidence for validator %s listed twice", ErrGenesis, e.PeerID)
		}
		evidence[e.PeerID] = e
	}
	known := map[gm.KeyID]bool{}
	for i := range doc.Validators {
		p := &doc.Validators[i]
		known[p.PeerID] = true
		if err := checkValidator(doc.ChainID, p, evidence[p.PeerID], roots, at, o); err != nil {
			return err
		}
	}
	for id := range evidence {
		if !known[id] {
			return fmt.Errorf("%w: evidence for %s, which is not a validator", ErrGenesis, id)
		}
	}
	all := allRoots(roots)
	for i, a := range doc.Accounts {
		if len(a.Certificate) == 0 {
			continue
		}
		if _, err := verifyChain(a.Certificate, all, at); err != nil {
			return fmt.Errorf("%w: account %d (%s): %v", ErrGenesis, i, a.Institution, err)
		}
	}
	return nil
}

// roots parses and checks the organisations' root certificates.
func (b *GenesisBody) roots(at time.Time) (map[string]*gm.Certificate, error) {
	if len(b.Organisations) == 0 {
		return nil, fmt.Errorf("%w: no organisation: add the founding organisations and their root CA certificates", ErrGenesis)
	}
	if len(b.Organisations) > MaxOrganisations {
		return nil, fmt.Errorf("%w: %d organisations exceed %d", ErrGenesis, len(b.Organisations), MaxOrganisations)
	}
	roots := map[string]*gm.Certificate{}
	for _, org := range b.Organisations {
		if _, dup := roots[org.Name]; dup {
			return nil, fmt.Errorf("%w: organisation %q listed twice", ErrGenesis, org.Name)
		}
		c, err := checkOrganisation(org, at)
		if err != nil {
			return nil, err
		}
		roots[org.Name] = c
	}
	return roots, nil
}

func allRoots(m map[string]*gm.Certificate) []*gm.Certificate {
	out := make([]*gm.Certificate, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

// checkOrganisation checks an organisation entry: a name, and a
// self-signed SM2 CA certificate valid at the given time.
func checkOrganisation(org Organisation, at time.Time) (*gm.Certificate, error) {
	if len(org.Name) == 0 || len(org.Name) > ledger.MaxInstitutionLen || !utf8.ValidString(org.Name) {
		return nil, fmt.Errorf("%w: organisation name must be UTF-8 of 1 to %d bytes", ErrGenesis, ledger.MaxInstitutionLen)
	}
	if len(org.RootCA) == 0 || len(org.RootCA) > ledger.MaxCertBytes {
		return nil, fmt.Errorf("%w: organisation %q: root certificate missing or over %d bytes", ErrGenesis, org.Name, ledger.MaxCertBytes)
	}
	c, err := gm.ParseCertificate(org.RootCA)
	if err != nil {
		return nil, fmt.Errorf("%w: organisation %q: root certificate: %v", ErrGenesis, org.Name, err)
	}
	if !c.IsCA() {
		return nil, fmt.Errorf("%w: organisation %q: the root certificate is not a CA certificate", ErrGenesis, org.Name)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return nil, fmt.Errorf("%w: organisation %q: the root certificate is not self-signed: %v", ErrGenesis, org.Name, err)
	}
	if at.Before(c.NotBefore()) || at.After(c.NotAfter()) {
		return nil, fmt.Errorf("%w: organisation %q: the root certificate is valid %s to %s, not at the genesis time %s", ErrGenesis,
			org.Name, c.NotBefore().UTC().Format(time.RFC3339), c.NotAfter().UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	return c, nil
}

func checkValidator(chainID string, p *ledger.PeerConfig, e *ValidatorEvidence, roots map[string]*gm.Certificate, at time.Time, o CheckOptions) error {
	root, ok := roots[p.Organisation]
	if !ok {
		return fmt.Errorf("%w: validator %s: organisation %q is not a founding organisation", ErrGenesis, p.PeerID, p.Organisation)
	}
	key, err := p.PublicKey.Parse()
	if err != nil {
		return fmt.Errorf("%w: validator %s: %v", ErrGenesis, p.PeerID, err)
	}
	if e == nil || e.Attestation == nil {
		if o.RequireAttestation {
			return fmt.Errorf("%w: validator %s has no TPM attestation of its key (required for a production node)", ErrGenesis, p.PeerID)
		}
	} else if err := e.Attestation.Verify(key, AttestationNonce(chainID, p.PublicKey)); err != nil {
		return fmt.Errorf("%w: validator %s: %v", ErrGenesis, p.PeerID, err)
	}
	if e != nil && len(e.Certificate) > 0 {
		id, err := VerifyIdentity(e.Certificate, []*gm.Certificate{root}, KindNode, p.PublicKey, at)
		if err != nil {
			return fmt.Errorf("%w: validator %s: %v", ErrGenesis, p.PeerID, err)
		}
		if id.ChainID != chainID {
			return fmt.Errorf("%w: validator %s: its certificate is for chain %q", ErrGenesis, p.PeerID, id.ChainID)
		}
		if id.Organisation != p.Organisation {
			return fmt.Errorf("%w: validator %s: its certificate names organisation %q, its entry %q", ErrGenesis, p.PeerID, id.Organisation, p.Organisation)
		}
	}
	return nil
}

// Quorum describes the approvals of a genesis file.
type Quorum struct {
	Threshold int
	// Signed and Missing are the administrators' keys that approved the
	// current body, and those that have not.
	Signed, Missing []ledger.PublicKeyBytes
}

// Reached reports whether the approvals reach the threshold.
func (q Quorum) Reached() bool { return len(q.Signed) >= q.Threshold }

// admins returns the keys of the genesis accounts with the admin role.
func (b *GenesisBody) admins() map[ledger.PublicKeyBytes]string {
	out := map[ledger.PublicKeyBytes]string{}
	for _, a := range b.Doc.Accounts {
		if a.Roles.Has(ledger.RoleAdmin) {
			out[a.PublicKey] = a.Institution
		}
	}
	return out
}

// CheckApprovals verifies the approvals against the current body and
// returns who signed and who has not.
func (g *GenesisFile) CheckApprovals() (Quorum, error) {
	q := Quorum{Threshold: int(g.Body.Doc.Params.GovThreshold)}
	d, err := g.Digest()
	if err != nil {
		return q, fmt.Errorf("%w: %v", ErrGenesis, err)
	}
	msg := GenesisSignBytes(d)
	admins := g.Body.admins()
	seen := map[ledger.PublicKeyBytes]bool{}
	for i, a := range g.Approvals {
		if i > 0 && bytes.Compare(g.Approvals[i-1].PublicKey[:], a.PublicKey[:]) >= 0 {
			return q, fmt.Errorf("%w: approvals are not sorted by key, or one is repeated", ErrGenesis)
		}
		if _, ok := admins[a.PublicKey]; !ok {
			return q, fmt.Errorf("%w: approval by %s, which is not a founding administrator's key", ErrGenesis, a.PublicKey.ID())
		}
		key, err := a.PublicKey.Parse()
		if err != nil {
			return q, fmt.Errorf("%w: approval by %s: %v", ErrGenesis, a.PublicKey.ID(), err)
		}
		if !key.Verify(msg, a.Signature) {
			return q, fmt.Errorf("%w: the approval by %s does not verify over this body (digest %s): was the file changed after it was signed?", ErrGenesis, a.PublicKey.ID(), d)
		}
		seen[a.PublicKey] = true
		q.Signed = append(q.Signed, a.PublicKey)
	}
	for k := range admins {
		if !seen[k] {
			q.Missing = append(q.Missing, k)
		}
	}
	slices.SortFunc(q.Missing, func(a, b ledger.PublicKeyBytes) int { return bytes.Compare(a[:], b[:]) })
	return q, nil
}

// Verify is what a node does with its genesis file: the body checks, the
// approvals, and that they reach the governance threshold. It returns the
// genesis document.
func (g *GenesisFile) Verify(o CheckOptions) (*app.GenesisDoc, error) {
	if err := g.Check(o); err != nil {
		return nil, err
	}
	q, err := g.CheckApprovals()
	if err != nil {
		return nil, err
	}
	if !q.Reached() {
		return nil, fmt.Errorf("%w: %d of the %d founding administrator approvals the governance threshold needs (not yet signed: %s)",
			ErrGenesis, len(q.Signed), q.Threshold, keyList(q.Missing))
	}
	doc := g.Body.Doc
	return &doc, nil
}

func keyList(keys []ledger.PublicKeyBytes) string {
	if len(keys) == 0 {
		return "none"
	}
	var s []string
	for _, k := range keys {
		s = append(s, k.ID().String())
	}
	return strings.Join(s, ", ")
}

// Sign adds signer's approval of the current body, after checking the
// body (a signature over an invalid genesis would be worthless) and that
// signer is a founding administrator who has not approved it yet.
func (g *GenesisFile) Sign(ctx context.Context, signer gm.Signer, o CheckOptions) error {
	if err := g.Check(o); err != nil {
		return err
	}
	if _, err := g.CheckApprovals(); err != nil {
		return err
	}
	pk := ledger.KeyBytes(signer.PublicKey())
	if _, ok := g.Body.admins()[pk]; !ok {
		return fmt.Errorf("%w: key %s is not a founding administrator's: add it with the admin role first", ErrGenesis, pk.ID())
	}
	i, found := slices.BinarySearchFunc(g.Approvals, pk, func(a Approval, k ledger.PublicKeyBytes) int { return bytes.Compare(a.PublicKey[:], k[:]) })
	if found {
		return fmt.Errorf("%w: administrator %s has already approved this body", ErrGenesis, pk.ID())
	}
	d, err := g.Digest()
	if err != nil {
		return err
	}
	sig, err := signer.Sign(ctx, GenesisSignBytes(d))
	if err != nil {
		return fmt.Errorf("provisioning: signing the genesis: %w", err)
	}
	if !signer.PublicKey().Verify(GenesisSignBytes(d), sig) {
		return fmt.Errorf("provisioning: the key's signature over the genesis does not verify")
	}
	g.Approvals = slices.Insert(g.Approvals, i, Approval{PublicKey: pk, Signature: sig})
	return nil
}

// changed drops the approvals after a change to the body (they were over
// the old one) and returns how many were dropped.
func (g *GenesisFile) changed() int {
	n := len(g.Approvals)
	g.Approvals = nil
	return n
}

// AddOrganisation adds a founding organisation with its root CA
// certificate (DER). It returns the number of approvals the change
// dropped.
func (g *GenesisFile) AddOrganisation(name string, rootDER []byte) (int, error) {
	org := Organisation{Name: name, RootCA: rootDER}
	if _, err := checkOrganisation(org, time.UnixMilli(g.Body.Doc.Time)); err != nil {
		return 0, err
	}
	for _, o := range g.Body.Organisations {
		if o.Name == name {
			return 0, fmt.Errorf("%w: organisation %q is already listed", ErrGenesis, name)
		}
		if bytes.Equal(o.RootCA, rootDER) {
			return 0, fmt.Errorf("%w: this root certificate is already organisation %q's", ErrGenesis, o.Name)
		}
	}
	if len(g.Body.Organisations) >= MaxOrganisations {
		return 0, fmt.Errorf("%w: at most %d organisations", ErrGenesis, MaxOrganisations)
	}
	g.Body.Organisations = append(g.Body.Organisations, org)
	return g.changed(), nil
}

// AddValidator adds an initial validator with its evidence. The peer's
// organisation must be listed; the attestation (required unless
// o.RequireAttestation is false) must certify its key for this chain; a
// certificate, if given, must be its organisation's for that key.
func (g *GenesisFile) AddValidator(p ledger.PeerConfig, certDER []byte, att *Attestation, o CheckOptions) (int, error) {
	doc := &g.Body.Doc
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("%w: validator: %v", ErrGenesis, err)
	}
	for _, v := range doc.Validators {
		if v.PeerID == p.PeerID {
			return 0, fmt.Errorf("%w: validator %s is already listed", ErrGenesis, p.PeerID)
		}
		if v.Address == p.Address {
			return 0, fmt.Errorf("%w: address %s is already validator %s's", ErrGenesis, p.Address, v.PeerID)
		}
	}
	at := time.UnixMilli(doc.Time)
	roots, err := g.Body.roots(at)
	if err != nil {
		return 0, err
	}
	var e *ValidatorEvidence
	if att != nil || len(certDER) > 0 {
		e = &ValidatorEvidence{PeerID: p.PeerID, Certificate: certDER, Attestation: att}
	}
	if err := checkValidator(doc.ChainID, &p, e, roots, at, o); err != nil {
		return 0, err
	}
	doc.Validators = append(doc.Validators, p)
	if e != nil {
		g.Body.Validators = append(g.Body.Validators, *e)
	}
	return g.changed(), nil
}

// AddAccount adds an initial account (an administrator with the admin
// role). It is checked as account.register would check it, and a
// certificate must chain to a founding organisation's root.
func (g *GenesisFile) AddAccount(a app.GenesisAccount) (int, error) {
	reg := txs.AccountRegister{PublicKey: a.PublicKey, Institution: a.Institution, Certificate: a.Certificate, Roles: a.Roles}
	if err := reg.Validate(); err != nil {
		return 0, fmt.Errorf("%w: account: %v", ErrGenesis, err)
	}
	for _, x := range g.Body.Doc.Accounts {
		if x.PublicKey == a.PublicKey {
			return 0, fmt.Errorf("%w: key %s already has an account", ErrGenesis, a.PublicKey.ID())
		}
	}
	if len(a.Certificate) > 0 {
		roots, err := g.Body.roots(time.UnixMilli(g.Body.Doc.Time))
		if err != nil {
			return 0, err
		}
		if _, err := verifyChain(a.Certificate, allRoots(roots), time.UnixMilli(g.Body.Doc.Time)); err != nil {
			return 0, fmt.Errorf("%w: account certificate: %v", ErrGenesis, err)
		}
	}
	g.Body.Doc.Accounts = append(g.Body.Doc.Accounts, a)
	return g.changed(), nil
}

// SetParams replaces the chain parameters (the governance threshold M
// among them).
func (g *GenesisFile) SetParams(p ledger.Params) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("%w: parameters: %v", ErrGenesis, err)
	}
	g.Body.Doc.Params = p
	return g.changed(), nil
}

// SetFilter replaces the content-filter rules.
func (g *GenesisFile) SetFilter(r txs.FilterRules) (int, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("%w: filter rules: %v", ErrGenesis, err)
	}
	g.Body.Doc.Filter = r
	return g.changed(), nil
}

// SetTime replaces the genesis time (the first block must be later).
func (g *GenesisFile) SetTime(t time.Time) (int, error) {
	if t.UnixMilli() <= 0 {
		return 0, fmt.Errorf("%w: genesis time must be after 1970", ErrGenesis)
	}
	g.Body.Doc.Time = t.UnixMilli()
	return g.changed(), nil
}

// RootCAs returns the organisations' root certificates by name.
func (g *GenesisFile) RootCAs() (map[string]*gm.Certificate, error) {
	return g.Body.roots(time.UnixMilli(g.Body.Doc.Time))
}
