package devnet

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeBase finds a base port whose node ports are all free.
func freeBase(t *testing.T, nodes int) int {
	for range 50 {
		base := 20000 + 10*rand.IntN(2000)
		ok := true
		for i := range nodes {
			b := base + 10*i
			ns := NodeState{Name: "probe", Peer: portAddr(b), Kiosk: portAddr(b + 1), API: portAddr(b + 2), Metrics: portAddr(b + 3), TPM: portAddr(b + 5), TPMCtrl: b + 6}
			if checkPorts(ns) != nil {
				ok = false
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// The local consortium as `make run` starts it: four hallmarkd processes
// with keys in four swtpms commit the demo kiosk's records, a Ctrl-C leaves
// no process behind, and a second run resumes the same chain.
func TestDevnetRunStopResume(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed (Debian: swtpm swtpm-tools; bash scripts/deps.sh)")
	}
	bin := filepath.Join(t.TempDir(), "hallmarkd")
	build := exec.Command("go", "build", "-o", bin, "hallmark/cmd/hallmarkd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building hallmarkd: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "run")
	opts := Options{Dir: dir, Nodes: 4, BasePort: freeBase(t, 4), Hallmarkd: bin, Rate: 50}

	run := func(until func(st *State) bool) (*State, string) {
		out := &syncBuf{}
		o := opts
		o.Out = out
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, o) }()
		deadline := time.Now().Add(60 * time.Second)
		var st *State
		for {
			if s, err := LoadState(dir); err == nil {
				st = s
				if until(st) {
					break
				}
			}
			select {
			case err := <-done:
				cancel()
				t.Fatalf("devnet ended early: %v\n%s", err, out)
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("devnet did not get there in time:\n%s", out)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("devnet: %v\n%s", err, out)
		}
		return st, out.String()
	}

	heightOf := func(st *State) uint64 {
		s, err := Status(context.Background(), "http://"+st.Nodes[0].API)
		if err != nil {
			return 0
		}
		h, _ := s["committedHeight"].(float64)
		return uint64(h)
	}
	var firstHeight uint64
	st, out := run(func(st *State) bool {
		// Every node committed kiosk records.
		for _, ns := range st.Nodes {
			m, err := metricValue("http://"+ns.Metrics+"/metrics", `hallmark_transactions_committed_total{result="ok"}`)
			if err != nil || m < 20 {
				return false
			}
		}
		firstHeight = heightOf(st)
		return true
	})
	if !strings.Contains(out, "query it with") || !strings.Contains(out, "stopped; state kept") {
		t.Fatalf("output lacks the banner or the stop:\n%s", out)
	}
	assertNoProcesses(t, st)

	// A second run resumes the chain.
	_, out = run(func(st *State) bool { return heightOf(st) > firstHeight+5 })
	if !strings.Contains(out, "resuming") {
		t.Fatalf("second run did not resume:\n%s", out)
	}
	assertNoProcesses(t, st)

	// Ctrl-C while the consortium is still starting: Start returns the
	// cancellation and leaves nothing running.
	o := opts
	o.Out = &syncBuf{}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n, err := Start(ctx, o)
	if err == nil {
		n.Stop()
		t.Fatal("the consortium was up within 300 ms; this part of the test needs a start that is still going")
	}
	if n != nil {
		t.Fatalf("Start failed (%v) but returned a consortium", err)
	}
	assertNoProcesses(t, st)
}

// assertNoProcesses checks that no hallmarkd or swtpm of this devnet runs.
func assertNoProcesses(t *testing.T, st *State) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		line := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		for _, ns := range st.Nodes {
			if strings.Contains(line, ns.Dir) {
				// A zombie is not running; anything else is a leftover.
				stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				if !strings.Contains(string(stat), ") Z ") {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("process left behind: %d %s", pid, line)
				}
			}
		}
	}
	for _, ns := range st.Nodes {
		for _, f := range []string{"hallmarkd.pid", "swtpm.pid"} {
			if _, err := os.Stat(filepath.Join(ns.Dir, f)); err == nil {
				t.Errorf("%s/%s left behind", ns.Name, f)
			}
		}
	}
}
