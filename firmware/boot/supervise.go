package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hallmark/images"
)

// NodeEnv is what the init tells the node it starts.
type NodeEnv struct {
	// Slot is the slot the system booted ("A" or "B").
	Slot string
	// Trial is true while the slot is on trial after an update.
	Trial bool
	// Release is the booted release.
	Release images.Release
	// DataDir is the mounted data partition.
	DataDir string
	// KeyDir holds the device's key files (see [KeyDir]); the node opens
	// its key with hsm.Open.
	KeyDir string
	// TPM is the TPM device the booted slot was measured into.
	TPM string
}

// NodeRunner runs the node until it exits or ctx is cancelled, and calls
// ready once the node is up and serving. It is the adapter point for the
// node runtime; [ExecNode] runs a command.
type NodeRunner func(ctx context.Context, env NodeEnv, ready func()) error

// ReadyFDEnv names the environment variable telling a node started by
// [ExecNode] which file descriptor to write "READY\n" to once it serves.
const ReadyFDEnv = "HALLMARK_READY_FD"

// Reaper is PID 1's child reaper. Every process the init starts goes
// through it, and it also reaps orphans the kernel re-parents to PID 1,
// which would otherwise stay zombies.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
}

// NewReaper returns a reaper; call Run to start it.
func NewReaper() *Reaper { return &Reaper{waiters: make(map[int]chan unix.WaitStatus)} }

// Run reaps children until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			ch <- ws
			delete(r.waiters, pid)
		}
		r.mu.Unlock()
	}
}

// Start starts a process and returns its pid and a channel that receives
// its wait status when it exits.
func (r *Reaper) Start(argv []string, attr *os.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(argv[0], argv, attr)
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid // Release sets p.Pid to -1
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	_ = p.Release()
	if pid <= 1 {
		return 0, nil, fmt.Errorf("boot: started process has pid %d", pid)
	}
	return pid, ch, nil
}

// signalChild sends sig to a child; it refuses the pids kill(2) treats
// as groups or "everyone".
func signalChild(pid int, sig unix.Signal) {
	if pid > 1 {
		_ = unix.Kill(pid, sig)
	}
}

// ExecNode returns a NodeRunner that runs argv with the reaper. The node
// gets the write end of a pipe as file descriptor 3 (named by
// HALLMARK_READY_FD) and reports readiness by writing a line "READY" to
// it. Its output goes to the console. On cancellation it gets SIGTERM and,
// after stopTimeout, SIGKILL.
func ExecNode(r *Reaper, argv, env []string, stopTimeout time.Duration) NodeRunner {
	return func(ctx context.Context, ne NodeEnv, ready func()) error {
		pr, pw, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("boot: ready pipe: %w", err)
		}
		defer pr.Close()
		environ := append([]string{
			"PATH=/bin:/sbin:/usr/bin",
			ReadyFDEnv + "=3",
			"HALLMARK_SLOT=" + ne.Slot,
			fmt.Sprintf("HALLMARK_TRIAL=%t", ne.Trial),
			"HALLMARK_VERSION=" + ne.Release.Version,
			"HALLMARK_DATA=" + ne.DataDir,
			"HALLMARK_KEY_DIR=" + ne.KeyDir,
			"HALLMARK_TPM=" + ne.TPM,
		}, env...)
		pid, done, err := r.Start(argv, &os.ProcAttr{
			Dir:   "/",
			Env:   environ,
			Files: []*os.File{nil, os.Stdout, os.Stderr, pw},
			Sys:   &unix.SysProcAttr{Setsid: true},
		})
		pw.Close()
		if err != nil {
			return fmt.Errorf("boot: start node %s: %w", argv[0], err)
		}
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "READY" {
					ready()
				}
			}
		}()
		select {
		case ws := <-done:
			return exitError(ws)
		case <-ctx.Done():
		}
		signalChild(pid, unix.SIGTERM)
		select {
		case ws := <-done:
			return exitError(ws)
		case <-time.After(stopTimeout):
		}
		signalChild(pid, unix.SIGKILL)
		return exitError(<-done)
	}
}

func exitError(ws unix.WaitStatus) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("node exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Errorf("node killed by %v", ws.Signal())
	}
	return fmt.Errorf("node stopped (wait status %#x)", uint32(ws))
}

// supervisor keeps the node running: it restarts it after every exit with
// a back-off that doubles after quick exits, and calls onHealthy once,
// when the node has stayed up for commitAfter after reporting ready.
type supervisor struct {
	log         *slog.Logger
	run         NodeRunner
	env         NodeEnv
	backoffMin  time.Duration
	backoffMax  time.Duration
	commitAfter time.Duration
	onHealthy   func()
}

// errStopped is what loop returns when its context ends.
var errStopped = errors.New("boot: supervisor stopped")

func (s *supervisor) loop(ctx context.Context) error {
	backoff := s.backoffMin
	healthy := false
	for restarts := 0; ; restarts++ {
		started := time.Now()
		readyCh := make(chan struct{})
		var once sync.Once
		runCtx, cancel := context.WithCancel(ctx)
		exited := make(chan error, 1)
		go func() {
			exited <- s.run(runCtx, s.env, func() { once.Do(func() { close(readyCh) }) })
		}()
		s.log.Info("node started", "restarts", restarts)
		var healthyTimer <-chan time.Time
		var err error
	running:
		for {
			select {
			case <-readyCh:
				readyCh = nil
				s.log.Info("node ready")
				if !healthy {
					healthyTimer = time.After(s.commitAfter)
				}
			case <-healthyTimer:
				healthyTimer = nil
				healthy = true
				s.log.Info("node healthy", "up", time.Since(started).Round(time.Millisecond).String())
				s.onHealthy()
			case err = <-exited:
				cancel()
				break running
			case <-ctx.Done():
				cancel()
				<-exited
				return errStopped
			}
		}
		up := time.Since(started)
		if up > s.backoffMax {
			backoff = s.backoffMin
		}
		s.log.Warn("node exited; restarting", "err", errString(err), "up", up.Round(time.Millisecond).String(), "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.backoffMax)
	}
}

// execRunner runs the configured node command as a child reaped by its
// own reaper, and returns the runner and the function that stops the
// reaper once the supervisor is done. The reaper takes no context from
// the caller on purpose: stopping the node (shutdown, a trial that timed
// out) cancels the supervisor's context and then waits for the reaper to
// report the node's exit, so a reaper that stopped with that context left
// the init waiting for good.
func execRunner(nc NodeConfig) (run NodeRunner, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	reaper := NewReaper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		reaper.Run(ctx)
	}()
	return ExecNode(reaper, nc.Command, nc.Env, time.Duration(nc.StopTimeout)), func() {
		cancel()
		<-done
	}
}

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
