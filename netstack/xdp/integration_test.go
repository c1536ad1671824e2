//go:build linux

package xdp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"hallmark/netstack/kiosk"
)

// TestNamespaceIntegration attaches the program to the receiving end of a
// veth pair in its own namespace, sends real datagrams from the other
// namespace, and checks that valid transactions reach the user-space
// socket while each kind of junk is dropped and counted.
func TestNamespaceIntegration(t *testing.T) {
	tn := newTestNet(t)
	f := newFixture(t)
	prog := loadProgram(t)
	var mode AttachMode
	var rxConn, peerConn *net.UDPConn
	err := inNetns(tn.rx, func() error {
		var err error
		if mode, err = prog.Attach(tn.rxIf); err != nil {
			return err
		}
		if rxConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tn.rxAddr), Port: testIngressPort}); err != nil {
			return err
		}
		peerConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tn.rxAddr), Port: testPeerPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rxConn.Close()
	defer peerConn.Close()
	t.Logf("XDP attached to %s in %s, mode %s", tn.rxIf, tn.rx, mode)
	if mode != ModeNative {
		t.Errorf("attached in %s mode; native XDP is expected on veth", mode)
	}

	// Facts: the fixture's senders; the wall clock from the real clock;
	// a generous rate so only the dedicated phase hits it.
	cfg := testConfig()
	cfg.RatePerSec, cfg.Burst = 1000, 1000
	must(t, prog.Configure(cfg))
	must(t, prog.SetSender(shortID(f.admitted), SenderAdmitted))
	must(t, prog.SetSender(shortID(f.frozen), SenderFrozen))
	must(t, prog.SetPeer(netip.MustParseAddr(tn.txAddr2), true))
	must(t, prog.SetClock(ClockOffset(), 0))
	now := time.Now().UnixMilli()

	const perKind = 10
	valid := map[string]bool{}
	var validDGs [][]byte
	for i := range perKind {
		dg := f.datagram(t, f.admitted, now, uint64(1000+i))
		validDGs = append(validDGs, dg)
		valid[string(dg)] = true
	}
	replayed := f.datagram(t, f.admitted, now, 999)
	h, err := kiosk.ParseHeader(replayed)
	must(t, err)
	must(t, prog.AddAccepted(h.TxID))
	junk := map[Verdict][]byte{
		DropMalformed:   append([]byte("HMKT"), make([]byte, 200)...),
		DropNotAdmitted: f.datagram(t, f.stranger, now, 1),
		DropFrozen:      f.datagram(t, f.frozen, now, 1),
		DropReplay:      replayed,
		DropStale:       f.datagram(t, f.admitted, now-3_600_000, 2),
	}

	before, err := prog.Counters()
	must(t, err)
	send := func(from string, port int, dgs ...[]byte) {
		t.Helper()
		err := inNetns(tn.tx, func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)}, &net.UDPAddr{IP: net.ParseIP(tn.rxAddr), Port: port})
			if err != nil {
				return err
			}
			defer c.Close()
			for _, dg := range dgs {
				if _, err := c.Write(dg); err != nil {
					return err
				}
				time.Sleep(200 * time.Microsecond)
			}
			return nil
		})
		must(t, err)
	}
	for i := range perKind {
		send(tn.txAddr, testIngressPort, validDGs[i])
		for _, dg := range junk {
			send(tn.txAddr, testIngressPort, dg)
		}
	}
	// Peer port: .2 is not an admitted node, .3 is.
	send(tn.txAddr, testPeerPort, []byte("quic from a stranger"))
	send(tn.txAddr2, testPeerPort, []byte("quic from a node"))

	got := readAll(t, rxConn, 300*time.Millisecond)
	if len(got) != perKind {
		t.Errorf("%d datagrams reached user space, want the %d valid ones", len(got), perKind)
	}
	for _, dg := range got {
		if !valid[string(dg)] {
			t.Errorf("junk reached user space: %x", dg[:min(len(dg), 64)])
		}
	}
	if p := readAll(t, peerConn, 100*time.Millisecond); len(p) != 1 || string(p[0]) != "quic from a node" {
		t.Errorf("peer port received %q, want only the admitted node's packet", p)
	}

	// Rate: a burst of 5, then drops, from one source.
	cfg.RatePerSec, cfg.Burst = 1, 5
	must(t, prog.Configure(cfg))
	burst := make([][]byte, 12)
	for i := range burst {
		burst[i] = f.datagram(t, f.admitted, now, uint64(2000+i))
	}
	send(tn.txAddr2, testIngressPort, burst...)
	if got := readAll(t, rxConn, 300*time.Millisecond); len(got) != 5 {
		t.Errorf("%d of a 12-datagram burst passed a 5-token bucket", len(got))
	}

	after, err := prog.Counters()
	must(t, err)
	d := after.Sub(before)
	want := Counters{}
	want[PassIngress] = perKind + 5
	for v := range junk {
		want[v] = perKind
	}
	want[DropRate] = 7
	want[DropPeer] = 1
	want[PassPeer] = 1
	for v := DropMalformed; v < NumVerdicts; v++ {
		if d[v] != want[v] {
			t.Errorf("%s counted %d, want %d", v, d[v], want[v])
		}
	}
	if d[PassIngress] != want[PassIngress] || d[PassPeer] != want[PassPeer] {
		t.Errorf("pass counters %v, want %v", d, want)
	}
	t.Logf("counters: %v", d)
}

// readAll reads datagrams until none arrives for quiet.
func readAll(t *testing.T, c *net.UDPConn, quiet time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// TestStartChoosesPath checks that Start attaches natively where it can
// and falls back to the twin, saying so, where it cannot.
func TestStartChoosesPath(t *testing.T) {
	tn := newTestNet(t)
	var fp *FastPath
	must(t, inNetns(tn.rx, func() error {
		var err error
		fp, err = Start(tn.rxIf, testConfig(), nil)
		return err
	}))
	if fp.Mode != "xdp-native" || fp.Twin != nil {
		if fp.Twin != nil {
			t.Skipf("kernel refused XDP in the test namespace; Start fell back to the twin")
		}
		t.Fatalf("mode %s", fp.Mode)
	}
	must(t, fp.Close())
	fp, err := Start("no-such-interface0", testConfig(), nil)
	must(t, err)
	if fp.Mode != "twin" || fp.Twin == nil {
		t.Fatalf("mode %s without the interface", fp.Mode)
	}
}
