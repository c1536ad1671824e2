package swtpmtest_test

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hallmark/hsm/swtpmtest"
)

func TestInstancesRestartAndStop(t *testing.T) {
	a := swtpmtest.Start(t)
	b := swtpmtest.Start(t)
	if a.Addr() == b.Addr() || a.StateDir() == b.StateDir() {
		t.Fatalf("two instances share %s / %s", a.Addr(), a.StateDir())
	}
	addr := a.Addr()
	a.Restart()
	if a.Addr() != addr || !a.Running() {
		t.Fatalf("restart moved the TPM from %s to %s", addr, a.Addr())
	}
	// swtpm writes its permanent state into the state directory.
	if _, err := os.Stat(filepath.Join(a.StateDir(), "tpm2-00.permall")); err != nil {
		t.Fatalf("no persistent state after a restart: %v", err)
	}
	a.Stop()
	if a.Running() {
		t.Fatal("still running after Stop")
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("data port still accepts connections after Stop")
	}
	a.Stop() // idempotent
}

// An emulator for qemu runs on the state a TCP instance left, serves the
// TPM through a data channel handed over its control socket (what qemu
// does), exits when that channel closes (as when qemu quits), and leaves
// the state for the next instance.
func TestEmulatorServesLikeQEMUAndSharesState(t *testing.T) {
	a := swtpmtest.Start(t)
	dir := a.StateDir()
	a.Stop()
	e := swtpmtest.StartEmulator(t, dir)
	if len(e.CtrlSocket()) > 100 || e.StateDir() != dir {
		t.Fatalf("control socket %q (state %q)", e.CtrlSocket(), e.StateDir())
	}
	if err := e.Wait(100 * time.Millisecond); err == nil {
		t.Fatal("emulator exited before anyone connected")
	}
	ctrl, err := net.Dial("unix", e.CtrlSocket())
	if err != nil {
		t.Fatalf("connect to the control socket: %v\n%s", err, e.Log())
	}
	defer ctrl.Close()
	// Hand swtpm one end of a socket pair as its data channel, then power
	// the TPM on, as qemu's tpm_emulator backend does.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := os.NewFile(uintptr(fds[0]), "tpm-data")
	theirs := os.NewFile(uintptr(fds[1]), "tpm-data-swtpm")
	const cmdInit, cmdSetDataFD = 2, 16
	ctrlCommand(t, ctrl.(*net.UnixConn), cmdSetDataFD, nil, syscall.UnixRights(int(theirs.Fd())))
	theirs.Close()
	ctrlCommand(t, ctrl.(*net.UnixConn), cmdInit, []byte{0, 0, 0, 0}, nil)
	// TPM2_Startup(SU_CLEAR) over the data channel.
	if _, err := data.Write([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}); err != nil {
		t.Fatal(err)
	}
	rsp := make([]byte, 10)
	if _, err := io.ReadFull(data, rsp); err != nil {
		t.Fatalf("read TPM2_Startup response: %v", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		t.Fatalf("TPM2_Startup answered 0x%x", rc)
	}
	data.Close()
	if err := e.Wait(10 * time.Second); err != nil {
		t.Fatalf("emulator outlived its data channel: %v", err)
	}
	e.Stop() // fine after the process has exited
	b := swtpmtest.StartWithState(t, dir)
	if !b.Running() {
		t.Fatal("TCP instance on the emulator's state is not running")
	}
	if _, err := os.Stat(filepath.Join(dir, "tpm2-00.permall")); err != nil {
		t.Fatalf("state lost: %v", err)
	}
}

// ctrlCommand sends one command of swtpm's control protocol (big-endian
// command code, payload, optional passed file descriptors) and checks the
// 4-byte result code of its answer.
func ctrlCommand(t *testing.T, c *net.UnixConn, cmd uint32, payload, oob []byte) {
	t.Helper()
	msg := binary.BigEndian.AppendUint32(nil, cmd)
	msg = append(msg, payload...)
	if _, _, err := c.WriteMsgUnix(msg, oob, nil); err != nil {
		t.Fatalf("control command %d: %v", cmd, err)
	}
	var res [4]byte
	if _, err := io.ReadFull(c, res[:]); err != nil {
		t.Fatalf("control command %d: reading the result: %v", cmd, err)
	}
	if rc := binary.BigEndian.Uint32(res[:]); rc != 0 {
		t.Fatalf("control command %d: result 0x%x", cmd, rc)
	}
}
