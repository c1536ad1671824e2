//go:build provisioning

package clustertest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/netstack/kiosk"
)

// ceremony runs hallmarkctl the way the operators of docs/OPERATIONS.md do:
// on the host for the offline steps (CAs, the genesis file), inside a
// node's namespace for what touches the appliance's TPM, and in the client
// namespace for what talks to a node's API.
type ceremony struct {
	t   *testing.T
	dir string // keys, requests, certificates, the genesis file
	c   *Cluster

	orgs    []string // founding organisations
	genesis string
	admins  []string // dev: key references of the founding administrators
	officer string   // dev: key reference of the security officer
}

const ceremonyPassphrase = "clustertest ceremony passphrase"

func newCeremony(t *testing.T, dir string) *ceremony {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &ceremony{t: t, dir: dir, orgs: []string{"Tianjin Port", "Customs Office"}, genesis: filepath.Join(dir, "genesis.cbor")}
}

func (x *ceremony) path(name string) string { return filepath.Join(x.dir, name) }

func (x *ceremony) caKey(org int) string  { return x.path(fmt.Sprintf("org%d-ca.pem", org)) }
func (x *ceremony) caCert(org int) string { return x.path(fmt.Sprintf("org%d-ca.crt", org)) }

// host, node and client build hallmarkctl invocations in the three places.
func (x *ceremony) host(args ...string) *exec.Cmd { return exec.Command(hallmarkctl, args...) }
func (x *ceremony) node(i int, args ...string) *exec.Cmd {
	return x.c.Command(i, hallmarkctl, args...)
}
func (x *ceremony) client(args ...string) *exec.Cmd { return x.c.ClientCommand(hallmarkctl, args...) }

// api returns node i's API URL.
func (x *ceremony) api(i int) string { return "http://" + x.c.Nodes[i].API }

// exec runs cmd with the ceremony's environment, bounded in time, and
// returns its combined output.
func (x *ceremony) exec(cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Dir = &out, &out, x.dir
	cmd.Env = append(os.Environ(), "HALLMARK_KEY_PASSPHRASE="+ceremonyPassphrase, "HALLMARK_KEY_AUDIT_LOG="+x.path("key-audit.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(4 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = fmt.Errorf("killed after 4 minutes: %w", <-done)
	}
	x.t.Logf("$ hallmarkctl %s  (%v)\n%s", strings.Join(ctlArgs(cmd.Args), " "), time.Since(start).Round(time.Millisecond), strings.TrimRight(out.String(), "\n"))
	return out.String(), err
}

// ctlArgs returns the arguments after the hallmarkctl binary.
func ctlArgs(args []string) []string {
	for i, a := range args {
		if a == hallmarkctl {
			return args[i+1:]
		}
	}
	return args
}

// ok runs cmd and fails the test if it fails.
func (x *ceremony) ok(cmd *exec.Cmd) string {
	x.t.Helper()
	out, err := x.exec(cmd)
	if err != nil {
		x.t.Fatalf("hallmarkctl %s: %v\n%s", strings.Join(ctlArgs(cmd.Args), " "), err, out)
	}
	return out
}

// refused runs cmd, which must fail with an error message matching want.
func (x *ceremony) refused(cmd *exec.Cmd, want string) string {
	x.t.Helper()
	out, err := x.exec(cmd)
	if err == nil {
		x.t.Fatalf("hallmarkctl %s succeeded; it must be refused\n%s", strings.Join(ctlArgs(cmd.Args), " "), out)
	}
	if !regexp.MustCompile(want).MatchString(out) {
		x.t.Fatalf("hallmarkctl %s was refused without the expected reason (want %q):\n%s", strings.Join(ctlArgs(cmd.Args), " "), want, out)
	}
	return out
}

// find returns the first submatch of re in out.
func (x *ceremony) find(out, re string) string {
	x.t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		x.t.Fatalf("no %q in:\n%s", re, out)
	}
	return m[1]
}

