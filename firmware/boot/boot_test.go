package boot

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hallmark/images/bootctl"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestBootedSlot(t *testing.T) {
	for cmdline, want := range map[string]bootctl.Slot{
		"console=ttyS0 hallmark.slot=A quiet": bootctl.SlotA,
		"hallmark.slot=b":                     bootctl.SlotB,
	} {
		got, err := BootedSlot(cmdline)
		if err != nil || got != want {
			t.Errorf("BootedSlot(%q) = %v, %v", cmdline, got, err)
		}
	}
	for _, bad := range []string{"console=ttyS0", "hallmark.slot=C", "hallmark.slot="} {
		if _, err := BootedSlot(bad); err == nil {
			t.Errorf("BootedSlot(%q) accepted", bad)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "init.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(`{"node":{"command":["/bin/hallmarkd","run"]},"commitAfter":"3s"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.CommitAfter) != 3*time.Second || time.Duration(c.TrialTimeout) != 3*time.Minute || c.TPMDevices[0] != "/dev/tpmrm0" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for name, bad := range map[string]string{
		"no command":      `{"node":{"command":[]}}`,
		"unknown field":   `{"node":{"command":["x"]},"bogus":1}`,
		"bad duration":    `{"node":{"command":["x"]},"commitAfter":"soon"}`,
		"commit too late": `{"node":{"command":["x"]},"commitAfter":"5m","trialTimeout":"1m"}`,
		"trailing":        `{"node":{"command":["x"]}} {}`,
	} {
		if _, err := LoadConfig(write(bad), false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadConfig(write(`{"node":{}}`), true); err != nil {
		t.Fatalf("hooked node without command: %v", err)
	}
	out, err := WriteConfig(Config{Node: NodeConfig{Command: []string{"/bin/x"}}, CommitAfter: Duration(2 * time.Second)})
	if err != nil || !strings.Contains(string(out), `"2s"`) {
		t.Fatalf("WriteConfig = %s, %v", out, err)
	}
}

func TestParseNetworkConfig(t *testing.T) {
	good := `{"hostname":"hm-1","interfaces":[{"name":"eth0","addresses":["198.18.5.10/24","2001:db8::5/64"],"gateway":"198.18.5.1","mtu":1500}]}`
	if _, err := ParseNetworkConfig([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"bad cidr":     `{"interfaces":[{"name":"eth0","addresses":["198.18.5.10"]}]}`,
		"bad gateway":  `{"interfaces":[{"name":"eth0","addresses":[],"gateway":"nope"}]}`,
		"long name":    `{"interfaces":[{"name":"abcdefghijklmnopq","addresses":[]}]}`,
		"tiny mtu":     `{"interfaces":[{"name":"eth0","addresses":[],"mtu":100}]}`,
		"unknown key":  `{"interfaces":[],"dns":["1.1.1.1"]}`,
		"not json":     `eth0 198.18.5.10/24`,
		"empty name":   `{"interfaces":[{"name":"","addresses":[]}]}`,
		"long host":    `{"hostname":"` + strings.Repeat("h", 65) + `","interfaces":[]}`,
		"gateway type": `{"interfaces":[{"name":"eth0","addresses":[],"gateway":5}]}`,
	} {
		if _, err := ParseNetworkConfig([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fakeNode is a NodeRunner whose behaviour per run is scripted.
type fakeNode struct {
	runs   atomic.Int32
	script func(run int, ctx context.Context, ready func()) error
}

func (f *fakeNode) run(ctx context.Context, _ NodeEnv, ready func()) error {
	n := int(f.runs.Add(1))
	return f.script(n, ctx, ready)
}

func superviseFor(t *testing.T, node *fakeNode, d time.Duration) (healthy int32, runs int32) {
	t.Helper()
	var h atomic.Int32
	s := &supervisor{
		log: testLog(t), run: node.run,
		backoffMin: 5 * time.Millisecond, backoffMax: 40 * time.Millisecond,
		commitAfter: 60 * time.Millisecond,
		onHealthy:   func() { h.Add(1) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.loop(ctx); !errors.Is(err, errStopped) {
		t.Fatalf("loop = %v", err)
	}
	return h.Load(), node.runs.Load()
}

func TestSupervisorHealthyOnce(t *testing.T) {
	node := &fakeNode{script: func(run int, ctx context.Context, ready func()) error {
		if run == 1 {
			ready()
			time.Sleep(100 * time.Millisecond) // healthy long enough, then crashes
			return errors.New("crash")
		}
		ready()
		<-ctx.Done()
		return nil
	}}
	healthy, runs := superviseFor(t, node, 500*time.Millisecond)
	if healthy != 1 {
		t.Fatalf("onHealthy called %d times, want once", healthy)
	}
	if runs != 2 {
		t.Fatalf("node ran %d times, want 2 (one restart)", runs)
	}
}

func TestSupervisorCrashLoopIsNeverHealthy(t *testing.T) {
	var starts []time.Time
	node := &fakeNode{script: func(run int, ctx context.Context, ready func()) error {
		starts = append(starts, time.Now())
		ready() // says ready, then dies before commitAfter
		time.Sleep(10 * time.Millisecond)
		return errors.New("crash")
	}}
	healthy, runs := superviseFor(t, node, 400*time.Millisecond)
	if healthy != 0 {
		t.Fatal("a crash-looping node was declared healthy")
	}
	if runs < 3 {
		t.Fatalf("node restarted only %d times", runs)
	}
	// Back-off grows: the gap before the last restart exceeds the first.
	first := starts[1].Sub(starts[0])
	last := starts[len(starts)-1].Sub(starts[len(starts)-2])
	if last <= first {
		t.Fatalf("back-off did not grow: first gap %v, last %v", first, last)
	}
}

func TestExecNodeReadinessAndStop(t *testing.T) {
	r := NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	run := ExecNode(r, []string{"/bin/sh", "-c", `test "$HALLMARK_SLOT" = B && echo READY >&3; exec sleep 30`}, nil, 2*time.Second)
	ready := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, NodeEnv{Slot: "B"}, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("node exited before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no READY from the node")
	}
	stop()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Fatalf("stopped node: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop")
	}

	exit := ExecNode(r, []string{"/bin/sh", "-c", "exit 3"}, nil, time.Second)
	if err := exit(ctx, NodeEnv{}, func() {}); err == nil || !strings.Contains(err.Error(), "status 3") {
		t.Fatalf("exit status: %v", err)
	}
}

// Stopping the supervisor while the node runs returns once the node is
// gone, even when the node ignores SIGTERM and must be killed: the reaper
// that reports its exit does not stop with the supervisor's context.
func TestSupervisorStopsARunningExecNode(t *testing.T) {
	run, stopReaper := execRunner(NodeConfig{
		Command:     []string{"/bin/sh", "-c", `trap '' TERM; echo READY >&3; exec sleep 30`},
		StopTimeout: Duration(200 * time.Millisecond),
	})
	defer stopReaper()
	ready := make(chan struct{})
	var once sync.Once
	s := &supervisor{
		log: testLog(t),
		run: func(ctx context.Context, env NodeEnv, r func()) error {
			return run(ctx, env, func() { r(); once.Do(func() { close(ready) }) })
		},
		backoffMin: 10 * time.Millisecond, backoffMax: 100 * time.Millisecond,
		commitAfter: time.Hour, onHealthy: func() {},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.loop(ctx) }()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the node never said READY")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errStopped) {
			t.Fatalf("loop = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor did not return after its context ended: the node's exit was never reported")
	}
}
