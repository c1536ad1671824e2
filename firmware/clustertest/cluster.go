// Package clustertest runs a Hallmark consortium as real processes for
// fault tests and the end-to-end benchmark: n hallmarkd processes, each
// with its own swtpm holding its SM2 validator key (generated inside that
// TPM), talking real QUIC to each other, fed by kiosk clients over the
// datagram path.
//
// In network-namespace mode every node lives in a namespace of its own,
// joined to the others by veth pairs on a bridge that sits in a further
// namespace, with addresses from 198.18.0.0/15; the node's swtpm runs
// inside the node's namespace on its loopback. The load generator and the
// HTTP client live in a client namespace on the same bridge: the test
// process creates their sockets from a thread that joined it. Faults are
// injected from outside the nodes: SIGKILL, SIGTERM and restart, nftables
// drop rules inside a node's namespace (partitions), and a Byzantine
// process that holds a validator's TPM key. Nothing is added to the host's
// namespace. Names carry the owning process id and a random suffix, and a
// run removes the namespaces of earlier runs whose process died.
//
// In loopback mode the nodes and TPMs listen on 127.0.0.1 with ports picked
// at start; nothing needs root.
//
// The fault tests are behind the build tag "cluster" (make test-cluster);
// the benchmark is tools/benchcluster (make bench-cluster).
package clustertest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/provisioning"
)

// Options shape a cluster.
type Options struct {
	// Nodes is the number of validators (default 4).
	Nodes int
	// Dir holds everything: genesis, keys, per-node TPM state, stores,
	// configurations and logs. Required.
	Dir string
	// Hallmarkd is the node binary. Required.
	Hallmarkd string
	// Swtpm is the swtpm binary (default: swtpm from PATH).
	Swtpm string
	// Netns puts every node in its own network namespace (root only);
	// otherwise the nodes share loopback.
	Netns bool
	// Params are the chain parameters (default ledger.DefaultParams).
	Params *ledger.Params
	// Configure, if set, may change node i's configuration document
	// before it is written (keys as in docs/CONFIG.md).
	Configure func(i int, cfg map[string]any)
	// Provision, if set, replaces the built-in genesis: it is called once
	// every node's TPM runs and must make each node's key (setting
	// Node.Key and Node.KeyRef), set the cluster's Kiosk and Admin keys,
	// and return the path of an approved genesis file. The provisioning
	// tests run the real genesis ceremony here.
	Provision func(ctx context.Context, c *Cluster) (genesisPath string, err error)
	// Log receives progress lines (default: discarded).
	Log io.Writer
}

// ChainID is the chain id of every cluster.
const ChainID = "hallmark-cluster"

// Fixed ports inside a node's own namespace (each namespace has its own
// port space, so they cannot collide with anything).
const (
	nsPeerPort  = 7400
	nsKioskPort = 7401
	nsAPIPort   = 7402
	nsTPMPort   = 2321
)

// Cluster is a running consortium.
type Cluster struct {
	opts  Options
	Nodes []*Node
	// Kiosk is the key of the genesis account with the kiosk role; Admin
	// of the one with the admin role.
	Kiosk, Admin *gm.PrivateKey

	sp       *spawner
	topo     *topology // nil in loopback mode
	clientNS string    // "" in loopback mode
	http     *http.Client

	genesis string // path of the genesis file

	closeOnce sync.Once
	closeErr  error
}

// Node is one validator: its addresses, key and processes.
type Node struct {
	Index int
	Name  string
	// Netns is the node's namespace ("" in loopback mode).
	Netns string
	// IP is the node's address; Peer, Kiosk and API are host:port.
	IP, Peer, Kiosk, API string
	// TPM is the swtpm data port as the node reaches it.
	TPM     string
	tpmCtrl int
	// Key is the validator public key; KeyRef its hsm reference.
	Key    *gm.PublicKey
	KeyRef string
	// attestation is the TPM's evidence for Key, bound to the chain.
	attestation *provisioning.Attestation
	Dir         string
	Config      string

	mu   sync.Mutex
	proc *proc
	tpm  *proc
	down bool // stopped or killed on purpose
}

