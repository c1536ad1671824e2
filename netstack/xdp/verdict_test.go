//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"hallmark/netstack/kiosk"
)

// loadProgram loads the BPF filter, skipping the test only when the
// kernel refuses for lack of privilege.
func loadProgram(t testing.TB) *Program {
	t.Helper()
	p, err := LoadProgram(testConfig())
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
		t.Skipf("kernel refuses to load BPF programs here (need CAP_BPF): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// judge is one implementation of the fast path, seen frame by frame.
type judge struct {
	name string
	flt  Filter
	run  func([]byte) (Verdict, error)
}

func judges(t *testing.T) []judge {
	twin, err := NewTwin(testConfig())
	must(t, err)
	prog := loadProgram(t)
	return []judge{
		{"twin", twin, func(b []byte) (Verdict, error) { return twin.Frame(b), nil }},
		{"bpf", prog, prog.Run},
	}
}

// TestVerdicts feeds one frame per verdict (and per way of being
// malformed) to the BPF program through BPF_PROG_TEST_RUN and to the Go
// twin, and checks both verdicts and both counters.
func TestVerdicts(t *testing.T) {
	f := newFixture(t)
	replayed := f.datagram(t, f.admitted, f.tsMs, 2)
	replayedID, err := kiosk.ParseHeader(replayed)
	must(t, err)

	mutate := func(fn func([]byte)) []byte { b := bytes.Clone(f.good); fn(b); return b }
	ingress := func(i int, payload []byte) []byte {
		return udpFrame(src(i), testDst, 40000, testIngressPort, payload)
	}
	fragment := func(frame []byte, flags uint16) []byte {
		ip := frame[14:]
		binary.BigEndian.PutUint16(ip[6:], flags)
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
		return frame
	}
	udpLenTooLong := ingress(20, f.good)
	binary.BigEndian.PutUint16(udpLenTooLong[14+20+4:], uint16(8+len(f.good)+1))
	bigPayload := make([]byte, kiosk.MaxDatagramSize+1)
	copy(bigPayload, f.good)
	binary.BigEndian.PutUint16(bigPayload[6:], uint16(len(bigPayload)))

	cases := []struct {
		name  string
		frame []byte
		want  Verdict
	}{
		{"valid", ingress(1, f.good), PassIngress},
		{"valid over IPv6", udpFrame(netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), 40000, testIngressPort, f.good), PassIngress},
		{"not admitted", ingress(2, f.datagram(t, f.stranger, f.tsMs, 1)), DropNotAdmitted},
		{"frozen", ingress(3, f.datagram(t, f.frozen, f.tsMs, 1)), DropFrozen},
		{"too old", ingress(4, f.datagram(t, f.admitted, f.tsMs-60_001, 3)), DropStale},
		{"oldest allowed", ingress(5, f.datagram(t, f.admitted, f.tsMs-60_000, 4)), PassIngress},
		{"too far ahead", ingress(6, f.datagram(t, f.admitted, f.tsMs+5_001, 5)), DropStale},
		{"newest allowed", ingress(7, f.datagram(t, f.admitted, f.tsMs+5_000, 6)), PassIngress},
		{"replay", ingress(8, replayed), DropReplay},
		{"bad magic", ingress(9, mutate(func(b []byte) { b[0] = 'X' })), DropMalformed},
		{"bad version", ingress(10, mutate(func(b []byte) { b[4] = 2 })), DropMalformed},
		{"flags set", ingress(11, mutate(func(b []byte) { b[5] = 1 })), DropMalformed},
		{"length field", ingress(12, mutate(func(b []byte) { b[7]++ })), DropMalformed},
		{"header only", ingress(13, mutate(func(b []byte) {})[:kiosk.HeaderSize]), DropMalformed},
		{"empty", ingress(14, nil), DropMalformed},
		{"udp length beyond ip", udpLenTooLong, DropMalformed},
		{"oversize", ingress(15, bigPayload), DropMalformed},
		{"first fragment", fragment(ingress(16, f.good), 0x2000), DropMalformed},
		{"later fragment", fragment(ingress(17, f.good), 0x0010), PassOther},
		{"admitted peer", udpFrame(testPeer, testDst, 5000, testPeerPort, []byte("quic")), PassPeer},
		{"stranger on peer port", udpFrame(src(18), testDst, 5000, testPeerPort, []byte("quic")), DropPeer},
		{"other port", udpFrame(src(19), testDst, 5000, 53, f.good), PassOther},
		{"arp", append(make([]byte, 12), 0x08, 0x06, 0, 1), PassOther},
		{"shortest frame", make([]byte, 14), PassOther},
	}
	for _, j := range judges(t) {
		t.Run(j.name, func(t *testing.T) {
			f.install(t, j.flt, testPeer)
			must(t, j.flt.AddAccepted(replayedID.TxID))
			var want Counters
			for _, c := range cases {
				got, err := j.run(c.frame)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got != c.want {
					t.Errorf("%s: verdict %s, want %s", c.name, got, c.want)
				}
				want[c.want]++
			}
			got, err := j.flt.Counters()
			must(t, err)
			if got != want {
				t.Errorf("counters %v, want %v", got, want)
			}
		})
	}
}

// TestRateLimit drives one source past its bucket and lets it refill, on
// both implementations with the same pinned clock.
func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	frame := udpFrame(src(1), testDst, 40000, testIngressPort, f.good)
	other := udpFrame(src(2), testDst, 40000, testIngressPort, f.good)
	for _, j := range judges(t) {
		t.Run(j.name, func(t *testing.T) {
			f.install(t, j.flt, testPeer)
			step := func(advanceNs int64, fr []byte, want Verdict) {
				t.Helper()
				if advanceNs != 0 {
					// Move the monotonic clock, keep the wall clock.
					must(t, j.flt.SetClock(f.tsMs*1_000_000-testMonoNs-advanceNs, uint64(testMonoNs+advanceNs)))
				}
				got, err := j.run(fr)
				must(t, err)
				if got != want {
					t.Fatalf("at +%d ns: %s, want %s", advanceNs, got, want)
				}
			}
			// Burst 3, then the bucket is empty.
			step(0, frame, PassIngress)
			step(0, frame, PassIngress)
			step(0, frame, PassIngress)
			step(0, frame, DropRate)
			// Another source has its own bucket.
			step(0, other, PassIngress)
			// 10 tokens/s: 99 ms is not yet a token, 100 ms is.
			step(99_000_000, frame, DropRate)
			step(100_000_000, frame, PassIngress)
			step(100_000_000, frame, DropRate)
			// A long pause refills to the burst, no further.
			step(3_600_000_000_000, frame, PassIngress)
			step(3_600_000_000_000, frame, PassIngress)
			step(3_600_000_000_000, frame, PassIngress)
			step(3_600_000_000_000, frame, DropRate)
		})
	}
}

// TestRealClock checks the wall-clock offset path with the monotonic clock
// the kernel reads, not a pinned one.
func TestRealClock(t *testing.T) {
	f := newFixture(t)
	nowMs := (int64(monotonicNs()) + ClockOffset()) / 1_000_000
	fresh := udpFrame(src(1), testDst, 40000, testIngressPort, f.datagram(t, f.admitted, nowMs, 10))
	old := udpFrame(src(2), testDst, 40000, testIngressPort, f.datagram(t, f.admitted, nowMs-3_600_000, 11))
	ahead := udpFrame(src(3), testDst, 40000, testIngressPort, f.datagram(t, f.admitted, nowMs+3_600_000, 12))
	for _, j := range judges(t) {
		t.Run(j.name, func(t *testing.T) {
			f.install(t, j.flt, testPeer)
			must(t, j.flt.SetClock(ClockOffset(), 0))
			for _, c := range []struct {
				frame []byte
				want  Verdict
			}{{fresh, PassIngress}, {old, DropStale}, {ahead, DropStale}} {
				got, err := j.run(c.frame)
				must(t, err)
				if got != c.want {
					t.Errorf("verdict %s, want %s", got, c.want)
				}
			}
		})
	}
}
