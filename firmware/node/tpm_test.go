package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hallmark/firmware/config"
	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/netstack/kiosk"
)

// A node whose validator key was generated inside a (software) TPM opens it
// from its configuration, signs every vote and proposal there, and commits
// transactions; its receipts come from the delegated software key.
func TestNodeWithTPMKey(t *testing.T) {
	sw := swtpmtest.Start(t)
	ctx := context.Background()
	s, err := hsm.Generate(ctx, "tpm:handle=auto", hsm.Options{TPM: tpm.Config{Addr: sw.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	ref, pub := s.Ref(), s.PublicKey()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, clusterOptions{
		signers: []gm.Signer{publicOnly{pub}},
		nodeKey: func(int) string { return ref },
		extra:   `"tpm": "` + sw.Addr() + `"`,
	})
	tn := c.nodes[0]
	tn.start(false) // the node opens its key itself
	if c := tn.n.identity.Load().custody; c != string(hsm.KindTPM) {
		t.Fatalf("custody %q", c)
	}
	kc := kioskClient(t, c, tn)
	tx := c.chain.Record(t, c.chain.Kiosk, "customs.declaration")
	if r, err := kc.Submit(t.Context(), tx); err != nil || r.Status != kiosk.StatusAccepted {
		t.Fatalf("kiosk submit: %+v %v", r, err)
	}
	c.waitCommitted(tn, tx.ID(), 30*time.Second)
	if m := tn.n.driver.Metrics(); m.ProposalsSent == 0 || m.VotesSent == 0 {
		t.Fatalf("no TPM-signed proposals or votes: %+v", m)
	}
}

// publicOnly stands for a key whose private half is elsewhere (here in the
// TPM): the test chain needs only its public key.
type publicOnly struct{ k *gm.PublicKey }

func (p publicOnly) PublicKey() *gm.PublicKey { return p.k }
func (p publicOnly) Sign(context.Context, []byte) (gm.Signature, error) {
	panic("publicOnly cannot sign")
}

// A node refuses to start on a configuration whose genesis file is missing,
// or on a data directory that holds another chain's genesis.
func TestStartRefusesBadSetup(t *testing.T) {
	c := newCluster(t, clusterOptions{n: 1})
	tn := c.nodes[0]
	cfg, err := config.Load(tn.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	missing := *cfg
	missing.Genesis = filepath.Join(t.TempDir(), "absent.cbor")
	if _, err := New(ctx(), Options{Config: &missing, Signer: tn.signer}); err == nil || !strings.Contains(err.Error(), "absent.cbor") {
		t.Fatalf("missing genesis: %v", err)
	}
	// A genesis file that lacks its administrators' approvals is refused:
	// the same body, unsigned.
	g, err := genesis.Read(cfg.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	g.Approvals = nil
	enc, err := g.Encode()
	if err != nil {
		t.Fatal(err)
	}
	draft := *cfg
	draft.Genesis = filepath.Join(t.TempDir(), "draft.cbor")
	if err := os.WriteFile(draft.Genesis, enc, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx(), Options{Config: &draft, Signer: tn.signer}); err == nil || !strings.Contains(err.Error(), "0 of the 1 founding administrator approvals") {
		t.Fatalf("unapproved genesis: %v", err)
	}
	// Start once on the real genesis, then point the same data directory at
	// another consortium's genesis.
	tn.start(true)
	c.waitHeight(1, 20*time.Second)
	tn.stop()
	c2 := newCluster(t, clusterOptions{n: 1})
	other, err := config.Load(c2.nodes[0].cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	mixed := *cfg
	mixed.Genesis = other.Genesis
	if _, err := New(ctx(), Options{Config: &mixed, Signer: tn.signer}); err == nil || !strings.Contains(err.Error(), "genesis") {
		t.Fatalf("foreign genesis: %v", err)
	}
	// An unreadable passphrase file names itself.
	dev := *cfg
	dev.NodeKey = "dev:" + filepath.Join(t.TempDir(), "node.dev")
	dev.KeyPassphraseFile = filepath.Join(t.TempDir(), "nope")
	if _, err := New(ctx(), Options{Config: &dev}); err == nil || !strings.Contains(err.Error(), "keyPassphraseFile") {
		t.Fatalf("missing passphrase file: %v", err)
	}
}

func ctx() context.Context { return context.Background() }
