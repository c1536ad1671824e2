package genesis_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/provisioning"
)

// approvedFile returns a genesis file for one validator and two founding
// administrators with threshold 2, approved by both.
func approvedFile(t *testing.T) *provisioning.GenesisFile {
	t.Helper()
	node, a1, a2, ca := mustKey(t), mustKey(t), mustKey(t), mustKey(t)
	pk := ledger.KeyBytes(node.PublicKey())
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: "genesis-test", Time: time.Now().UnixMilli(), Params: ledger.DefaultParams()}
	doc.Params.GovThreshold = 2
	doc.Validators = []ledger.PeerConfig{{ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: pk.ID(),
		Address: "198.18.0.1:7400", PublicKey: pk, Organisation: "Tianjin Port"}}
	for _, a := range []*gm.PrivateKey{a1, a2} {
		doc.Accounts = append(doc.Accounts, app.GenesisAccount{PublicKey: ledger.KeyBytes(a.PublicKey()), Institution: "Tianjin Port", Roles: ledger.RoleAdmin})
	}
	g, err := provisioning.QuickGenesis(t.Context(), doc, provisioning.QuickOptions{CAKey: ca, Admins: []gm.Signer{a1, a2}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustKey(t *testing.T) *gm.PrivateKey {
	t.Helper()
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeRaw(t *testing.T, g *provisioning.GenesisFile) string {
	t.Helper()
	b, err := g.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "genesis.cbor")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadRefusesWithoutQuorum: what a node does with its genesis file.
// An approved file loads and derives the first epoch; one approval short,
// a body changed after signing, or a production node given validators
// without TPM attestation are refused with a reason.
func TestLoadRefusesWithoutQuorum(t *testing.T) {
	g := approvedFile(t)
	doc, _, err := genesis.Load(writeRaw(t, g), provisioning.CheckOptions{})
	if err != nil {
		t.Fatalf("an approved genesis is refused: %v", err)
	}
	chain, err := genesis.Derive(doc)
	if err != nil {
		t.Fatal(err)
	}
	if chain.Epoch.Validators.N() != 1 || chain.Block.Header.Height != 0 {
		t.Fatalf("derived %d validators, genesis height %d", chain.Epoch.Validators.N(), chain.Block.Header.Height)
	}

	short := *g
	short.Approvals = g.Approvals[:1]
	if _, _, err := genesis.Load(writeRaw(t, &short), provisioning.CheckOptions{}); err == nil || !strings.Contains(err.Error(), "1 of the 2") {
		t.Fatalf("a genesis one approval short: %v", err)
	}

	changed := *g
	changed.Body.Doc.Params.EpochLength++
	if _, _, err := genesis.Load(writeRaw(t, &changed), provisioning.CheckOptions{}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("a genesis changed after its approvals: %v", err)
	}

	if _, _, err := genesis.Load(writeRaw(t, g), provisioning.CheckOptions{RequireAttestation: true}); err == nil || !strings.Contains(err.Error(), "attestation") {
		t.Fatalf("a production node given a validator without attestation: %v", err)
	}

	if err := genesis.Write(filepath.Join(t.TempDir(), "g.cbor"), &short); err == nil {
		t.Fatal("Write wrote a genesis short of its quorum")
	}
}
