// Package swtpm runs the swtpm TPM emulator for tests: either with a
// command socket the test talks to, or with only a control socket for
// qemu's "-tpmdev emulator" to drive. State lives in a directory, so an
// instance can be stopped and another started on the same TPM.
package swtpm

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// Instance is a running swtpm.
type Instance struct {
	StateDir string
	// CtrlSocket is swtpm's control channel (what qemu connects to).
	CtrlSocket string
	// DataSocket is the command channel; empty for a qemu instance.
	DataSocket string
	cmd        *exec.Cmd
	exited     chan struct{} // closed when swtpm has exited
}

// StateDir returns a fresh directory for a TPM's state with a short path
// (unix socket paths are limited to 108 bytes), removed at the end of t.
func StateDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hm-swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Available reports whether swtpm is installed.
func Available() error {
	_, err := exec.LookPath("swtpm")
	return err
}

// Start runs swtpm on stateDir with a command socket, powered on and
// started up, for the test to talk to.
func Start(t testing.TB, stateDir string) *Instance {
	t.Helper()
	i := &Instance{
		StateDir:   stateDir,
		CtrlSocket: filepath.Join(stateDir, "ctrl.sock"),
		DataSocket: filepath.Join(stateDir, "data.sock"),
	}
	i.start(t, "--server", "type=unixio,path="+i.DataSocket, "--flags", "not-need-init,startup-clear")
	return i
}

// StartForQEMU runs swtpm on stateDir with only a control socket; qemu
// connects to it, initialises the TPM and sends it commands. swtpm exits
// when qemu closes the connection.
func StartForQEMU(t testing.TB, stateDir string) *Instance {
	t.Helper()
	i := &Instance{StateDir: stateDir, CtrlSocket: filepath.Join(stateDir, "ctrl.sock")}
	i.start(t, "--terminate")
	return i
}

func (i *Instance) start(t testing.TB, extra ...string) {
	t.Helper()
	os.Remove(i.CtrlSocket)
	if i.DataSocket != "" {
		os.Remove(i.DataSocket)
	}
	args := append([]string{"socket", "--tpm2", "--tpmstate", "dir=" + i.StateDir,
		"--ctrl", "type=unixio,path=" + i.CtrlSocket, "--log", "file=" + filepath.Join(i.StateDir, "swtpm.log")}, extra...)
	i.cmd = exec.Command("swtpm", args...)
	i.cmd.Stdout, i.cmd.Stderr = os.Stderr, os.Stderr
	if err := i.cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	i.exited = make(chan struct{})
	go func() {
		_ = i.cmd.Wait()
		close(i.exited)
	}()
	t.Cleanup(i.Stop)
	wait := []string{i.CtrlSocket}
	if i.DataSocket != "" {
		wait = append(wait, i.DataSocket)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range wait {
		for {
			if _, err := os.Stat(s); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("swtpm did not create %s", s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop stops swtpm (if it is still running) and waits for it.
func (i *Instance) Stop() {
	if i.cmd == nil || i.cmd.Process == nil {
		return
	}
	select {
	case <-i.exited:
		return
	default:
	}
	_ = i.cmd.Process.Signal(os.Interrupt)
	select {
	case <-i.exited:
	case <-time.After(5 * time.Second):
		_ = i.cmd.Process.Kill()
		<-i.exited
	}
}

// Wait waits for swtpm to exit on its own (a qemu instance exits when qemu
// disconnects).
func (i *Instance) Wait(timeout time.Duration) error {
	select {
	case <-i.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("swtpm still running after %v", timeout)
	}
}

// Open connects to the command socket.
func (i *Instance) Open(t testing.TB) transport.TPMCloser {
	t.Helper()
	c, err := net.Dial("unix", i.DataSocket)
	if err != nil {
		t.Fatalf("connect to swtpm: %v", err)
	}
	tpm := &conn{c: c}
	t.Cleanup(func() { tpm.Close() })
	return tpm
}

// conn sends raw TPM commands over one connection.
type conn struct{ c net.Conn }

func (c *conn) Send(cmd []byte) ([]byte, error) {
	if _, err := c.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("swtpm: send: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c.c, hdr); err != nil {
		return nil, fmt.Errorf("swtpm: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<16 {
		return nil, fmt.Errorf("swtpm: response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(c.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("swtpm: read response: %w", err)
	}
	return rsp, nil
}

func (c *conn) Close() error { return c.c.Close() }