func (o *Options) defaults() error {
	if o.Nodes == 0 {
		o.Nodes = 4
	}
	if o.Dir == "" || o.Hallmarkd == "" {
		return errors.New("clustertest: Dir and Hallmarkd are required")
	}
	if o.Swtpm == "" {
		o.Swtpm = "swtpm"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Params == nil {
		p := ledger.DefaultParams()
		o.Params = &p
	}
	return nil
}

// ErrRefused wraps a refusal by the kernel or the system (no namespaces,
// no nftables, no swtpm): tests skip on it and say why.
var ErrRefused = errors.New("clustertest: the system refuses")

// Start creates the consortium and starts every TPM and node, waiting
// until each node's API answers. On error everything started is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(opts.Swtpm); err != nil {
		return nil, fmt.Errorf("%w: %s not found (install swtpm swtpm-tools): %v", ErrRefused, opts.Swtpm, err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if opts.Hallmarkd, err = filepath.Abs(opts.Hallmarkd); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{opts: opts, sp: newSpawner()}
	started := c // the returns below set c to nil
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if opts.Netns {
		if err := c.makeNamespaces(); err != nil {
			return nil, err
		}
	} else {
		c.makeLoopback()
	}
	c.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         c.DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}
	for _, n := range c.Nodes {
		if err := c.startTPM(ctx, n); err != nil {
			return nil, err
		}
		if opts.Provision == nil {
			if err := c.generateKey(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	gpath := filepath.Join(c.opts.Dir, "genesis.cbor")
	if opts.Provision != nil {
		if gpath, err = opts.Provision(ctx, c); err != nil {
			return nil, err
		}
	} else if err := c.writeGenesis(ctx, gpath); err != nil {
		return nil, err
	}
	c.genesis = gpath
	for _, n := range c.Nodes {
		if err := c.writeConfig(n); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := c.StartNode(n.Index); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := c.WaitReady(ctx, n.Index, 60*time.Second); err != nil {
			return nil, err
		}
	}
	c.logf("cluster: %d nodes up (%s)", len(c.Nodes), c.mode())
	return c, nil
}

func (c *Cluster) mode() string {
	if c.topo != nil {
		return "network namespaces " + c.topo.base + "-*"
	}
	return "loopback"
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

func (c *Cluster) makeNamespaces() error {
	t, err := newTopology()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	c.topo = t
	for range c.opts.Nodes {
		if _, err := c.newNode(); err != nil {
			return err
		}
	}
	if c.clientNS, err = t.addMember("cl", "198.18.0.200/24"); err != nil {
		return err
	}
	// nftables must work inside a namespace for the partition tests.
	if err := isolate(c.clientNS, []string{"198.18.0.254"}); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return heal(c.clientNS)
}

func (c *Cluster) makeLoopback() {
	for range c.opts.Nodes {
		c.newNode() // cannot fail in loopback mode
	}
}

// newNode appends the next node: in its own namespace (address
// 198.18.0.<index+1>) or on loopback with free ports.
func (c *Cluster) newNode() (*Node, error) {
	i := len(c.Nodes)
	n := &Node{Index: i, Name: fmt.Sprintf("node%d", i), Dir: filepath.Join(c.opts.Dir, fmt.Sprintf("node%d", i))}
	if c.topo != nil {
		if i+1 >= 200 {
			return nil, fmt.Errorf("clustertest: at most 199 nodes")
		}
		addr := fmt.Sprintf("198.18.0.%d", i+1)
		ns, err := c.topo.addMember(fmt.Sprintf("n%d", i), addr+"/24")
		if err != nil {
			return nil, err
		}
		n.Netns, n.IP = ns, addr
		n.Peer = net.JoinHostPort(addr, strconv.Itoa(nsPeerPort))
		n.Kiosk = net.JoinHostPort(addr, strconv.Itoa(nsKioskPort))
		n.API = net.JoinHostPort(addr, strconv.Itoa(nsAPIPort))
		n.TPM, n.tpmCtrl = net.JoinHostPort("127.0.0.1", strconv.Itoa(nsTPMPort)), nsTPMPort+1
	} else {
		tpmPort, tpmCtrl := freeTCPPair()
		n.IP = "127.0.0.1"
		n.Peer = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort("udp")))
		n.Kiosk = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort("udp")))
		n.API = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort("tcp")))
		n.TPM, n.tpmCtrl = net.JoinHostPort("127.0.0.1", strconv.Itoa(tpmPort)), tpmCtrl
	}
	c.Nodes = append(c.Nodes, n)
	return n, nil
}

