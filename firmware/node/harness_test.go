package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hallmark/firmware/config"
	"hallmark/firmware/genesis"
	"hallmark/firmware/internal/testchain"
	"hallmark/gm"
	"hallmark/ledger"
)

// freeUDPPort returns a port no socket uses right now.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// testNode is one node of a test cluster, which can be stopped and started
// again on the same data directory.
type testNode struct {
	t       *testing.T
	idx     int
	signer  gm.Signer
	cfgPath string
	n       *Node
	cancel  context.CancelFunc
	done    chan error
	logs    *lockedBuffer

	mu      sync.Mutex
	commits map[uint64]ledger.BlockID
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type cluster struct {
	t     *testing.T
	chain *testchain.Chain
	nodes []*testNode
	dir   string
	gpath string
}

// clusterOptions shape a test cluster.
type clusterOptions struct {
	signers []gm.Signer // default: software keys
	n       int
	extra   string // extra top-level JSON config fields, e.g. `"tpm": "..."`
	params  *ledger.Params
	window  func(i int) int // storage window of node i (default 1000)
	nodeKey func(i int) string
}

func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.signers == nil {
		o.signers = testchain.SoftwareValidators(t, o.n)
	}
	n := len(o.signers)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	}
	c := &cluster{t: t, chain: testchain.New(t, testchain.Options{Validators: o.signers, Addrs: addrs, Params: o.params, Time: time.Now().Add(-time.Second).UnixMilli()})}
	c.dir = t.TempDir()
	c.gpath = filepath.Join(c.dir, "genesis.cbor")
	if err := genesis.Write(c.gpath, c.chain.File(t)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		key := "tpm:handle=0x81000010" // unused when the signer is injected
		if o.nodeKey != nil {
			key = o.nodeKey(i)
		}
		window := 1000
		if o.window != nil {
			window = o.window(i)
		}
		c.addNode(o.signers[i], addrs[i], key, window, o.extra)
	}
	t.Cleanup(func() {
		for _, tn := range c.nodes {
			tn.stop()
		}
		if t.Failed() || os.Getenv("HALLMARK_TEST_LOGS") != "" {
			for _, tn := range c.nodes {
				t.Logf("---- node %d log (tail) ----\n%s", tn.idx, tail(tn.logs.String(), 6000))
			}
		}
	})
	return c
}

