// Package devnet runs a local Hallmark consortium on one machine: n
// hallmarkd processes on loopback, each with its own swtpm holding its SM2
// validator key (generated inside that TPM), a genesis and per-node
// configuration files, and a demo kiosk that submits signed records over the
// datagram path at a steady rate. `make run` drives it through
// `hallmarkctl devnet`.
//
// Everything lives under one directory (./run by default): a state file,
// the genesis (approved by the development admin, with a development root
// CA per organisation and each validator's TPM attestation), the
// development accounts' keys, and per node its swtpm
// state, configuration, store and log. A second run resumes: the TPMs keep
// their keys, the nodes their stores, and the chain continues. With Fresh
// the directory is wiped first. Every child runs in its own process group
// with a parent-death signal; stopping (Ctrl-C) stops the nodes, then the
// TPMs, and leaves no process behind.
package devnet

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
	"time"

	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/provisioning"
)

// Options configure a devnet.
type Options struct {
	// Dir holds the run state (default "run").
	Dir string
	// Nodes is the number of validators (default 4).
	Nodes int
	// BasePort: node i uses BasePort+10i .. +6 (default 7400).
	BasePort int
	// Hallmarkd is the node binary (default "bin/hallmarkd").
	Hallmarkd string
	// Swtpm is the swtpm binary (default "swtpm").
	Swtpm string
	// Fresh wipes Dir first.
	Fresh bool
	// Rate is the demo kiosk's records per second (0: no kiosk).
	Rate float64
	// Out receives progress and the banner.
	Out io.Writer
}

// ChainID is the devnet's chain id.
const ChainID = "hallmark-devnet"

// State is what a devnet records in Dir/devnet.json.
type State struct {
	Version int         `json:"version"`
	ChainID string      `json:"chainId"`
	Created time.Time   `json:"created"`
	Nodes   []NodeState `json:"nodes"`
}

// NodeState is one node's identity and addresses.
type NodeState struct {
	Name      string `json:"name"`
	Dir       string `json:"dir"`
	KeyRef    string `json:"keyRef"`
	PublicKey string `json:"publicKey"` // hex X‖Y
	TPM       string `json:"tpm"`       // swtpm data port, host:port
	TPMCtrl   int    `json:"tpmCtrlPort"`
	Peer      string `json:"peer"`
	Kiosk     string `json:"kiosk"`
	API       string `json:"api"`
	Metrics   string `json:"metrics"`
}

// Accounts of the devnet's genesis, whose keys are written to Dir/keys.
var Accounts = []struct {
	Name  string
	Roles ledger.Role
}{
	{"admin", ledger.RoleAdmin},
	{"regulator", ledger.RoleRegulator},
	{"kiosk", ledger.RoleKiosk},
	{"alice", ledger.RoleMember},
	{"officer", ledger.RoleOfficer},
}

const stateVersion = 1

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = "run"
	}
	if o.Nodes == 0 {
		o.Nodes = 4
	}
	if o.BasePort == 0 {
		o.BasePort = 7400
	}
	if o.Hallmarkd == "" {
		o.Hallmarkd = "bin/hallmarkd"
	}
	if o.Swtpm == "" {
		o.Swtpm = "swtpm"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// LoadState reads a devnet's state file.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "devnet.json"))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("devnet: %s/devnet.json: %w", dir, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("devnet: %s/devnet.json has version %d", dir, s.Version)
	}
	return &s, nil
}

// Net is a running devnet.
type Net struct {
	opts  Options
	State *State
	tpms  []*proc
	nodes []*proc
}

// Start prepares (or resumes) the devnet in opts.Dir and starts its TPMs
// and nodes. The caller stops it with Stop.
func Start(ctx context.Context, opts Options) (n *Net, err error) {
	opts.defaults()
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if opts.Hallmarkd, err = filepath.Abs(opts.Hallmarkd); err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.Hallmarkd); err != nil {
		return nil, fmt.Errorf("devnet: node binary: %w (build it with: go build -o bin/hallmarkd ./cmd/hallmarkd)", err)
	}
	if _, err := exec.LookPath(opts.Swtpm); err != nil {
		return nil, fmt.Errorf("devnet: %s not found: install swtpm (bash scripts/deps.sh)", opts.Swtpm)
	}
	// Whatever fails or is cancelled (Ctrl-C) from here on stops what
	// was started; the returned *Net is nil then, so keep this one.
	started := &Net{opts: opts}
	n = started
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	out := opts.Out
	st, lerr := LoadState(opts.Dir)
	resume := lerr == nil && !opts.Fresh && len(st.Nodes) == opts.Nodes
	if lerr == nil {
		n.reapStale(st)
	}
	if !resume {
		if lerr == nil || opts.Fresh {
			fmt.Fprintf(out, "devnet: starting fresh in %s\n", opts.Dir)
		}
		if err := os.RemoveAll(opts.Dir); err != nil {
			return nil, err
		}
		if st, err = n.create(ctx); err != nil {
			return nil, err
		}
	} else {
		fmt.Fprintf(out, "devnet: resuming the %d-node consortium in %s (make run FRESH=1 starts over)\n", len(st.Nodes), opts.Dir)
		for _, ns := range st.Nodes {
			if err := checkPorts(ns); err != nil {
				return nil, err
			}
			p, err := n.startTPM(ns)
			if err != nil {
				return nil, err
			}
			n.tpms = append(n.tpms, p)
		}
	}
	n.State = st
	for _, ns := range st.Nodes {
		p, err := n.startNode(ns)
		if err != nil {
			return nil, err
		}
		n.nodes = append(n.nodes, p)
	}
	if err := n.waitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return n, nil
}