// AddNode prepares one more appliance beside the running cluster: its
// namespace (or loopback ports), its directory and its swtpm, with no key
// and no process yet. The enrolment test makes its key (SetKey), writes
// its configuration (WriteConfig) and starts it (StartNode). AddNode
// changes c.Nodes: call it while nothing else uses the cluster (no load
// running).
func (c *Cluster) AddNode(ctx context.Context) (*Node, error) {
	n, err := c.newNode()
	if err != nil {
		return nil, err
	}
	if err := c.startTPM(ctx, n); err != nil {
		return nil, err
	}
	c.logf("cluster: added %s at %s (not started)", n.Name, n.IP)
	return n, nil
}

// SetKey records the node's identity key and its hsm reference: after its
// enrolment, or after a key rotation (receipts are then certified by the
// new key).
func (n *Node) SetKey(key *gm.PublicKey, ref string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.Key, n.KeyRef = key, ref
}

// identityKey returns the node's identity key, safe against SetKey.
func (n *Node) identityKey() *gm.PublicKey {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Key
}

// freePort returns a port that nothing uses on 127.0.0.1 right now.
func freePort(network string) int {
	if network == "udp" {
		l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0
		}
		defer l.Close()
		return l.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeTCPPair returns two free TCP ports for swtpm's data and control
// channels.
func freeTCPPair() (int, int) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0
	}
	defer l1.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0
	}
	defer l2.Close()
	return l1.Addr().(*net.TCPAddr).Port, l2.Addr().(*net.TCPAddr).Port
}