// addNode writes the configuration of a node with signer at addr and adds
// it to the cluster (not started). A node added after genesis is not a
// validator until governance admits it.
func (c *cluster) addNode(signer gm.Signer, addr, key string, window int, extra string) *testNode {
	t := c.t
	t.Helper()
	i := len(c.nodes)
	ndir := filepath.Join(c.dir, fmt.Sprintf("node%d", i))
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		t.Fatal(err)
	}
	if extra != "" {
		extra = "," + extra
	}
	doc := fmt.Sprintf(`{
  "nodeKey": %q,
  "dataDir": "data",
  "genesis": %q,
  "listen": {"peer": %q, "kiosk": "127.0.0.1:0", "api": "127.0.0.1:0"},
  "storage": {"scrubInterval": "0s", "window": %d},
  "blocks": {"idleWait": "50ms"},
  "mempool": {"workers": 2},
  "log": {"level": "debug"}%s
}`, key, c.gpath, addr, window, extra)
	p := filepath.Join(ndir, "node.json")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{t: t, idx: i, signer: signer, cfgPath: p, commits: map[uint64]ledger.BlockID{}, logs: &lockedBuffer{}}
	c.nodes = append(c.nodes, tn)
	return tn
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// start runs the node; inject says whether to hand it its signer (else it
// opens the key its configuration names).
func (tn *testNode) start(inject bool) {
	tn.t.Helper()
	cfg, err := config.Load(tn.cfgPath)
	if err != nil {
		tn.t.Fatal(err)
	}
	opts := Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(tn.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", tn.idx),
		OnCommit: func(h uint64, id ledger.BlockID) {
			tn.mu.Lock()
			tn.commits[h] = id
			tn.mu.Unlock()
		}}
	if inject {
		opts.Signer = tn.signer
	}
	n, err := New(context.Background(), opts)
	if err != nil {
		tn.t.Fatalf("node %d: %v", tn.idx, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn.n, tn.cancel, tn.done = n, cancel, make(chan error, 1)
	go func() { tn.done <- n.Run(ctx) }()
}

func (tn *testNode) stop() {
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	select {
	case err := <-tn.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			tn.t.Errorf("node %d stopped with %v", tn.idx, err)
		}
	case <-time.After(20 * time.Second):
		tn.t.Errorf("node %d did not stop within 20s", tn.idx)
	}
	tn.cancel = nil
}

func (tn *testNode) height() uint64 {
	tip, _ := tn.n.Store().Tip()
	return tip.Height
}

func (c *cluster) startAll() {
	for _, tn := range c.nodes {
		tn.start(true)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var hs []uint64
			for _, tn := range c.nodes {
				if tn.cancel != nil {
					hs = append(hs, tn.height())
				}
			}
			c.t.Fatalf("timed out after %v waiting for %s (heights %v)", timeout, what, hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) waitHeight(h uint64, timeout time.Duration, nodes ...*testNode) {
	c.t.Helper()
	if nodes == nil {
		nodes = c.nodes
	}
	c.waitFor(fmt.Sprintf("height %d", h), timeout, func() bool {
		for _, tn := range nodes {
			if tn.height() < h {
				return false
			}
		}
		return true
	})
}

// checkAgreement compares the stored block ids of every node at every
// height they share.
func (c *cluster) checkAgreement() uint64 {
	c.t.Helper()
	minH := ^uint64(0)
	for _, tn := range c.nodes {
		minH = min(minH, tn.height())
	}
	for h := uint64(0); h <= minH; h++ {
		var first ledger.BlockID
		for i, tn := range c.nodes {
			hdr, err := tn.n.Store().Header(h)
			if err != nil {
				c.t.Fatalf("node %d height %d: %v", i, h, err)
			}
			if i == 0 {
				first = hdr.ID
			} else if hdr.ID != first {
				c.t.Fatalf("height %d: node %d has %s, node 0 has %s", h, i, hdr.ID, first)
			}
		}
	}
	return minH
}

// api calls a node's HTTP API and decodes the JSON answer into out (if not
// nil); it returns the status code.
func (tn *testNode) api(method, path string, body []byte, header http.Header, out any) int {
	tn.t.Helper()
	req, err := http.NewRequest(method, "http://"+tn.n.Addrs().API+path, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tn.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type txStatus struct {
	Status string `json:"status"`
	Height uint64 `json:"blockHeight"`
	Result *struct {
		Code   uint16 `json:"code"`
		Reason string `json:"reason"`
	} `json:"result"`
	Proof  *ledger.MerkleProof `json:"proof"`
	Header *ledger.Header      `json:"header"`
}

// waitCommitted waits until tx is committed on node tn, and checks its
// inclusion proof.
func (c *cluster) waitCommitted(tn *testNode, id ledger.TxID, timeout time.Duration) txStatus {
	c.t.Helper()
	var st txStatus
	c.waitFor("transaction "+id.String()[:16]+" committed on node "+fmt.Sprint(tn.idx), timeout, func() bool {
		st = txStatus{}
		code := tn.api("GET", "/v1/transactions/"+id.String(), nil, nil, &st)
		return code == 200 && st.Status == "committed"
	})
	if st.Proof == nil || st.Header == nil {
		c.t.Fatal("committed transaction without proof")
	}
	if err := st.Proof.Verify(st.Header.TxRoot, id[:]); err != nil {
		c.t.Fatalf("inclusion proof: %v", err)
	}
	return st
}
