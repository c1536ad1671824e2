package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
)

type cli struct {
	t     *testing.T
	sim   *swtpmtest.TPM
	dir   string
	audit string
}

func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	return &cli{t: t, sim: swtpmtest.Start(t), dir: dir, audit: filepath.Join(dir, "audit.log")}
}

// run executes hallmarkctl in-process with the test's TPM and audit log.
func (c *cli) run(args ...string) (string, error) {
	c.t.Helper()
	full := append([]string{args[0], args[1], "--tpm", c.sim.Addr(), "--audit-log", c.audit, "--actor", "test-officer"}, args[2:]...)
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(full)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("hallmarkctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cli) fails(want string, args ...string) error {
	c.t.Helper()
	out, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("hallmarkctl %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	if !strings.Contains(err.Error(), want) {
		c.t.Fatalf("hallmarkctl %s: error %q lacks %q", strings.Join(args, " "), err, want)
	}
	return err
}

func TestKeyLifecycleOnTPM(t *testing.T) {
	c := newCLI(t)
	out := c.ok("key", "generate", "tpm:handle=auto")
	if !strings.Contains(out, "tpm:handle=0x81000010") {
		t.Fatalf("generate output:\n%s", out)
	}
	var info hsm.KeyInfo
	if err := json.Unmarshal([]byte(c.ok("key", "show", "tpm:handle=0x81000010", "--json", "--nonce", "00112233")), &info); err != nil {
		t.Fatal(err)
	}
	pub := mustPub(t, info.PublicKey)
	if err := info.Attestation.Verify(pub, []byte{0, 0x11, 0x22, 0x33}); err != nil {
		t.Fatalf("attestation from show: %v", err)
	}
	if !strings.Contains(c.ok("key", "list"), "tpm:handle=0x81000010") {
		t.Fatal("list does not show the key")
	}

	c.sim.Restart() // the persisted key survives a power cycle

	stmt := filepath.Join(c.dir, "rotation.cbor")
	out = c.ok("key", "rotate", "tpm:handle=0x81000010", "tpm:handle=auto", "--chain-id", "test-chain", "--reason", "annual", "--out", stmt, "--destroy-old")
	if !strings.Contains(out, "tpm:handle=0x81000011") || !strings.Contains(out, "destroyed") {
		t.Fatalf("rotate output:\n%s", out)
	}
	b, err := os.ReadFile(stmt)
	if err != nil {
		t.Fatal(err)
	}
	st, err := hsm.ParseRotation(b)
	if err != nil {
		t.Fatalf("rotation statement: %v", err)
	}
	if st.Statement.Old.ID() != pub.ID() || st.Statement.ChainID != "test-chain" || st.Statement.Reason != "annual" {
		t.Fatalf("statement %+v", st.Statement)
	}
	c.fails("key not found", "key", "show", "tpm:handle=0x81000010")
	c.fails("pass --yes", "key", "destroy", "tpm:handle=0x81000011")
	c.ok("key", "destroy", "tpm:handle=0x81000011", "--yes")
	err = c.fails("key not found", "key", "destroy", "tpm:handle=0x81000011", "--yes")
	if !strings.Contains(err.Error(), "hallmarkctl key list") {
		t.Fatalf("no hint in %q", err)
	}
	out = c.ok("key", "audit", "verify")
	if !strings.Contains(out, "chain intact") {
		t.Fatalf("audit verify:\n%s", out)
	}
	// generate, show, list, rotate, destroy (old, by --destroy-old),
	// show (failed), destroy, destroy (failed).
	if !strings.Contains(out, " 8 entries") {
		t.Fatalf("audit entries:\n%s", out)
	}
}

func TestSealedKeyWrongPCRState(t *testing.T) {
	c := newCLI(t)
	ref := "tpm-sealed:" + filepath.Join(c.dir, "node.sealed")
	out := c.ok("key", "generate", ref)
	if !strings.Contains(out, "tpm-sealed") {
		t.Fatalf("generate:\n%s", out)
	}
	c.ok("key", "show", ref)
	// Measure something else into the firmware PCR. swtpm serves one
	// client at a time, so the connection is closed before the CLI runs.
	ctx := context.Background()
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: c.sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("another image"))
	if err := tpm.ExtendPCR(ctx, conn, hsm.FirmwarePCR, d[:]); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	err = c.fails("wrong PCR state", "key", "show", ref)
	if !strings.Contains(err.Error(), "hint: the PCRs differ") {
		t.Fatalf("no hint in %q", err)
	}
	c.sim.Restart() // PCRs reset to the state the key was sealed in
	c.ok("key", "show", ref)
}

func TestDevKeyPassphraseAndProduction(t *testing.T) {
	c := newCLI(t)
	pass := filepath.Join(c.dir, "pass")
	os.WriteFile(pass, []byte("open sesame\n"), 0o600)
	wrong := filepath.Join(c.dir, "wrong")
	os.WriteFile(wrong, []byte("open barley\n"), 0o600)
	ref := "dev:" + filepath.Join(c.dir, "dev.key")
	c.fails("needs a passphrase", "key", "generate", ref)
	c.ok("key", "generate", ref, "--passphrase-file", pass, "--kdf-time", "1", "--kdf-memory", "64")
	c.ok("key", "show", ref, "--passphrase-file", pass)
	err := c.fails("wrong passphrase", "key", "show", ref, "--passphrase-file", wrong)
	if !strings.Contains(err.Error(), "hint: check the passphrase") {
		t.Fatalf("no hint in %q", err)
	}
	c.fails("production", "key", "show", ref, "--passphrase-file", pass, "--production")
	c.fails("key already exists", "key", "generate", ref, "--passphrase-file", pass)
	out := c.ok("key", "list", "--no-tpm", "--dir", c.dir)
	if !strings.Contains(out, ref) {
		t.Fatalf("list:\n%s", out)
	}
}

func TestNoTPMReachable(t *testing.T) {
	c := newCLI(t)
	addr := c.sim.Addr()
	c.sim.Stop()
	err := c.fails("no TPM reachable", "key", "show", "tpm:handle=0x81000010", "--tpm-timeout", "200ms")
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "hint: no TPM answers at "+addr) {
		t.Fatalf("error does not name the address %s: %q", addr, err)
	}
}

func TestBadReference(t *testing.T) {
	c := newCLI(t)
	err := c.fails("malformed key reference", "key", "show", "tpm:handle=0x01")
	if !strings.Contains(err.Error(), "key --help") {
		t.Fatalf("no hint in %q", err)
	}
}

// swtpm has SM2, so the TPM-lacks-SM2 path cannot be reached through a
// real TPM here; this checks the message an officer would get from it.
func TestExplainNoSM2(t *testing.T) {
	caps := tpm.Capabilities{}
	err := explain(fmt.Errorf("hsm: tpm 127.0.0.1:1: %w", caps.CheckSM2()), &keyFlags{})
	for _, want := range []string{"TPM lacks SM2", "tpm-sealed", "hallmarkctl key generate tpm-sealed:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func mustPub(t *testing.T, h string) *gm.PublicKey {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	p, err := gm.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