// command returns a command that runs inside node n's namespace.
func (c *Cluster) command(ns string, name string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

func (c *Cluster) startTPM(ctx context.Context, n *Node) error {
	state := filepath.Join(n.Dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(n.TPM)
	cmd := c.command(n.Netns, c.opts.Swtpm, "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--server", "type=tcp,bindaddr="+host+",port="+port,
		"--ctrl", "type=tcp,bindaddr="+host+",port="+strconv.Itoa(n.tpmCtrl),
		"--flags", "not-need-init,startup-clear")
	p, err := startProc(c.sp, n.Name+" swtpm", cmd, filepath.Join(n.Dir, "swtpm.log"))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.tpm = p
	n.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := inNetns(n.Netns, func() error {
			conn, err := net.DialTimeout("tcp", n.TPM, 200*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("clustertest: %s: swtpm exited (%v); see %s", n.Name, p.err, filepath.Join(n.Dir, "swtpm.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: %s: swtpm does not answer on %s: %w", n.Name, n.TPM, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// generateKey makes the node's validator key inside its TPM, speaking to
// the TPM from inside the node's namespace.
func (c *Cluster) generateKey(ctx context.Context, n *Node) error {
	return inNetns(n.Netns, func() error {
		s, err := hsm.Generate(ctx, "tpm:handle=auto", hsm.Options{TPM: tpm.Config{Addr: n.TPM}})
		if err != nil {
			return fmt.Errorf("clustertest: %s: generating the key in its TPM: %w", n.Name, err)
		}
		n.Key, n.KeyRef = s.PublicKey(), s.Ref()
		if n.attestation, err = provisioning.Attest(ctx, s, ChainID); err != nil {
			s.Close()
			return fmt.Errorf("clustertest: %s: %w", n.Name, err)
		}
		return s.Close()
	})
}

// writeGenesis writes the genesis: the nodes as validators (with their
// TPM attestations), an admin and a kiosk account, approved by the admin;
// the cluster plays the founding administrator and every organisation's
// CA.
func (c *Cluster) writeGenesis(ctx context.Context, gpath string) error {
	var err error
	if c.Kiosk, err = gm.GenerateKey(nil); err != nil {
		return err
	}
	if c.Admin, err = gm.GenerateKey(nil); err != nil {
		return err
	}
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: ChainID, Time: time.Now().Add(-time.Second).UnixMilli(), Params: *c.opts.Params}
	atts := map[gm.KeyID]*provisioning.Attestation{}
	for _, n := range c.Nodes {
		doc.Validators = append(doc.Validators, n.PeerConfig())
		atts[n.Key.ID()] = n.attestation
	}
	for _, a := range []struct {
		k     *gm.PrivateKey
		roles ledger.Role
		name  string
	}{{c.Admin, ledger.RoleAdmin, "admin"}, {c.Kiosk, ledger.RoleKiosk, "kiosk"}} {
		doc.Accounts = append(doc.Accounts, app.GenesisAccount{PublicKey: ledger.KeyBytes(a.k.PublicKey()), Institution: "cluster " + a.name, Roles: a.roles})
	}
	ca, err := gm.GenerateKey(nil)
	if err != nil {
		return err
	}
	g, err := provisioning.QuickGenesis(ctx, doc, provisioning.QuickOptions{CAKey: ca, Attestations: atts, Admins: []gm.Signer{c.Admin}})
	if err != nil {
		return err
	}
	return genesis.Write(gpath, g)
}

// PeerConfig returns the node's validator-set entry.
func (n *Node) PeerConfig() ledger.PeerConfig {
	pk := ledger.KeyBytes(n.Key)
	return ledger.PeerConfig{
		ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "clustertest", PeerID: pk.ID(), Address: n.Peer,
		PublicKey: pk, Organisation: "cluster " + n.Name,
	}
}

// GenesisPath returns the path of the cluster's genesis file.
func (c *Cluster) GenesisPath() string { return c.genesis }

// WriteConfig writes node i's configuration (its key reference, TPM,
// listen addresses and the cluster's genesis, then Options.Configure).
func (c *Cluster) WriteConfig(i int) error { return c.writeConfig(c.Nodes[i]) }

// writeConfig writes node n's configuration.
func (c *Cluster) writeConfig(n *Node) error {
	n.mu.Lock()
	ref := n.KeyRef
	n.mu.Unlock()
	cfg := map[string]any{
		"nodeKey": ref,
		"tpm":     n.TPM,
		"dataDir": "data",
		"genesis": c.genesis,
		"listen":  map[string]any{"peer": n.Peer, "kiosk": n.Kiosk, "api": n.API},
		"api":     map[string]any{"pprof": true},
		"log":     map[string]any{"level": "info"},
	}
	if c.opts.Configure != nil {
		c.opts.Configure(n.Index, cfg)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	n.Config = filepath.Join(n.Dir, "node.json")
	return os.WriteFile(n.Config, append(b, '\n'), 0o644)
}

// StartNode starts node i's hallmarkd (again, after a stop or kill: it
// resumes from its store).
func (c *Cluster) StartNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("clustertest: %s is running", n.Name)
	}
	cmd := c.command(n.Netns, c.opts.Hallmarkd, "-config", n.Config)
	p, err := startProc(c.sp, n.Name, cmd, filepath.Join(n.Dir, "hallmarkd.log"))
	if err != nil {
		return err
	}
	c.logf("cluster: started %s (pid %d)", n.Name, p.pid())
	n.proc, n.down = p, false
	return nil
}

// KillNode sends SIGKILL to node i's hallmarkd: a crash, or a power cut
// that leaves the TPM running.
func (c *Cluster) KillNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	p := n.proc
	n.down = true
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("clustertest: %s was never started", n.Name)
	}
	c.logf("cluster: SIGKILL %s (pid %d)", n.Name, p.pid())
	return p.kill()
}

// StopNode stops node i's hallmarkd with SIGTERM (a clean shutdown) and
// reports whether it stopped cleanly.
func (c *Cluster) StopNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	p := n.proc
	n.down = true
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	c.logf("cluster: SIGTERM %s (pid %d)", n.Name, p.pid())
	return p.stop(30 * time.Second)
}

// Running reports whether node i's hallmarkd runs.
func (c *Cluster) Running(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.exited()
}

// Pid returns node i's hallmarkd process id (0 if not running).
func (c *Cluster) Pid(i int) int {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.exited() {
		return 0
	}
	return n.proc.pid()
}

// Memory returns node i's memory use, with its peak so far.
func (c *Cluster) Memory(i int) (MemStats, error) {
	pid := c.Pid(i)
	if pid == 0 {
		return MemStats{}, fmt.Errorf("clustertest: %s is not running", c.Nodes[i].Name)
	}
	return readMemStats(pid)
}

// Exited returns the nodes whose process has ended although nobody
// stopped them, with how.
func (c *Cluster) Exited() []string {
	var out []string
	for _, n := range c.Nodes {
		n.mu.Lock()
		if n.proc != nil && !n.down && n.proc.exited() {
			out = append(out, fmt.Sprintf("%s: %v", n.Name, n.proc.err))
		}
		n.mu.Unlock()
	}
	return out
}

// WaitReady waits until node i's API answers.
func (c *Cluster) WaitReady(ctx context.Context, i int, timeout time.Duration) error {
	n := c.Nodes[i]
	deadline := time.Now().Add(timeout)
	for {
		if _, err := c.Status(ctx, i); err == nil {
			return nil
		}
		n.mu.Lock()
		p := n.proc
		n.mu.Unlock()
		if p != nil && p.exited() {
			return fmt.Errorf("clustertest: %s exited (%v); the end of its log:\n%s", n.Name, p.err, c.LogTail(i, 3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: %s did not answer on %s within %v; the end of its log:\n%s", n.Name, n.API, timeout, c.LogTail(i, 3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTail returns the last max bytes of node i's log.
func (c *Cluster) LogTail(i int, max int) string {
	b, err := os.ReadFile(filepath.Join(c.Nodes[i].Dir, "hallmarkd.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > max {
		return "…" + string(b[len(b)-max:])
	}
	return string(b)
}

// Close stops every node (SIGTERM, then SIGKILL), every TPM, and removes
// the namespaces. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, n := range c.Nodes {
			n.mu.Lock()
			p := n.proc
			n.mu.Unlock()
			if p != nil {
				wg.Go(func() {
					if err := p.stop(30 * time.Second); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for _, n := range c.Nodes {
			n.mu.Lock()
			p := n.tpm
			n.mu.Unlock()
			if p != nil {
				if err := p.stop(5 * time.Second); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if c.http != nil {
			c.http.CloseIdleConnections()
		}
		c.sp.close()
		if c.topo != nil {
			if err := c.topo.destroy(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// DialContext dials from the client side: inside the client namespace in
// namespace mode.
func (c *Cluster) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(c.clientNS, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// InClientNetns runs fn with the calling thread in the client namespace
// (directly in loopback mode): sockets it opens stay there.
func (c *Cluster) InClientNetns(fn func() error) error { return inNetns(c.clientNS, fn) }

// InNodeNetns runs fn with the calling thread in node i's namespace.
func (c *Cluster) InNodeNetns(i int, fn func() error) error { return inNetns(c.Nodes[i].Netns, fn) }

// ClientCommand returns a command to run inside the client namespace
// (directly in loopback mode): an operator's hallmarkctl talking to the
// nodes' APIs.
func (c *Cluster) ClientCommand(name string, args ...string) *exec.Cmd {
	return c.command(c.clientNS, name, args...)
}

// Command returns a command to run inside node i's namespace (directly in
// loopback mode).
func (c *Cluster) Command(i int, name string, args ...string) *exec.Cmd {
	return c.command(c.Nodes[i].Netns, name, args...)
}

// StartProcess starts cmd as a child of the cluster, in its own process
// group, logging to logPath; the cluster kills it on Close if it still
// runs. It returns a function that stops it (SIGTERM, then SIGKILL) and
// reports how it ended.
func (c *Cluster) StartProcess(name string, cmd *exec.Cmd, logPath string) (stop func(grace time.Duration) error, err error) {
	p, err := startProc(c.sp, name, cmd, logPath)
	if err != nil {
		return nil, err
	}
	return func(grace time.Duration) error {
		if p.exited() {
			return p.err
		}
		return p.stop(grace)
	}, nil
}

// NodeKeyHex returns node i's validator public key in hex.
func (n *Node) NodeKeyHex() string {
	pk := ledger.KeyBytes(n.Key)
	return hex.EncodeToString(pk[:])
}
