package boot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConfigureNetworkInNamespace brings up one end of a veth pair inside a
// network namespace made for the test and checks the result with ip(8).
func TestConfigureNetworkInNamespace(t *testing.T) {
	ns := fmt.Sprintf("hm-boot-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("the kernel refused a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "hmtest0", "type", "veth", "peer", "name", "hmtest1").CombinedOutput(); err != nil {
		t.Fatalf("add veth pair: %v: %s", err, out)
	}

	cfg, err := ParseNetworkConfig([]byte(`{"interfaces":[{"name":"hmtest0","addresses":["198.18.7.10/24","2001:db8:7::10/64"],"gateway":"198.18.7.1","mtu":1400}]}`))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// This thread enters the namespace and is never returned to the
		// scheduler (no UnlockOSThread): it dies with the goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- configureNetwork(ctx, testLog(t), cfg, time.Second)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	show := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	link := show("link", "show", "hmtest0")
	if !strings.Contains(link, "mtu 1400") || !strings.Contains(link, ",UP") {
		t.Fatalf("link not up with mtu 1400:\n%s", link)
	}
	if lo := show("link", "show", "lo"); !strings.Contains(lo, ",UP") {
		t.Fatalf("loopback not up:\n%s", lo)
	}
	addrs := show("addr", "show", "hmtest0")
	for _, want := range []string{"198.18.7.10/24", "2001:db8:7::10/64"} {
		if !strings.Contains(addrs, want) {
			t.Fatalf("address %s missing:\n%s", want, addrs)
		}
	}
	if routes := show("route", "show", "default"); !strings.Contains(routes, "via 198.18.7.1 dev hmtest0") {
		t.Fatalf("default route missing:\n%s", routes)
	}
}
