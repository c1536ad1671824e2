package swtpmtest_test

import (
	"net"
	"os"
	"path/filepath"
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
