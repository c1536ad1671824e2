//go:build linux

package xdp

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testNet is a pair of network namespaces joined by a veth pair: rx (the
// node, where the program is attached) and tx (the senders).
type testNet struct {
	rx, tx         string // namespace names
	rxIf, txIf     string // interface names inside them
	rxAddr, txAddr string // 198.18.0.0/15 addresses
	txAddr2        string // a second sender address in tx
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newTestNet creates the namespaces, skipping the test only if the
// kernel refuses to create them. They are removed when the test ends,
// whether it passes or not.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 (ip) is not installed; make deps installs it")
	}
	var suffix [3]byte
	rand.Read(suffix[:])
	tag := fmt.Sprintf("%d%s", os.Getpid()%100000, hex.EncodeToString(suffix[:]))
	n := &testNet{
		rx: "hmk-rx-" + tag, tx: "hmk-tx-" + tag,
		rxIf: "hrx" + tag[len(tag)-6:], txIf: "htx" + tag[len(tag)-6:],
		rxAddr: "198.18.0.1", txAddr: "198.18.0.2", txAddr2: "198.18.0.3",
	}
	if err := run("ip", "netns", "add", n.rx); err != nil {
		t.Skipf("kernel refuses to create network namespaces here: %v", err)
	}
	t.Cleanup(func() { run("ip", "netns", "del", n.rx) })
	if err := run("ip", "netns", "add", n.tx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("ip", "netns", "del", n.tx) })
	steps := [][]string{
		{"ip", "link", "add", n.rxIf, "netns", n.rx, "type", "veth", "peer", "name", n.txIf, "netns", n.tx},
		{"ip", "-n", n.rx, "addr", "add", n.rxAddr + "/24", "dev", n.rxIf},
		{"ip", "-n", n.tx, "addr", "add", n.txAddr + "/24", "dev", n.txIf},
		{"ip", "-n", n.tx, "addr", "add", n.txAddr2 + "/24", "dev", n.txIf},
		{"ip", "-n", n.rx, "link", "set", "lo", "up"},
		{"ip", "-n", n.tx, "link", "set", "lo", "up"},
		{"ip", "-n", n.rx, "link", "set", n.rxIf, "up"},
		{"ip", "-n", n.tx, "link", "set", n.txIf, "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// inNetns runs fn on an OS thread switched into namespace name. Sockets
// and links fn creates stay in that namespace after it returns.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked if switching back fails, so that
		// the runtime discards it rather than reuse it elsewhere.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("returning from %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
