package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/hsm/swtpmtest"
	"hallmark/provisioning"
)

// ctl runs hallmarkctl in-process with the arguments as given.
type ctl struct {
	t   *testing.T
	dir string
}

func (c *ctl) run(args ...string) (string, error) {
	c.t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("hallmarkctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *ctl) fails(want string, args ...string) {
	c.t.Helper()
	out, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("hallmarkctl %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	if !strings.Contains(err.Error(), want) {
		c.t.Fatalf("hallmarkctl %s: error %q lacks %q", strings.Join(args, " "), err, want)
	}
}

func (c *ctl) path(name string) string { return filepath.Join(c.dir, name) }

// TestGenesisCeremonyCLI runs the genesis ceremony with the commands an
// operator types: two organisations with their CAs, two appliances whose
// keys are made and attested in their TPMs, three founding administrators
// with a threshold of two, and the refusals along the way.
func TestGenesisCeremonyCLI(t *testing.T) {
	c := &ctl{t: t, dir: t.TempDir()}
	tpms := []*swtpmtest.TPM{swtpmtest.Start(t), swtpmtest.Start(t)}
	const chain = "ceremony-test"
	orgs := []string{"Tianjin Port", "Beijing Customs"}
	for i, org := range orgs {
		c.ok("ca", "init", "--key", c.path(filepathSafe(org)+"-ca.pem"), "--generate", "--org", org, "--out", c.path(filepathSafe(org)+"-ca.crt"))
		// On each appliance: a key made in its TPM and a request carrying
		// its attestation; the organisation's CA issues the certificate.
		out := c.ok("enrol", "node", "request", "--key", "tpm:handle=auto", "--generate", "--tpm", tpms[i].Addr(),
			"--chain-id", chain, "--org", org, "--out", c.path(filepathSafe(org)+"-node.csr"))
		if !strings.Contains(out, "attestation key") {
			t.Fatalf("request output:\n%s", out)
		}
		c.ok("ca", "issue", "--ca-key", c.path(filepathSafe(org)+"-ca.pem"), "--ca-cert", c.path(filepathSafe(org)+"-ca.crt"),
			"--csr", c.path(filepathSafe(org)+"-node.csr"), "--out", c.path(filepathSafe(org)+"-node.crt"), "--chain-id", chain)
	}
	// The other organisation's CA refuses the request; a key file cannot
	// make a node request.
	c.fails("this CA issues for", "ca", "issue", "--ca-key", c.path("Beijing_Customs-ca.pem"), "--ca-cert", c.path("Beijing_Customs-ca.crt"),
		"--csr", c.path("Tianjin_Port-node.csr"), "--out", c.path("x.crt"))
	c.fails("must live in the appliance's TPM", "enrol", "node", "request", "--key", c.path("Tianjin_Port-ca.pem"),
		"--chain-id", chain, "--org", orgs[0], "--out", c.path("x.csr"))

	g := c.path("genesis.cbor")
	c.ok("genesis", "init", g, "--chain-id", chain)
	c.fails("exists", "genesis", "init", g, "--chain-id", chain)
	c.fails("no organisation", "genesis", "add-validator", g, "--cert", c.path("Tianjin_Port-node.crt"), "--address", "198.18.0.1:7400")
	for _, org := range orgs {
		c.ok("genesis", "add-org", g, "--name", org, "--root-ca", c.path(filepathSafe(org)+"-ca.crt"))
	}
	c.fails("not a CA certificate", "genesis", "add-org", g, "--name", "Leaf", "--root-ca", c.path("Tianjin_Port-node.crt"))
	for i, org := range orgs {
		c.ok("genesis", "add-validator", g, "--cert", c.path(filepathSafe(org)+"-node.crt"), "--address", "198.18.0."+string(rune('1'+i))+":7400")
	}
	c.fails("already listed", "genesis", "add-validator", g, "--cert", c.path("Tianjin_Port-node.crt"), "--address", "198.18.0.9:7400")
	var admins []string
	for i := range 3 {
		k := c.path("admin" + string(rune('0'+i)) + ".pem")
		writeTestKey(t, k)
		admins = append(admins, k)
		c.ok("genesis", "add-admin", g, "--key", k, "--institution", orgs[i%2])
	}
	outsider := c.path("outsider.pem")
	writeTestKey(t, outsider)
	c.ok("genesis", "add-account", g, "--key", outsider, "--institution", "Tianjin Port", "--roles", "kiosk")
	c.fails("unknown role", "genesis", "add-account", g, "--key", c.path("admin0.pem"), "--institution", "x", "--roles", "wizard")
	c.ok("genesis", "set", g, "--threshold", "2", "--epoch-length", "20")
	c.fails("governance threshold", "genesis", "set", g, "--threshold", "0")

	show := c.ok("genesis", "show", g)
	digest := regexp.MustCompile(`digest\s+([0-9a-f]{64})`).FindStringSubmatch(show)
	if digest == nil || !strings.Contains(show, "0 of 2 required") || !strings.Contains(show, "AK ") {
		t.Fatalf("show:\n%s", show)
	}
	// A node refuses the draft; signatures from outsiders, on another
	// digest, or twice are refused.
	c.fails("0 of the 2", "genesis", "verify", g)
	c.fails("not a founding administrator", "genesis", "sign", g, "--key", outsider)
	c.fails("not the", "genesis", "sign", g, "--key", admins[0], "--digest", strings.Repeat("ab", 32))
	c.ok("genesis", "sign", g, "--key", admins[0], "--digest", digest[1])
	c.fails("already approved", "genesis", "sign", g, "--key", admins[0])
	c.fails("1 of the 2", "genesis", "verify", g)
	out := c.ok("genesis", "sign", g, "--key", admins[2], "--digest", digest[1])
	if !strings.Contains(out, "complete") {
		t.Fatalf("sign output:\n%s", out)
	}
	c.ok("genesis", "verify", g, "--production")
	doc, _, err := genesis.Load(g, provisioning.CheckOptions{RequireAttestation: true})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Params.GovThreshold != 2 || len(doc.Validators) != 2 || len(doc.Accounts) != 4 {
		t.Fatalf("document: %+v", doc)
	}
	// Any change afterwards drops the approvals, and a node refuses the
	// file again.
	out = c.ok("genesis", "set", g, "--epoch-length", "50")
	if !strings.Contains(out, "dropped 2 approval") {
		t.Fatalf("set after signing:\n%s", out)
	}
	c.fails("0 of the 2", "genesis", "verify", g)
}

func filepathSafe(s string) string { return strings.ReplaceAll(s, " ", "_") }

func writeTestKey(t *testing.T, path string) *gm.PrivateKey {
	t.Helper()
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.MarshalPKCS8PEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}