// devKey makes a passphrase-protected development key file (the
// administrators' and the officer's keys; a real consortium keeps them in
// a TPM or an HSM, which the commands accept the same way).
func (x *ceremony) devKey(name string) string {
	ref := "dev:" + x.path(name+".key")
	x.ok(x.host("key", "generate", ref, "--kdf-memory", "8192", "--kdf-time", "1", "--actor", name))
	return ref
}

// enrolNode runs node i's enrolment up to its certificate: the key made in
// its TPM with its attestation (inside its namespace), the certificate
// issued by org's CA. It records the key on the node and returns the
// certificate's path.
func (x *ceremony) enrolNode(i, org int) string {
	n := x.c.Nodes[i]
	csr, crt := x.path(n.Name+".csr"), x.path(n.Name+".crt")
	out := x.ok(x.node(i, "enrol", "node", "request", "--key", "tpm:handle=auto", "--generate", "--tpm", n.TPM,
		"--chain-id", ChainID, "--org", x.orgs[org], "--out", csr))
	ref := x.find(out, `node key \S+ at (\S+)`)
	pub, err := hex.DecodeString(x.find(out, `public key ([0-9a-f]{128})`))
	if err != nil {
		x.t.Fatal(err)
	}
	key, err := gm.ParsePublicKey(pub)
	if err != nil {
		x.t.Fatal(err)
	}
	x.ok(x.host("ca", "issue", "--ca-key", x.caKey(org), "--ca-cert", x.caCert(org), "--csr", csr, "--chain-id", ChainID, "--out", crt))
	n.SetKey(key, ref)
	return crt
}

// runGenesis is the genesis ceremony (Options.Provision): two founding
// organisations with their CAs, the four validators enrolled from their
// TPMs, three administrators with a 2-of-3 threshold, an officer, the load
// generator's kiosk; one approval is not enough, a non-administrator
// cannot approve, a node refuses the file until the quorum has signed.
func (x *ceremony) runGenesis(ctx context.Context, c *Cluster) (string, error) {
	x.c = c
	var err error
	if c.Kiosk, err = gm.GenerateKey(nil); err != nil {
		return "", err
	}
	for k, org := range x.orgs {
		x.ok(x.host("ca", "init", "--key", x.caKey(k), "--generate", "--org", org, "--out", x.caCert(k)))
	}
	x.ok(x.host("genesis", "init", x.genesis, "--chain-id", ChainID))
	for k, org := range x.orgs {
		x.ok(x.host("genesis", "add-org", x.genesis, "--name", org, "--root-ca", x.caCert(k)))
	}
	// A CA issues only for its own organisation.
	x.ok(x.node(0, "enrol", "node", "request", "--key", "tpm:handle=auto", "--generate", "--tpm", c.Nodes[0].TPM,
		"--chain-id", ChainID, "--org", x.orgs[0], "--out", x.path("stray.csr")))
	x.refused(x.host("ca", "issue", "--ca-key", x.caKey(1), "--ca-cert", x.caCert(1), "--csr", x.path("stray.csr"), "--out", x.path("stray.crt")),
		`organisation "Tianjin Port"; this CA issues for "Customs Office"`)
	for i, n := range c.Nodes {
		crt := x.enrolNode(i, i%len(x.orgs))
		x.ok(x.host("genesis", "add-validator", x.genesis, "--cert", crt, "--address", n.Peer))
	}
	for k := range 3 {
		name := fmt.Sprintf("admin%d", k+1)
		ref := x.devKey(name)
		x.admins = append(x.admins, ref)
		x.ok(x.host("genesis", "add-admin", x.genesis, "--key", ref, "--institution", x.orgs[k%len(x.orgs)]))
	}
	x.officer = x.devKey("officer")
	x.ok(x.host("genesis", "add-account", x.genesis, "--key", x.officer, "--institution", x.orgs[0], "--roles", "officer"))
	kpk := ledger.KeyBytes(c.Kiosk.PublicKey())
	x.ok(x.host("genesis", "add-account", x.genesis, "--public-key", hex.EncodeToString(kpk[:]), "--institution", x.orgs[0], "--roles", "kiosk"))
	x.ok(x.host("genesis", "set", x.genesis, "--threshold", "2", "--epoch-length", "10", "--base-timeout-ms", "500", "--max-timeout-ms", "4000"))
	digest := x.find(x.ok(x.host("genesis", "show", x.genesis)), `digest\s+([0-9a-f]{64})`)

	x.ok(x.host("genesis", "sign", x.genesis, "--key", x.admins[0], "--digest", digest))
	x.refused(x.host("genesis", "sign", x.genesis, "--key", x.officer, "--digest", digest), `not a founding administrator`)
	x.refused(x.host("genesis", "sign", x.genesis, "--key", x.admins[1], "--digest", strings.Repeat("0", 64)), `digest`)
	x.refused(x.host("genesis", "verify", x.genesis), `1 of the 2`)
	if err := x.nodeRefuses(ctx, c, 0); err != nil {
		return "", err
	}
	x.ok(x.host("genesis", "sign", x.genesis, "--key", x.admins[1], "--digest", digest))
	x.ok(x.host("genesis", "verify", x.genesis, "--production"))
	return x.genesis, nil
}

