//go:build cluster || provisioning

package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hallmark/ledger"
)

var (
	hallmarkdFlag   = flag.String("hallmarkd", "", "hallmarkd binary (default: built from ./cmd/hallmarkd into a temporary directory)")
	hallmarkctlFlag = flag.String("hallmarkctl", "", "hallmarkctl binary for the ceremony tests (default: built from ./cmd/hallmarkctl into a temporary directory)")
	logsFlag        = flag.Bool("logs", false, "print the tail of every node's log at the end of each test, also when it passes")
)

// byzantineEnv, when set, makes the test binary the Byzantine validator
// process: the variable names its configuration file.
const byzantineEnv = "HALLMARK_CLUSTERTEST_BYZANTINE"

var hallmarkd, hallmarkctl string

func TestMain(m *testing.M) {
	if path := os.Getenv(byzantineEnv); path != "" {
		os.Exit(byzantineMain(path))
	}
	flag.Parse()
	hallmarkd, hallmarkctl = *hallmarkdFlag, *hallmarkctlFlag
	var tmp string
	for _, b := range []struct {
		path *string
		pkg  string
	}{{&hallmarkd, "hallmark/cmd/hallmarkd"}, {&hallmarkctl, "hallmark/cmd/hallmarkctl"}} {
		if *b.path != "" {
			continue
		}
		if tmp == "" {
			var err error
			if tmp, err = os.MkdirTemp("", "hallmarkd-bin-"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		*b.path = filepath.Join(tmp, filepath.Base(b.pkg))
		out, err := exec.Command("go", "build", "-o", *b.path, b.pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(tmp)
			os.Exit(1)
		}
	}
	code := m.Run()
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// testParams are the chain parameters of the fault tests: the defaults
// with the test chain's shorter round timeouts, so that a leader that is
// down costs half a second, not one.
func testParams() *ledger.Params {
	p := ledger.DefaultParams()
	p.BaseTimeoutMs = 500
	p.MaxTimeoutMs = 4000
	return &p
}

type testLog struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestCluster starts four nodes, each in its own network namespace with
// its own swtpm. It skips when the kernel or system refuses namespaces or
// nftables, and stops and removes everything when the test ends.
func newTestCluster(t *testing.T) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, Options{
		Dir: t.TempDir(), Hallmarkd: hallmarkd, Netns: true, Params: testParams(), Log: &testLog{t: t},
	})
	if errors.Is(err, ErrRefused) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
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
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	return c
}

// maxHeight returns the highest height among the given nodes.
func maxHeight(t *testing.T, c *Cluster, nodes ...int) uint64 {
	t.Helper()
	var top uint64
	for _, i := range nodes {
		h, err := c.Height(t.Context(), i)
		if err != nil {
			t.Fatalf("%s: %v", c.Nodes[i].Name, err)
		}
		top = max(top, h)
	}
	return top
}

// finish stops the load, waits for what was accepted to commit and checks
// that every node agrees on every height. Transactions accepted by the
// nodes in spare are not required to commit (they were taken by a node
// that crashed before it passed them on).
func finish(t *testing.T, c *Cluster, load *Load, spare ...int) Agreement {
	t.Helper()
	all := make([]int, len(c.Nodes))
	for i := range all {
		all[i] = i
	}
	return finishOn(t, c, load, all, spare...)
}

// finishOn is finish with the agreement checked among the given nodes
// (node nodes[0] is the one whose chain is read): nodes that left the
// consortium are not compared.
func finishOn(t *testing.T, c *Cluster, load *Load, nodes []int, spare ...int) Agreement {
	t.Helper()
	ctx := t.Context()
	stats, err := load.Stop()
	t.Logf("load: %v", stats)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Accepted == 0 {
		t.Fatalf("the load generator got no transaction accepted: %v", stats)
	}
	accepted := load.Accepted()
	must := map[ledger.TxID]bool{}
	for id, a := range accepted {
		isSpare := false
		for _, s := range spare {
			isSpare = isSpare || a.Node == s
		}
		if !isSpare {
			must[id] = true
		}
	}
	// Wait until every transaction that must commit has, on nodes[0].
	deadline := time.Now().Add(60 * time.Second)
	var from uint64 = 1
	committed := map[ledger.TxID]uint64{}
	for {
		top, err := c.Height(ctx, nodes[0])
		if err != nil {
			t.Fatal(err)
		}
		if top >= from {
			got, err := c.CommittedTxs(ctx, nodes[0], from, top)
			if err != nil {
				t.Fatal(err)
			}
			for id, h := range got {
				if prev, dup := committed[id]; dup {
					t.Fatalf("transaction %s committed twice, at %d and %d", id, prev, h)
				}
				committed[id] = h
			}
			from = top + 1
		}
		missing := 0
		for id := range must {
			if _, ok := committed[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted transactions not committed 60s after the load stopped", missing, len(must))
		}
		time.Sleep(200 * time.Millisecond)
	}
	spared := 0
	for id := range accepted {
		if _, ok := committed[id]; !ok {
			spared++
		}
	}
	ag, err := c.CheckAgreementOf(ctx, 60*time.Second, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Exited(); len(ex) > 0 {
		t.Fatalf("nodes exited: %v", ex)
	}
	t.Logf("agreement: %d nodes, heights 0..%d, %d transactions; %d of %d accepted transactions committed (%d accepted by a node that crashed or left did not)",
		len(nodes), ag.Height, ag.Txs, len(accepted)-spared, len(accepted), spared)
	return ag
}

// byzantineMain is the Byzantine validator process.
func byzantineMain(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := os.ReadFile(path)
	if err != nil {
		log.Error("reading the configuration", "err", err)
		return 2
	}
	var cfg ByzantineConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		log.Error("parsing the configuration", "err", err)
		return 2
	}
	// The handler stays installed until the process exits: the test's
	// SIGTERM may race the attack's own end, and a handler removed on the
	// way out would let that signal kill a process that finished cleanly.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		cancel()
	}()
	st, err := RunByzantine(ctx, cfg, log)
	if err != nil {
		log.Error("byzantine", "err", err)
		return 1
	}
	out, _ := json.Marshal(st)
	if err := os.WriteFile(path+".out", out, 0o644); err != nil {
		log.Error("writing the result", "err", err)
		return 1
	}
	return 0
}
