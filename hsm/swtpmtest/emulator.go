package swtpmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Emulator is a swtpm that serves only a control channel on a unix
// socket, which is how qemu's "-tpmdev emulator" drives a TPM:
//
//	-chardev socket,id=chrtpm,path=<CtrlSocket> -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0
//
// qemu connects, powers the TPM on (its PCRs start from zero, as at a
// machine's power-on) and passes it the guest's commands. swtpm exits when
// qemu disconnects. The TPM's persistent state lives in a state directory
// that an [Emulator] and a [TPM] from [StartWithState] can take turns on
// (one at a time): a test provisions a TPM over TCP, boots a virtual
// machine with it, and inspects it over TCP again.
type Emulator struct {
	t        testing.TB
	stateDir string
	ctrl     string
	logPath  string
	proc     *process
}

// StartEmulator runs swtpm for qemu on stateDir (which may hold a TPM's
// state already, or be empty for a new TPM). It returns once the control
// socket exists; it does not connect to it, since swtpm ends with its
// first control connection. A cleanup stops it.
func StartEmulator(t testing.TB, stateDir string) *Emulator {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skipf("swtpmtest: swtpm binary not found in PATH (install the Debian packages swtpm and swtpm-tools): %v", err)
	}
	// Unix socket paths are limited to 108 bytes, and test temporary
	// directories can be longer: the socket gets a short directory.
	sockDir, err := os.MkdirTemp("", "hm-swtpm-")
	if err != nil {
		t.Fatalf("swtpmtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	e := &Emulator{t: t, stateDir: stateDir, ctrl: filepath.Join(sockDir, "ctrl.sock"), logPath: filepath.Join(stateDir, "swtpm.log")}
	e.proc, err = spawn(bin, []string{
		"socket", "--tpm2",
		"--tpmstate", "dir=" + stateDir,
		"--ctrl", "type=unixio,path=" + e.ctrl,
		"--terminate",
		"--log", "file=" + e.logPath + ",level=1",
	})
	if err != nil {
		t.Fatalf("swtpmtest: starting swtpm: %v", err)
	}
	t.Cleanup(func() {
		if err := e.proc.stop(); err != nil {
			t.Errorf("swtpmtest: cleanup: %v", err)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(e.ctrl); err == nil {
			return e
		}
		select {
		case <-e.proc.exited:
			t.Fatalf("swtpmtest: swtpm exited during start-up (%s): %s %s", e.proc.cmd.ProcessState, e.proc.output(), e.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpmtest: swtpm did not create %s within %v", e.ctrl, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CtrlSocket is the path of the control socket qemu connects to.
func (e *Emulator) CtrlSocket() string { return e.ctrl }

// StateDir is the directory holding the TPM's persistent state.
func (e *Emulator) StateDir() string { return e.stateDir }

// Stop terminates swtpm if it still runs and waits for it. The state
// directory stays.
func (e *Emulator) Stop() {
	e.t.Helper()
	if err := e.proc.stop(); err != nil {
		e.t.Fatalf("swtpmtest: stopping swtpm: %v", err)
	}
}

// Wait waits for swtpm to exit on its own, as it does when qemu closes
// the control connection.
func (e *Emulator) Wait(timeout time.Duration) error {
	select {
	case <-e.proc.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("swtpm still running after %v", timeout)
	}
}

// Log returns what swtpm wrote to its log file, for failure messages.
func (e *Emulator) Log() string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(no swtpm log: %v)", err)
	}
	return string(b)
}