// reapStale stops processes a previous run of this directory left behind.
func (n *Net) reapStale(st *State) {
	for _, ns := range st.Nodes {
		for _, what := range []string{"hallmarkd", "swtpm"} {
			if killed, _ := reapStale(filepath.Join(ns.Dir, what+".pid"), what, ns.Dir); killed {
				fmt.Fprintf(n.opts.Out, "devnet: stopped a %s left running by an earlier run (%s)\n", what, ns.Name)
			}
		}
	}
}

func portAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// checkPorts fails with a clear message if a port the node needs is taken.
func checkPorts(ns NodeState) error {
	for _, a := range []struct{ network, addr string }{
		{"udp", ns.Peer}, {"udp", ns.Kiosk}, {"tcp", ns.API}, {"tcp", ns.Metrics}, {"tcp", ns.TPM}, {"tcp", portAddr(ns.TPMCtrl)},
	} {
		var err error
		if a.network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", a.addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", a.addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("devnet: %s needs %s/%s, which is in use (another devnet? stop it, or choose --base-port): %v", ns.Name, a.network, a.addr, err)
		}
	}
	return nil
}

// create makes a new consortium: TPMs with keys generated inside them,
// account keys, the genesis, node configurations.
func (n *Net) create(ctx context.Context) (*State, error) {
	o := n.opts
	st := &State{Version: stateVersion, ChainID: ChainID, Created: time.Now().UTC()}
	attestations := map[gm.KeyID]*provisioning.Attestation{}
	for i := range o.Nodes {
		base := o.BasePort + 10*i
		ns := NodeState{
			Name: fmt.Sprintf("node%d", i), Dir: filepath.Join(o.Dir, fmt.Sprintf("node%d", i)),
			TPM: portAddr(base + 5), TPMCtrl: base + 6,
			Peer: portAddr(base), Kiosk: portAddr(base + 1), API: portAddr(base + 2), Metrics: portAddr(base + 3),
		}
		if err := checkPorts(ns); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(ns.Dir, "tpm"), 0o700); err != nil {
			return nil, err
		}
		p, err := n.startTPM(ns)
		if err != nil {
			return nil, err
		}
		n.tpms = append(n.tpms, p)
		fmt.Fprintf(o.Out, "devnet: %s: generating its SM2 validator key inside its TPM (swtpm at %s)\n", ns.Name, ns.TPM)
		s, err := hsm.Generate(ctx, "tpm:handle=auto", hsm.Options{TPM: tpm.Config{Addr: ns.TPM}})
		if err != nil {
			return nil, fmt.Errorf("devnet: %s: generating the key in the TPM: %w", ns.Name, err)
		}
		pk := ledger.KeyBytes(s.PublicKey())
		ns.KeyRef, ns.PublicKey = s.Ref(), hex.EncodeToString(pk[:])
		att, err := provisioning.Attest(ctx, s, ChainID)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("devnet: %s: %w", ns.Name, err)
		}
		attestations[pk.ID()] = att
		if err := s.Close(); err != nil {
			return nil, err
		}
		st.Nodes = append(st.Nodes, ns)
	}
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: ChainID, Time: time.Now().Add(-time.Second).UnixMilli(), Params: ledger.DefaultParams()}
	for _, ns := range st.Nodes {
		key, err := ns.Key()
		if err != nil {
			return nil, err
		}
		pk := ledger.KeyBytes(key)
		doc.Validators = append(doc.Validators, ledger.PeerConfig{
			ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "devnet", PeerID: pk.ID(), Address: ns.Peer,
			PublicKey: pk, Organisation: "devnet " + ns.Name,
		})
	}
	keyDir := filepath.Join(o.Dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	var admins []gm.Signer
	for _, a := range Accounts {
		k, err := writeKey(filepath.Join(keyDir, a.Name+".pem"))
		if err != nil {
			return nil, err
		}
		doc.Accounts = append(doc.Accounts, app.GenesisAccount{PublicKey: ledger.KeyBytes(k.PublicKey()), Institution: "devnet " + a.Name, Roles: a.Roles})
		if a.Roles.Has(ledger.RoleAdmin) {
			admins = append(admins, k)
		}
	}
	// The devnet plays every founding administrator and every
	// organisation's CA (one development key, run/keys/ca.pem); a real
	// consortium runs the ceremony step by step (docs/OPERATIONS.md).
	ca, err := writeKey(filepath.Join(keyDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	gf, err := provisioning.QuickGenesis(ctx, doc, provisioning.QuickOptions{CAKey: ca, Attestations: attestations, Admins: admins})
	if err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	gpath := filepath.Join(o.Dir, "genesis.cbor")
	if err := genesis.Write(gpath, gf); err != nil {
		return nil, err
	}
	for _, ns := range st.Nodes {
		cfg := map[string]any{
			"nodeKey": ns.KeyRef,
			"tpm":     ns.TPM,
			"dataDir": "data",
			"genesis": gpath,
			"listen":  map[string]string{"peer": ns.Peer, "kiosk": ns.Kiosk, "api": ns.API, "metrics": ns.Metrics},
			"log":     map[string]string{"level": "info"},
			"api":     map[string]any{"pprof": true},
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(ns.Dir, "node.json"), append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "devnet.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "devnet: genesis for chain %s with %d validators written to %s\n", ChainID, len(st.Nodes), gpath)
	return st, nil
}

// writeKey makes a development account key and writes it as PKCS#8 PEM.
func writeKey(path string) (*gm.PrivateKey, error) {
	k, err := gm.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	pem, err := k.MarshalPKCS8PEM()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// Key returns the node's validator public key.
func (ns NodeState) Key() (*gm.PublicKey, error) {
	raw, err := hex.DecodeString(ns.PublicKey)
	if err != nil {
		return nil, err
	}
	return gm.ParsePublicKey(raw)
}

func (n *Net) startTPM(ns NodeState) (*proc, error) {
	_, port, _ := net.SplitHostPort(ns.TPM)
	cmd := exec.Command(n.opts.Swtpm, "socket", "--tpm2",
		"--tpmstate", "dir="+filepath.Join(ns.Dir, "tpm"),
		"--server", "type=tcp,bindaddr=127.0.0.1,port="+port,
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(ns.TPMCtrl),
		"--flags", "not-need-init,startup-clear")
	p, err := startProc(ns.Name+" swtpm", cmd, filepath.Join(ns.Dir, "swtpm.log"), filepath.Join(ns.Dir, "swtpm.pid"))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ns.TPM, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		if done, werr := p.exited(); done {
			log, _ := os.ReadFile(filepath.Join(ns.Dir, "swtpm.log"))
			return nil, fmt.Errorf("devnet: %s: swtpm exited (%v): %s", ns.Name, werr, tailOf(string(log), 800))
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("devnet: %s: swtpm does not answer on %s", ns.Name, ns.TPM)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *Net) startNode(ns NodeState) (*proc, error) {
	cmd := exec.Command(n.opts.Hallmarkd, "-config", filepath.Join(ns.Dir, "node.json"))
	return startProc(ns.Name, cmd, filepath.Join(ns.Dir, "hallmarkd.log"), filepath.Join(ns.Dir, "hallmarkd.pid"))
}

// waitReady waits until every node's API answers.
func (n *Net) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i, ns := range n.State.Nodes {
		for {
			if _, err := Status(ctx, "http://"+ns.API); err == nil {
				break
			}
			if done, werr := n.nodes[i].exited(); done {
				log, _ := os.ReadFile(filepath.Join(ns.Dir, "hallmarkd.log"))
				return fmt.Errorf("devnet: %s exited (%v); the end of its log:\n%s", ns.Name, werr, tailOf(string(log), 2000))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("devnet: %s did not answer on %s within %v (log: %s)", ns.Name, ns.API, timeout, filepath.Join(ns.Dir, "hallmarkd.log"))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop stops the nodes (SIGTERM, so they close their stores), then the
// TPMs. Every process is in its own group, which is killed if it does not
// stop in time.
func (n *Net) Stop() error {
	var errs []error
	for _, p := range n.nodes {
		if err := p.stop(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range n.tpms {
		if err := p.stop(5 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	n.nodes, n.tpms = nil, nil
	return errors.Join(errs...)
}

// Exited returns the first node that has exited, if any.
func (n *Net) Exited() (string, error, bool) {
	for i, p := range n.nodes {
		if done, err := p.exited(); done {
			return n.State.Nodes[i].Name, err, true
		}
	}
	return "", nil, false
}

// Status fetches a node's status document.
func Status(ctx context.Context, api string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", api+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return st, nil
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
