// Package swtpmtest runs a real software TPM (swtpm) for tests.
//
// [Start] launches `swtpm socket --tpm2` on free loopback ports with its
// state in a temporary directory, waits until the data port accepts
// connections, and registers a cleanup that stops it. [TPM.Stop] and
// [TPM.Restart] simulate a power cycle: the state directory (persistent
// objects, NV indices, the seeds) survives, volatile state (PCRs, loaded
// objects, sessions) does not, because swtpm is started with
// startup-clear.
//
// [StartEmulator] runs swtpm the way qemu's "-tpmdev emulator" wants it:
// only a control channel, on a unix socket, through which qemu hands over
// the data channel and powers the TPM on. An emulator and a TCP instance
// can take turns on one state directory, so a test provisions a TPM over
// TCP, boots a virtual machine with it, and inspects it again.
//
// Several tests, and several packages' tests, may run swtpm at the same time;
// every instance picks its own ports. A test that calls Start is skipped only
// when the swtpm binary is not installed (Debian: swtpm swtpm-tools).
package swtpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long swtpm may take to accept connections.
const startTimeout = 10 * time.Second

// TPM is one running (or stopped) swtpm instance.
type TPM struct {
	t        testing.TB
	bin      string
	stateDir string
	logPath  string

	mu      sync.Mutex
	proc    *process
	port    int // data (TPM command) port
	ctrl    int // swtpm control-channel port
	running bool
}

// Start runs a fresh swtpm with an empty state directory.
func Start(t testing.TB) *TPM {
	t.Helper()
	return StartWithState(t, t.TempDir())
}

// StartWithState runs swtpm on an existing state directory (one left by
// another instance's [TPM.StateDir], say), so that a test can hand the
// same TPM from one instance to another.
func StartWithState(t testing.TB, stateDir string) *TPM {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skipf("swtpmtest: swtpm binary not found in PATH (install the Debian packages swtpm and swtpm-tools): %v", err)
	}
	s := &TPM{t: t, bin: bin, stateDir: stateDir, logPath: filepath.Join(stateDir, "swtpm.log")}
	t.Cleanup(s.shutdown)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, ctrl, err := freePortPair()
		if err != nil {
			t.Fatalf("swtpmtest: finding free ports: %v", err)
		}
		if lastErr = s.launch(port, ctrl); lastErr == nil {
			return s
		}
		// Another process may have taken the ports between our probe
		// and swtpm's bind; try a new pair.
	}
	t.Fatalf("swtpmtest: starting swtpm: %v", lastErr)
	return nil
}

// Addr is the host:port of the TPM command channel.
func (s *TPM) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// CtrlAddr is the host:port of swtpm's control channel. It speaks swtpm's
// own protocol, not the Microsoft simulator's platform commands.
func (s *TPM) CtrlAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ctrl))
}

// StateDir is the directory holding the TPM's persistent state.
func (s *TPM) StateDir() string { return s.stateDir }

// Running reports whether the process is up.
func (s *TPM) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// Stop terminates swtpm (SIGTERM, then SIGKILL after a grace period) and
// keeps its state directory. Clients connected to it see their connection
// break.
func (s *TPM) Stop() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatalf("swtpmtest: stopping swtpm: %v", err)
	}
}

// Restart stops swtpm if it runs and starts it again on the same ports and
// state directory: a power cycle. Persistent handles and NV indices
// survive; PCRs are reset.
func (s *TPM) Restart() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatalf("swtpmtest: stopping swtpm: %v", err)
	}
	s.mu.Lock()
	port, ctrl := s.port, s.ctrl
	s.mu.Unlock()
	var err error
	// The old process has exited and released its sockets, but give the
	// kernel a few tries in case another process grabbed a port briefly.
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.launch(port, ctrl); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("swtpmtest: restarting swtpm on ports %d/%d: %v", port, ctrl, err)
}

// Log returns what swtpm wrote to its log file, for failure messages.
func (s *TPM) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no swtpm log: %v)", err)
	}
	return string(b)
}

func (s *TPM) launch(port, ctrl int) error {
	args := []string{
		"socket", "--tpm2",
		"--tpmstate", "dir=" + s.stateDir,
		"--server", "type=tcp,port=" + strconv.Itoa(port),
		"--ctrl", "type=tcp,port=" + strconv.Itoa(ctrl),
		"--flags", "not-need-init,startup-clear",
		"--log", "file=" + s.logPath + ",level=1",
	}
	proc, err := spawn(s.bin, args)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-proc.exited:
			return fmt.Errorf("swtpm exited during start-up (%s): %s %s", proc.cmd.ProcessState, proc.output(), s.Log())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			// swtpm serves one client at a time; this probe closes
			// before any test connects.
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = proc.stop()
			return fmt.Errorf("swtpm did not accept connections on %s within %v: %v", addr, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.proc, s.port, s.ctrl, s.running = proc, port, ctrl, true
	s.mu.Unlock()
	return nil
}

func (s *TPM) stop() error {
	s.mu.Lock()
	proc, running := s.proc, s.running
	s.running = false
	s.mu.Unlock()
	if !running {
		return nil
	}
	return proc.stop()
}

func (s *TPM) shutdown() {
	if err := s.stop(); err != nil {
		s.t.Errorf("swtpmtest: cleanup: %v", err)
	}
}

// freePortPair returns a port P and a second port for the control channel,
// P+1 when that is free (the layout PLATFORM-NOTES shows), else any free one.
func freePortPair() (int, int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	defer l.Close()
	if port < 65535 {
		if l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))); err == nil {
			l2.Close()
			return port, port + 1, nil
		}
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer l2.Close()
	return port, l2.Addr().(*net.TCPAddr).Port, nil
}
