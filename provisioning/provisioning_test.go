package provisioning_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

const chain = "hallmark-ceremony"

// tpmKeys makes n SM2 keys inside one swtpm and returns them open (they
// share one connection, as a process must with swtpm).
func tpmKeys(t *testing.T, n int) []hsm.Signer {
	t.Helper()
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr(), RetryFor: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var out []hsm.Signer
	for range n {
		s, err := hsm.Generate(ctx, "tpm:handle=auto", hsm.Options{TPMConn: conn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

func softKey(t *testing.T) *gm.PrivateKey {
	t.Helper()
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func peer(k *gm.PublicKey, addr, org string) ledger.PeerConfig {
	pk := ledger.KeyBytes(k)
	return ledger.PeerConfig{ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: pk.ID(), Address: addr, PublicKey: pk, Organisation: org}
}

func wantErr(t *testing.T, err error, sub string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), sub) {
		t.Fatalf("got %v, want an error containing %q", err, sub)
	}
}

// An organisation: its CA key and root certificate.
type org struct {
	name string
	key  *gm.PrivateKey
	root *gm.Certificate
}

func newOrg(t *testing.T, name string, at time.Time) org {
	t.Helper()
	k := softKey(t)
	root, err := provisioning.NewRootCA(context.Background(), k, name, at.Add(-time.Hour), at.AddDate(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return org{name: name, key: k, root: root}
}

// nodeCert runs node enrolment's certificate steps for a TPM key.
func nodeCert(t *testing.T, o org, k hsm.Signer, chainID string, at time.Time) []byte {
	t.Helper()
	ctx := context.Background()
	att, err := provisioning.Attest(ctx, k, chainID)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := provisioning.CreateRequest(ctx, k, provisioning.RequestOptions{Kind: provisioning.KindNode, Organisation: o.name, ChainID: chainID, Attestation: att})
	if err != nil {
		t.Fatal(err)
	}
	req, err := provisioning.ParseRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := provisioning.Issue(ctx, o.key, o.root, req, provisioning.IssueOptions{NotBefore: at.Add(-time.Minute), NotAfter: at.AddDate(1, 0, 0), ChainID: chainID})
	if err != nil {
		t.Fatal(err)
	}
	return c.Raw()
}

// TestGenesisCeremony runs the genesis ceremony of two organisations with
// three founding administrators and a threshold of two, checking that each
// step refuses bad input and that only a quorum-approved file verifies.
func TestGenesisCeremony(t *testing.T) {
	ctx := context.Background()
	at := time.Now().Truncate(time.Millisecond)
	keys := tpmKeys(t, 3)
	port, customs := newOrg(t, "Tianjin Port", at), newOrg(t, "Beijing Customs", at)
	admins := []*gm.PrivateKey{softKey(t), softKey(t), softKey(t)}
	outsider := softKey(t)

	g, err := provisioning.NewGenesis(chain, at)
	if err != nil {
		t.Fatal(err)
	}
	// Organisations: root CA certificates only.
	if _, err := g.AddOrganisation(port.name, port.root.Raw()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddOrganisation(port.name, customs.root.Raw()); err == nil {
		t.Fatal("organisation listed twice")
	}
	leaf := nodeCert(t, port, keys[2], chain, at)
	_, err = g.AddOrganisation("Leaf Inc", leaf)
	wantErr(t, err, "not a CA certificate")
	expired := newOrg(t, "Old", at.AddDate(-10, 0, 0))
	_, err = g.AddOrganisation(expired.name, expired.root.Raw())
	wantErr(t, err, "not at the genesis time")
	if _, err := g.AddOrganisation(customs.name, customs.root.Raw()); err != nil {
		t.Fatal(err)
	}

	// Validators: TPM keys with attestations bound to this chain.
	attest := func(k hsm.Signer, chainID string) *provisioning.Attestation {
		a, err := provisioning.Attest(ctx, k, chainID)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	opts := provisioning.CheckOptions{RequireAttestation: true}
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", "Nowhere Inc"), nil, attest(keys[0], chain), opts)
	wantErr(t, err, "not a founding organisation")
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", port.name), nil, attest(keys[1], chain), opts)
	wantErr(t, err, "attestation")
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", port.name), nil, attest(keys[0], "another-chain"), opts)
	wantErr(t, err, "attestation")
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", port.name), nil, nil, opts)
	wantErr(t, err, "no TPM attestation")
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", customs.name), nodeCert(t, port, keys[0], chain, at), attest(keys[0], chain), opts)
	wantErr(t, err, "certificate")
	if _, err := g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.1:7400", port.name), nodeCert(t, port, keys[0], chain, at), attest(keys[0], chain), opts); err != nil {
		t.Fatal(err)
	}
	_, err = g.AddValidator(peer(keys[0].PublicKey(), "198.18.0.9:7400", port.name), nil, attest(keys[0], chain), opts)
	wantErr(t, err, "already listed")
	if _, err := g.AddValidator(peer(keys[1].PublicKey(), "198.18.0.2:7400", customs.name), nil, attest(keys[1], chain), opts); err != nil {
		t.Fatal(err)
	}

	// Parameters: a threshold of 2, which needs at least 2 administrators.
	p := ledger.DefaultParams()
	p.GovThreshold = 2
	if _, err := g.SetParams(p); err != nil {
		t.Fatal(err)
	}
	bad := p
	bad.MaxBlockTxs = 0
	if _, err := g.SetParams(bad); err == nil {
		t.Fatal("invalid parameters accepted")
	}
	if err := g.Sign(ctx, admins[0], opts); err == nil {
		t.Fatal("signed a genesis without administrators")
	}
	for _, a := range admins {
		if _, err := g.AddAccount(app.GenesisAccount{PublicKey: ledger.KeyBytes(a.PublicKey()), Institution: port.name, Roles: ledger.RoleAdmin}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = g.AddAccount(app.GenesisAccount{PublicKey: ledger.KeyBytes(admins[0].PublicKey()), Institution: "x", Roles: ledger.RoleMember})
	wantErr(t, err, "already has an account")
	_, err = g.AddAccount(app.GenesisAccount{PublicKey: ledger.KeyBytes(outsider.PublicKey()), Institution: "x", Roles: ledger.RoleKiosk, Certificate: leaf})
	wantErr(t, err, "another key")
	if _, err := g.SetFilter(txs.FilterRules{Keywords: []string{"contraband"}}); err != nil {
		t.Fatal(err)
	}

	// Approvals: only administrators, once each; the quorum is two.
	_, err = g.Verify(opts)
	wantErr(t, err, "0 of the 2")
	wantErr(t, g.Sign(ctx, outsider, opts), "not a founding administrator")
	if err := g.Sign(ctx, admins[1], opts); err != nil {
		t.Fatal(err)
	}
	wantErr(t, g.Sign(ctx, admins[1], opts), "already approved")
	_, err = g.Verify(opts)
	wantErr(t, err, "1 of the 2")
	if q, _ := g.CheckApprovals(); len(q.Missing) != 2 || q.Reached() {
		t.Fatalf("quorum %+v", q)
	}

	// A change after signing drops the approvals.
	p.TxWindowMs = 60_000
	dropped, err := g.SetParams(p)
	if err != nil || dropped != 1 {
		t.Fatalf("dropped %d, %v", dropped, err)
	}
	for _, a := range admins[:2] {
		if err := g.Sign(ctx, a, opts); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := g.Verify(opts)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Params.TxWindowMs != 60_000 || len(doc.Validators) != 2 || len(doc.Accounts) != 3 {
		t.Fatalf("document %+v", doc)
	}
	if _, err := app.Genesis(doc); err != nil {
		t.Fatal(err)
	}

	// The file round-trips, and a byte changed in the body breaks the
	// approvals.
	enc, err := g.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := provisioning.DecodeGenesisFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := back.Verify(opts); err != nil {
		t.Fatal(err)
	}
	tampered := *back
	tampered.Body.Doc.Params.GovThreshold = 1
	_, err = tampered.Verify(opts)
	wantErr(t, err, "does not verify over this body")
	forged := *back
	forged.Approvals = append([]provisioning.Approval(nil), back.Approvals...)
	forged.Approvals[0].Signature[5] ^= 1
	_, err = forged.Verify(opts)
	wantErr(t, err, "does not verify")
	if _, err := provisioning.DecodeGenesisFile(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	// A bare genesis document is not a genesis file.
	bare, _ := ledger.Marshal(doc)
	if _, err := provisioning.DecodeGenesisFile(bare); !errors.Is(err, provisioning.ErrGenesis) {
		t.Fatalf("bare document: %v", err)
	}
}

// TestQuickGenesis: the one-step genesis of development consortia verifies,
// and carries the attestations it was given.
func TestQuickGenesis(t *testing.T) {
	ctx := context.Background()
	at := time.Now()
	keys := tpmKeys(t, 1)
	admin := softKey(t)
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: chain, Time: at.UnixMilli(), Params: ledger.DefaultParams(),
		Validators: []ledger.PeerConfig{peer(keys[0].PublicKey(), "127.0.0.1:7400", "dev")},
		Accounts:   []app.GenesisAccount{{PublicKey: ledger.KeyBytes(admin.PublicKey()), Institution: "dev", Roles: ledger.RoleAdmin}}}
	att, err := provisioning.Attest(ctx, keys[0], chain)
	if err != nil {
		t.Fatal(err)
	}
	g, err := provisioning.QuickGenesis(ctx, doc, provisioning.QuickOptions{CAKey: softKey(t), Admins: []gm.Signer{admin},
		Attestations: map[gm.KeyID]*provisioning.Attestation{keys[0].KeyID(): att}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Verify(provisioning.CheckOptions{RequireAttestation: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := provisioning.QuickGenesis(ctx, doc, provisioning.QuickOptions{CAKey: softKey(t), Admins: []gm.Signer{softKey(t)}}); err == nil {
		t.Fatal("approved by a key that is no administrator")
	}
}

// TestIssueIdentities: node requests carry the TPM attestation, the
// organisation's CA issues only for its own organisation, and the
// certificates are checked for kind, key, chain and root.
func TestIssueIdentities(t *testing.T) {
	ctx := context.Background()
	at := time.Now()
	keys := tpmKeys(t, 1)
	port, customs := newOrg(t, "Tianjin Port", at), newOrg(t, "Beijing Customs", at)
	node := keys[0]

	_, err := provisioning.CreateRequest(ctx, node, provisioning.RequestOptions{Kind: provisioning.KindNode, Organisation: port.name, ChainID: chain})
	wantErr(t, err, "attestation")
	wrongChain, err := provisioning.Attest(ctx, node, "other")
	if err != nil {
		t.Fatal(err)
	}
	_, err = provisioning.CreateRequest(ctx, node, provisioning.RequestOptions{Kind: provisioning.KindNode, Organisation: port.name, ChainID: chain, Attestation: wrongChain})
	wantErr(t, err, "attestation")

	der := nodeCert(t, port, node, chain, at)
	id, err := provisioning.VerifyIdentity(der, []*gm.Certificate{port.root}, provisioning.KindNode, ledger.KeyBytes(node.PublicKey()), at)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Attested || id.Organisation != port.name || id.ChainID != chain {
		t.Fatalf("identity %+v", id)
	}
	_, err = provisioning.VerifyIdentity(der, []*gm.Certificate{customs.root}, provisioning.KindNode, ledger.PublicKeyBytes{}, at)
	wantErr(t, err, "certificate")
	_, err = provisioning.VerifyIdentity(der, []*gm.Certificate{port.root}, provisioning.KindKiosk, ledger.PublicKeyBytes{}, at)
	wantErr(t, err, "a node certificate where a kiosk certificate is needed")
	_, err = provisioning.VerifyIdentity(der, []*gm.Certificate{port.root}, provisioning.KindNode, ledger.KeyBytes(softKey(t).PublicKey()), at)
	wantErr(t, err, "is for key")
	_, err = provisioning.VerifyIdentity(der, []*gm.Certificate{port.root}, provisioning.KindNode, ledger.PublicKeyBytes{}, at.AddDate(2, 0, 0))
	wantErr(t, err, "certificate")

	// A kiosk request: software key, no attestation; the other
	// organisation's CA refuses it.
	kiosk := softKey(t)
	csr, err := provisioning.CreateRequest(ctx, kiosk, provisioning.RequestOptions{Kind: provisioning.KindKiosk, Organisation: port.name, ChainID: chain})
	if err != nil {
		t.Fatal(err)
	}
	req, err := provisioning.ParseRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	io := provisioning.IssueOptions{NotBefore: at.Add(-time.Minute), NotAfter: at.AddDate(1, 0, 0)}
	_, err = provisioning.Issue(ctx, customs.key, customs.root, req, io)
	wantErr(t, err, "this CA issues for")
	_, err = provisioning.Issue(ctx, customs.key, port.root, req, io)
	wantErr(t, err, "not the key of the CA certificate")
	kc, err := provisioning.Issue(ctx, port.key, port.root, req, io)
	if err != nil {
		t.Fatal(err)
	}
	reg, kid, err := provisioning.KioskRegistration(kc.Raw(), []*gm.Certificate{port.root}, chain, at)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Roles != ledger.RoleKiosk || reg.Institution != port.name || kid.Attested {
		t.Fatalf("registration %+v", reg)
	}
	// A node certificate without attestation is refused for gov.node-add.
	unattested, err := provisioning.CreateRequest(ctx, kiosk, provisioning.RequestOptions{Kind: provisioning.KindKiosk, Organisation: port.name, ChainID: chain})
	if err != nil {
		t.Fatal(err)
	}
	ureq, _ := provisioning.ParseRequest(unattested)
	ureq.Kind = provisioning.KindNode
	_, err = provisioning.Issue(ctx, port.key, port.root, ureq, io)
	wantErr(t, err, "attestation")
	add, nid, err := provisioning.NodeAdd(der, []*gm.Certificate{port.root}, chain, "198.18.0.5:7400", "1.0", at, false)
	if err != nil {
		t.Fatal(err)
	}
	if add.Peer.PeerID != node.KeyID() || add.Peer.Organisation != port.name || !nid.Attested {
		t.Fatalf("node-add %+v", add.Peer)
	}
	_, _, err = provisioning.NodeAdd(der, []*gm.Certificate{port.root}, "other", "198.18.0.5:7400", "1.0", at, false)
	wantErr(t, err, "is for chain")
	_, _, err = provisioning.NodeAdd(kc.Raw(), []*gm.Certificate{port.root}, chain, "198.18.0.5:7400", "1.0", at, false)
	wantErr(t, err, "a kiosk certificate where a node certificate is needed")
	// A request whose signature is broken is refused.
	csr[len(csr)-3] ^= 1
	if _, err := provisioning.ParseRequest(csr); err == nil {
		t.Fatal("tampered request accepted")
	}
}

// TestDraft: signers sign one transaction in any order from a file; only
// listed signers, once each; the transaction comes out only when complete
// and still inside the chain's window.
func TestDraft(t *testing.T) {
	ctx := context.Background()
	a, b, newKey := softKey(t), softKey(t), softKey(t)
	now := time.Now()
	body, err := provisioning.NewTxBody(provisioning.TxOptions{ChainID: chain, Time: now},
		&txs.AccountRegister{PublicKey: ledger.KeyBytes(newKey.PublicKey()), Institution: "port", Roles: ledger.RoleKiosk}, nil,
		ledger.KeyBytes(a.PublicKey()), ledger.KeyBytes(b.PublicKey()), ledger.KeyBytes(newKey.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	d, err := provisioning.NewDraft(body, "register a kiosk")
	if err != nil {
		t.Fatal(err)
	}
	pass := func(d *provisioning.Draft) *provisioning.Draft {
		enc, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := provisioning.DecodeDraft(enc)
		if err != nil {
			t.Fatal(err)
		}
		return back
	}
	if err := d.Sign(ctx, newKey); err != nil {
		t.Fatal(err)
	}
	d = pass(d)
	wantErr(t, d.Sign(ctx, softKey(t)), "not among this transaction's signers")
	wantErr(t, d.Sign(ctx, newKey), "signed already")
	_, err = d.Transaction(now, 300_000)
	wantErr(t, err, "2 of 3 signers have not signed")
	if err := d.Sign(ctx, a); err != nil {
		t.Fatal(err)
	}
	d = pass(d)
	if err := d.Sign(ctx, b); err != nil {
		t.Fatal(err)
	}
	tx, err := d.Transaction(now.Add(time.Minute), 300_000)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.VerifySignatures(); err != nil || tx.Body.Entity.Sender != ledger.AddressOf(a.PublicKey()) {
		t.Fatalf("transaction: %v", err)
	}
	_, err = d.Transaction(now.Add(6*time.Minute), 300_000)
	wantErr(t, err, "too-old")
	// A signature that does not verify is caught when the file is read.
	enc, _ := d.Encode()
	i := strings.Index(string(enc), d.Signatures[0])
	enc[i] ^= 1
	if enc[i] == '"' {
		enc[i] ^= 3
	}
	if _, err := provisioning.DecodeDraft(enc); err == nil {
		t.Fatal("tampered signature accepted")
	}
}
