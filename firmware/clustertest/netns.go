package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// namePrefix starts the name of every network namespace this package makes,
// followed by the owning process id: stale namespaces of a run that died
// (a test binary killed by its timeout) are recognised by a dead owner and
// removed by the next run.
const namePrefix = "hmcl"

var staleName = regexp.MustCompile(`^` + namePrefix + `(\d+)-[0-9a-f]+-`)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// topology is a set of network namespaces joined by one bridge that lives
// in a namespace of its own, so that the host's namespace is never touched:
// every veth pair is created with its ends directly in the bridge namespace
// and in a member namespace.
type topology struct {
	base    string   // unique prefix of this topology's names
	bridge  string   // namespace holding the bridge
	members []string // member namespaces, in order of addition
}

// ip runs iproute2 and returns its error with its output.
func ip(args ...string) error {
	return run(nil, "ip", args...)
}

func run(stdin []byte, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newTopology creates the bridge namespace. The caller adds members and
// removes everything with destroy.
func newTopology() (*topology, error) {
	reapStaleNamespaces()
	t := &topology{base: fmt.Sprintf("%s%d-%06x", namePrefix, os.Getpid(), rand.Uint32()&0xffffff)}
	t.bridge = t.base + "-br"
	if err := ip("netns", "add", t.bridge); err != nil {
		return nil, fmt.Errorf("clustertest: creating a network namespace (the kernel or permissions refuse): %w", err)
	}
	if err := ip("-n", t.bridge, "link", "add", "br0", "type", "bridge"); err != nil {
		t.destroy()
		return nil, fmt.Errorf("clustertest: creating a bridge: %w", err)
	}
	if err := ip("-n", t.bridge, "link", "set", "br0", "up"); err != nil {
		t.destroy()
		return nil, err
	}
	return t, nil
}

// addMember creates namespace base-<suffix> with interface eth0 at addr
// (CIDR) on the bridge, and its loopback up.
func (t *topology) addMember(suffix, cidr string) (string, error) {
	name := t.base + "-" + suffix
	if err := ip("netns", "add", name); err != nil {
		return "", err
	}
	t.members = append(t.members, name)
	port := fmt.Sprintf("p%d", len(t.members)) // bridge-side end, unique in the bridge namespace
	steps := [][]string{
		{"-n", t.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"-n", t.bridge, "link", "set", port, "master", "br0", "up"},
		{"-n", name, "addr", "add", cidr, "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return "", fmt.Errorf("clustertest: namespace %s: %w", name, err)
		}
	}
	return name, nil
}

// destroy deletes the namespaces. Processes still inside one keep it alive
// until they exit, so callers stop their processes first.
func (t *topology) destroy() error {
	var errs []error
	for _, name := range append(append([]string(nil), t.members...), t.bridge) {
		if err := deleteNamespace(name); err != nil {
			errs = append(errs, err)
		}
	}
	t.members = nil
	return errors.Join(errs...)
}

func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ip("netns", "delete", name)
}

// reapStaleNamespaces removes namespaces that this package made in a run
// whose process is gone, after killing what still runs inside them (the
// processes such a run started: nodes and TPMs).
func reapStaleNamespaces() {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid <= 1 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		out, _ := exec.Command("ip", "netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil && p > 1 {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
		_ = deleteNamespace(e.Name())
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// inNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets fn creates belong to that namespace for their whole
// life, whichever thread uses them later. The thread is never returned to
// the Go scheduler: the goroutine ends still locked, so the runtime
// retires the thread.
func inNetns(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread has changed namespace.
		f, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			errc <- fmt.Errorf("clustertest: opening namespace %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("clustertest: joining namespace %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// The partition table every namespace may hold; Heal deletes it.
const nftTable = "hmcl_partition"

// isolate installs drop rules in namespace ns for traffic to and from
// addrs (IPv4), replacing any rules installed before.
func isolate(ns string, addrs []string) error {
	_ = heal(ns)
	if len(addrs) == 0 {
		return nil
	}
	set := strings.Join(addrs, ", ")
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr { %[2]s } drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr { %[2]s } drop
	}
}
`, nftTable, set)
	if err := run([]byte(rules), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("clustertest: nftables in %s: %w", ns, err)
	}
	return nil
}

// heal removes the partition table from namespace ns, if present.
func heal(ns string) error {
	if err := run(nil, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", nftTable); err != nil {
		return nil // no table
	}
	return run(nil, "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", nftTable)
}