// nodeRefuses starts node i's hallmarkd on the genesis as it stands (one
// approval short) with a scratch data directory: it must exit, naming the
// missing approvals.
func (x *ceremony) nodeRefuses(ctx context.Context, c *Cluster, i int) error {
	n := c.Nodes[i]
	scratch := filepath.Join(n.Dir, "refused")
	cfg := map[string]any{
		"nodeKey": n.KeyRef, "tpm": n.TPM, "dataDir": scratch, "genesis": x.genesis,
		"listen": map[string]any{"peer": n.Peer, "kiosk": n.Kiosk, "api": n.API},
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(n.Dir, "refused.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := c.Command(i, hallmarkd, "-config", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = cmd.Process.Kill()
	}()
	err := cmd.Wait()
	x.t.Logf("hallmarkd on a genesis with 1 of 2 approvals: %v\n%s", err, strings.TrimSpace(out.String()))
	if err == nil || ctx.Err() != nil {
		return fmt.Errorf("hallmarkd did not refuse a genesis short of its quorum (%v)", err)
	}
	if !strings.Contains(out.String(), "1 of the 2") {
		return fmt.Errorf("hallmarkd refused the genesis without naming the missing approvals:\n%s", out.String())
	}
	return nil
}

// waitFor polls cond every 200 ms until it returns true or timeout passes.
func waitFor(t *testing.T, ctx context.Context, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// signedBy waits until node i stores a block above `above` whose commit
// certificate carries id's signature, and returns its height.
func signedBy(t *testing.T, ctx context.Context, c *Cluster, i int, id gm.KeyID, above uint64, timeout time.Duration) uint64 {
	t.Helper()
	var found uint64
	next := above + 1
	waitFor(t, ctx, fmt.Sprintf("a commit certificate signed by %s", id.Short()), timeout, func() (bool, error) {
		top, err := c.Height(ctx, i)
		if err != nil {
			return false, err
		}
		for ; next <= top; next++ {
			_, signers, err := c.CommitSigners(ctx, i, next)
			if err != nil {
				return false, err
			}
			if slices.Contains(signers, id) {
				found = next
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// TestProvisioningCeremonies walks the ceremonies of docs/OPERATIONS.md
// with hallmarkctl against real processes: hallmarkd per network
// namespace with its key in its own swtpm, QUIC between them, the XDP
// fast path (or its twin where the kernel refuses) on every node's
// interface. Genesis by a quorum of founding administrators; a fifth
// appliance enrolled from its TPM, admitted by a 2-of-3 approval, syncing
// and voting from the epoch boundary without any restart; a validator's
// TPM key rotated under load with the chain committing throughout, the old
// key destroyed in the TPM; a validator removed; a kiosk enrolled,
// frozen, unfrozen and revoked, its datagrams dropped while it is not
// admitted. Wrong or insufficient approvals are refused at each step. At
// the end every node still in the consortium agrees on every block id.
func TestProvisioningCeremonies(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 9*time.Minute)
	defer cancel()
	testStart := time.Now()
	x := newCeremony(t, filepath.Join(t.TempDir(), "ceremony"))
	c, err := Start(ctx, Options{
		Dir: filepath.Join(t.TempDir(), "cluster"), Hallmarkd: hallmarkd, Netns: true, Log: &testLog{t: t},
		Provision: x.runGenesis,
		Configure: func(_ int, cfg map[string]any) { cfg["xdp"] = map[string]any{"interface": "eth0"} },
	})
	if errors.Is(err, ErrRefused) {
		t.Skipf("skipping: %v", err)
	}
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() || *logsFlag {
				for i := range c.Nodes {
					t.Logf("---- %s log (tail) ----\n%s", c.Nodes[i].Name, c.LogTail(i, 5000))
				}
			}
			if err := c.Close(); err != nil {
				t.Errorf("closing the cluster: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	x.c = c
	phase := time.Now()
	t.Logf("genesis ceremony and 4 nodes up in %v", phase.Sub(testStart).Round(time.Millisecond))
	st, err := c.Status(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fast path on node0: %s", st.FastPath)
	if err := c.WaitHeight(ctx, 3, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	figures := map[string]time.Duration{}

	// 1. A fifth appliance of the port joins: key in its TPM, certificate
	// from the port's CA, started before it is admitted.
	n4, err := c.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crt4 := x.enrolNode(n4.Index, 0)
	if err := c.WriteConfig(n4.Index); err != nil {
		t.Fatal(err)
	}
	if err := c.StartNode(n4.Index); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, n4.Index, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, n4.Index); err != nil || st.Role != "observer" {
		t.Fatalf("the enrolled node before its admission: %+v, %v; want an observer", st, err)
	}
	// A certificate from a CA the genesis does not know is refused.
	x.ok(x.host("ca", "init", "--key", x.path("rogue-ca.pem"), "--generate", "--org", x.orgs[0], "--out", x.path("rogue-ca.crt")))
	x.ok(x.host("ca", "issue", "--ca-key", x.path("rogue-ca.pem"), "--ca-cert", x.path("rogue-ca.crt"), "--csr", x.path(n4.Name+".csr"), "--out", x.path("rogue.crt")))
	x.refused(x.client("enrol", "node", "propose", "--api", x.api(0), "--cert", x.path("rogue.crt"), "--address", n4.Peer,
		"--genesis", x.genesis, "--key", x.admins[0], "--key", x.admins[1]), `certificate`)
	// A non-administrator cannot admit a node.
	x.refused(x.client("enrol", "node", "propose", "--api", x.api(0), "--cert", crt4, "--address", n4.Peer,
		"--genesis", x.genesis, "--key", x.officer), `gov.node-add needs one of the roles \[admin\]`)
	// One administrator's approval stores a proposal; nothing changes yet.
	out := x.ok(x.client("enrol", "node", "propose", "--api", x.api(0), "--cert", crt4, "--address", n4.Peer,
		"--genesis", x.genesis, "--key", x.admins[0]))
	proposal := x.find(out, `stored as proposal ([0-9a-f]{64}) with 1 of 2 approvals`)
	if v, err := c.Validators(ctx, 0); err != nil || len(v.Committed) != 4 || v.Pending {
		t.Fatalf("one approval of two changed the validator set: %+v, %v", v, err)
	}
	x.refused(x.client("gov", "approve", proposal, "--api", x.api(0), "--key", x.admins[0]), `already-approved`)
	joinStart := time.Now()
	x.ok(x.client("gov", "approve", proposal, "--api", x.api(0), "--key", x.admins[2]))
	id4 := n4.Key.ID()
	waitFor(t, ctx, "node4 in the validator set of node0's epoch", 90*time.Second, func() (bool, error) {
		v, err := c.Validators(ctx, 0)
		return err == nil && v.Has(id4), err
	})
	waitFor(t, ctx, "node4 votes", 90*time.Second, func() (bool, error) {
		st, err := c.Status(ctx, n4.Index)
		return err == nil && (st.Role == "validator" || st.Role == "leader"), err
	})
	h4 := signedBy(t, ctx, c, 0, id4, 0, 60*time.Second)
	figures["node add: approval to first certificate with its vote"] = time.Since(joinStart)
	t.Logf("node4's first vote in a commit certificate: block %d", h4)
	top, _ := c.Height(ctx, 0)
	if err := c.WaitHeight(ctx, top, 60*time.Second, n4.Index); err != nil {
		t.Fatal(err)
	}

	// 2. The port's officer rotates node1's validator key in its TPM under
	// load; the chain commits throughout.
	load := c.StartLoad(ctx, 20)
	defer load.Stop()
	n1 := c.Nodes[1]
	oldID := n1.Key.ID()
	rot := x.path("node1-rotation.cbor")
	out = x.ok(x.client("node-key", "rotate", "--api", x.api(1), "--key", x.officer, "--new-ref", "tpm:handle=auto",
		"--reason", "annual rotation", "--out", rot))
	newIDText := x.find(out, `its new key ([0-9a-f]+) \(`)
	newRef := x.find(out, `its new key [0-9a-f]+ \((\S+)\)`)
	oldRef := n1.KeyRef
	x.refused(x.client("gov", "rotate-node-key", "--api", x.api(0), "--statement", rot, "--key", x.officer), `gov.node-rotate-key needs one of the roles \[admin\]`)
	rotStart := time.Now()
	hRot, _ := c.Height(ctx, 0)
	x.ok(x.client("gov", "rotate-node-key", "--api", x.api(0), "--statement", rot, "--key", x.admins[0], "--key", x.admins[1]))
	out = x.ok(x.client("node-key", "finish", "--api", x.api(1), "--key", x.officer, "--old", oldID.String(), "--wait", "3m"))
	if !strings.Contains(out, "is destroyed") {
		t.Fatalf("node-key finish did not destroy the old key:\n%s", out)
	}
	figures["key rotation: on chain to old key destroyed"] = time.Since(rotStart)
	st1, err := c.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st1.KeyID.String() != newIDText {
		t.Fatalf("node1 signs as %s after the rotation, want %s", st1.KeyID, newIDText)
	}
	v, err := c.Validators(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Has(oldID) || !v.Has(st1.KeyID) {
		t.Fatalf("validator set after the rotation: old key present %v, new key present %v", v.Has(oldID), v.Has(st1.KeyID))
	}
	var newKey *gm.PublicKey
	for _, p := range v.Validators {
		if p.PeerID == st1.KeyID {
			if newKey, err = p.PublicKey.Parse(); err != nil {
				t.Fatal(err)
			}
		}
	}
	n1.SetKey(newKey, newRef)
	hNew := signedBy(t, ctx, c, 0, st1.KeyID, hRot, 60*time.Second)
	// From the epoch the new key signs in, no certificate carries the old.
	epochNew, _, err := c.CommitSigners(ctx, 0, hNew)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHeight(ctx, hNew+10, 60*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	for h := hRot; h <= hNew+10; h++ {
		ep, signers, err := c.CommitSigners(ctx, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		if ep >= epochNew && slices.Contains(signers, oldID) {
			t.Fatalf("block %d (epoch %d) is certified with the old key %s", h, ep, oldID.Short())
		}
	}
	t.Logf("rotation: on chain after height %d, new key signs from block %d (epoch %d)", hRot, hNew, epochNew)

	// 3. The administrators remove node2 (load still running): it leaves
	// the validator set and the others' admission; they go on.
	id2 := c.Nodes[2].Key.ID()
	x.refused(x.client("gov", "remove-node", "--api", x.api(0), "--peer", id2.String(), "--memo", "decommissioned", "--key", x.officer), `gov.node-remove needs one of the roles \[admin\]`)
	x.ok(x.client("gov", "remove-node", "--api", x.api(0), "--peer", id2.String(), "--memo", "decommissioned",
		"--key", x.admins[1], "--key", x.admins[2]))
	waitFor(t, ctx, "node2 out of node0's validator set", 60*time.Second, func() (bool, error) {
		v, err := c.Validators(ctx, 0)
		return err == nil && !v.Has(id2), err
	})
	removedAt := time.Now()
	hRemoved, _ := c.Height(ctx, 0)
	remaining := []int{0, 1, 3, n4.Index}
	if err := c.WaitHeight(ctx, hRemoved+20, 90*time.Second, remaining...); err != nil {
		t.Fatal(err)
	}
	st0, err := c.Status(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st0.Peers) != 3 || slices.ContainsFunc(st0.Peers, func(p PeerStatus) bool { return p.KeyID == id2 }) {
		t.Fatalf("node0's peers after the removal: %+v; want the 3 other validators", st0.Peers)
	}
	// The previous epoch's validators stay admitted for a grace (10 s) so
	// that they can finish it; after it node2 gets nothing more.
	time.Sleep(time.Until(removedAt.Add(12 * time.Second)))
	h2, err := c.Height(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	top, _ = c.Height(ctx, 0)
	if err := c.WaitHeight(ctx, top+20, 60*time.Second, remaining...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if h, err := c.Height(ctx, 2); err != nil || h != h2 {
		t.Fatalf("the removed node2 went on from height %d to %d (%v): it is still admitted", h2, h, err)
	}
	top, _ = c.Height(ctx, 0)
	peerDrops, _ := c.Metric(ctx, 0, "hallmark_xdp_packets_total", `verdict="drop_peer"`, `path="`+st.FastPath+`"`)
	t.Logf("node2 stays at height %d while the others reach %d; node0's fast path dropped %v peer-port packets from unadmitted addresses", h2, top, peerDrops)
	ag := finishOn(t, c, load, remaining, 2)
	// The removed node's chain is a prefix of the others'.
	for h := uint64(0); h <= h2; h++ {
		a, err := c.Block(ctx, 2, h)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Block(ctx, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != b.ID {
			t.Fatalf("height %d: the removed node2 has block %s, node0 %s", h, a.ID, b.ID)
		}
	}

	// 4. A kiosk of the customs office: enrolled, then frozen, unfrozen
	// and revoked; node0's fast path drops it whenever it is not admitted.
	kpem, kcsr, kcrt := x.path("kiosk-hall3.pem"), x.path("kiosk-hall3.csr"), x.path("kiosk-hall3.crt")
	x.ok(x.host("enrol", "kiosk", "request", "--key", kpem, "--generate", "--chain-id", ChainID, "--org", x.orgs[1], "--out", kcsr))
	x.ok(x.host("ca", "issue", "--ca-key", x.caKey(1), "--ca-cert", x.caCert(1), "--csr", kcsr, "--out", kcrt))
	kb, err := os.ReadFile(kpem)
	if err != nil {
		t.Fatal(err)
	}
	kk, err := gm.ParsePKCS8PEM(kb)
	if err != nil {
		t.Fatal(err)
	}
	kaddr := ledger.AddressOf(kk.PublicKey())
	kc, err := c.KioskClient(ctx, 0, client.Config{Attempts: 2, InitialBackoff: 150 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	// The kiosk sends from its account (whose address stays that of the
	// key it was registered with) signing with its current key.
	seq, current := 0, kk
	submit := func() (kiosk.Receipt, error) {
		seq++
		doc := gm.SM3(fmt.Appendf(nil, "kiosk hall 3 record %d", seq))
		data, err := txs.Encode(&txs.RecordPut{RecordType: "customs.declaration", Subject: kaddr, Digest: &doc})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := client.NewTransaction(ctx, current, client.TxParams{ChainID: ChainID, Type: ledger.TxRecordPut, Data: data, Sender: kaddr})
		if err != nil {
			t.Fatal(err)
		}
		return kc.Submit(ctx, tx)
	}
	drops := func(verdict string) float64 {
		v, err := c.Metric(ctx, 0, "hallmark_xdp_packets_total", `verdict="`+verdict+`"`, `path="`+st.FastPath+`"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dropped := func(verdict string) {
		t.Helper()
		before := drops(verdict)
		if r, err := submit(); err == nil {
			t.Fatalf("a %s kiosk's record got a receipt: %+v", strings.TrimPrefix(verdict, "drop_"), r)
		}
		if after := drops(verdict); after <= before {
			t.Fatalf("node0's fast path (%s) did not count %s: %v then %v", st.FastPath, verdict, before, after)
		}
	}
	accepted := func(what string) {
		t.Helper()
		waitFor(t, ctx, what, 30*time.Second, func() (bool, error) {
			r, err := submit()
			return err == nil && r.Status == kiosk.StatusAccepted, err
		})
	}
	dropped("drop_not_admitted")
	x.refused(x.client("enrol", "kiosk", "register", "--api", x.api(0), "--cert", kcrt, "--genesis", x.genesis,
		"--key", x.officer, "--kiosk-key", kpem), `account.register needs one of the roles \[admin\]`)
	x.ok(x.client("enrol", "kiosk", "register", "--api", x.api(0), "--cert", kcrt, "--genesis", x.genesis,
		"--key", x.admins[0], "--kiosk-key", kpem))
	accepted("the enrolled kiosk accepted")
	x.ok(x.client("submit", "freeze", "--api", x.api(0), "--account", kaddr.String(), "--reason", "inspection", "--key", x.admins[0]))
	waitFor(t, ctx, "the frozen kiosk dropped", 10*time.Second, func() (bool, error) {
		_, err := submit()
		return err != nil, nil
	})
	dropped("drop_frozen")
	x.ok(x.client("submit", "unfreeze", "--api", x.api(0), "--account", kaddr.String(), "--reason", "inspection passed", "--key", x.admins[0]))
	accepted("the unfrozen kiosk accepted")
	// The kiosk's key is replaced: the old key is dropped from then on,
	// the new one admitted for the same account.
	kpem2 := x.path("kiosk-hall3-2027.pem")
	x.ok(x.client("enrol", "kiosk", "rotate-key", "--api", x.api(0), "--key", kpem, "--new-key", kpem2, "--generate"))
	waitFor(t, ctx, "the kiosk's old key dropped", 10*time.Second, func() (bool, error) {
		_, err := submit()
		return err != nil, nil
	})
	dropped("drop_not_admitted")
	if kb, err = os.ReadFile(kpem2); err != nil {
		t.Fatal(err)
	}
	if current, err = gm.ParsePKCS8PEM(kb); err != nil {
		t.Fatal(err)
	}
	accepted("the kiosk's new key accepted")
	// Revoking the certificate the kiosk was enrolled with freezes its
	// account, whichever key it signs with now.
	x.ok(x.client("revoke", "kiosk", "--api", x.api(0), "--cert", kcrt, "--reason", "kiosk stolen", "--key", x.admins[1]))
	waitFor(t, ctx, "the revoked kiosk dropped", 10*time.Second, func() (bool, error) {
		_, err := submit()
		return err != nil, nil
	})
	dropped("drop_frozen")

	// 5. Every node still in the consortium agrees on every block.
	ag, err = c.CheckAgreementOf(ctx, 60*time.Second, remaining...)
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Exited(); len(ex) > 0 {
		t.Fatalf("nodes exited: %v", ex)
	}
	t.Logf("agreement: nodes %v, heights 0..%d, %d transactions", remaining, ag.Height, ag.Txs)

	// The old key no longer exists in node1's TPM: stop the node (it holds
	// the TPM) and look.
	if err := c.StopNode(1); err != nil {
		t.Fatal(err)
	}
	x.refused(x.node(1, "key", "show", oldRef, "--tpm", n1.TPM), `no key at this TPM handle`)
	x.ok(x.node(1, "key", "show", newRef, "--tpm", n1.TPM))
	for k, d := range figures {
		t.Logf("figure: %s: %v", k, d.Round(time.Millisecond))
	}
	t.Logf("figure: whole ceremony test %v", time.Since(testStart).Round(time.Second))
}
