//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"hallmark/gm"
	"hallmark/netstack/kiosk"
)

// minTestRunFrame is the shortest input BPF_PROG_TEST_RUN accepts for an
// XDP program (an Ethernet header); nothing shorter arrives on a wire.
const minTestRunFrame = 14

// pair runs the kernel program and the twin side by side on one clock.
type pair struct {
	t     testing.TB
	prog  *Program
	twin  *Twin
	f     *fixture
	clock uint64 // pinned monotonic ns, shared by both
}

func newPair(t testing.TB) *pair {
	prog := loadProgram(t)
	twin, err := NewTwin(testConfig())
	must(t, err)
	f := newFixture(t)
	f.install(t, prog, testPeer)
	f.install(t, twin, testPeer)
	return &pair{t: t, prog: prog, twin: twin, f: f, clock: testMonoNs}
}

// advance moves the pinned monotonic clock of both by ns (the wall clock
// moves with it).
func (p *pair) advance(ns uint64) {
	p.clock += ns
	off := p.f.tsMs*1_000_000 - testMonoNs
	must(p.t, p.prog.SetClock(off, p.clock))
	must(p.t, p.twin.SetClock(off, p.clock))
}

func (p *pair) accept(dg []byte) {
	h, err := kiosk.ParseHeader(dg)
	if err != nil {
		return
	}
	must(p.t, p.prog.AddAccepted(h.TxID))
	must(p.t, p.twin.AddAccepted(h.TxID))
}

// compare runs frame through both and fails the test if they disagree.
func (p *pair) compare(frame []byte) Verdict {
	p.t.Helper()
	got, err := p.prog.Run(frame)
	if err != nil {
		p.t.Fatalf("bpf: %v (frame %x)", err, frame)
	}
	want := p.twin.Frame(frame)
	if got != want {
		p.t.Fatalf("bpf says %s, twin says %s, frame %x", got, want, frame)
	}
	return got
}

// corpus returns well-formed frames of every kind, the seeds mutations
// start from.
func (p *pair) corpus(rng *rand.Rand) [][]byte {
	f := p.f
	v6src, v6dst := netip.MustParseAddr("2001:2::7"), netip.MustParseAddr("2001:2::1")
	var out [][]byte
	for i := range 6 {
		s := netip.AddrFrom4([4]byte{198, 18, 2, byte(rng.IntN(4))})
		ts := f.tsMs + int64(rng.IntN(130_000)) - 65_000
		for _, key := range []*gm.PrivateKey{f.admitted, f.frozen, f.stranger} {
			dg := f.datagram(p.t, key, ts, uint64(100+i))
			out = append(out, udpFrame(s, testDst, 40000, testIngressPort, dg))
			out = append(out, udpFrame(v6src, v6dst, 40000, testIngressPort, dg))
			if i%2 == 0 && key == f.admitted {
				p.accept(dg)
			}
		}
	}
	out = append(out,
		udpFrame(testPeer, testDst, 4433, testPeerPort, []byte("quic initial")),
		udpFrame(netip.AddrFrom4([4]byte{198, 18, 3, 3}), testDst, 4433, testPeerPort, []byte("quic initial")),
		udpFrame(netip.AddrFrom4([4]byte{198, 18, 3, 4}), testDst, 4433, 53, []byte("dns")),
	)
	return out
}

// mutate returns a variant of frame: bit flips, byte overwrites aimed at
// the fields the program reads, truncation or extension.
func mutate(rng *rand.Rand, frame []byte) []byte {
	b := bytes.Clone(frame)
	// Offsets of interest in an IPv4 frame: protocol fields, lengths,
	// ports, then the kiosk header.
	hot := []int{12, 13, 14, 16, 17, 20, 21, 23, 34, 35, 36, 37, 38, 39, 42, 43, 46, 47, 48, 49, 50, 57, 62, 90, 97, 98, 102, 104}
	for n := 1 + rng.IntN(3); n > 0; n-- {
		switch rng.IntN(6) {
		case 0:
			i := rng.IntN(len(b))
			b[i] ^= 1 << rng.IntN(8)
		case 1:
			if i := hot[rng.IntN(len(hot))]; i < len(b) {
				b[i] = byte(rng.Uint32())
			}
		case 2:
			if i := hot[rng.IntN(len(hot))]; i+1 < len(b) {
				binary.BigEndian.PutUint16(b[i:], uint16(rng.IntN(1400)))
			}
		case 3:
			b = b[:minTestRunFrame+rng.IntN(len(b)-minTestRunFrame+1)]
		case 4:
			extra := make([]byte, rng.IntN(64))
			for j := range extra {
				extra[j] = byte(rng.Uint32())
			}
			b = append(b, extra...)
		case 5:
			// Point the frame at a guarded port.
			if len(b) > 38 {
				port := []uint16{testIngressPort, testPeerPort}[rng.IntN(2)]
				binary.BigEndian.PutUint16(b[36:], port)
			}
		}
	}
	return b
}

// TestDifferential feeds random and mutated frames to the BPF program and
// the Go twin with one shared clock and requires identical verdicts.
func TestDifferential(t *testing.T) {
	p := newPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := p.corpus(rng)
	const frames = 20_000
	var seen Counters
	for i := range frames {
		var frame []byte
		switch r := rng.IntN(10); {
		case r == 0: // pure noise
			frame = make([]byte, minTestRunFrame+rng.IntN(1500))
			for j := range frame {
				frame[j] = byte(rng.Uint32())
			}
		case r < 4: // unchanged seed
			frame = seeds[rng.IntN(len(seeds))]
		default:
			frame = mutate(rng, seeds[rng.IntN(len(seeds))])
		}
		seen[p.compare(frame)]++
		if i%16 == 0 {
			p.advance(uint64(rng.IntN(300_000_000)))
		}
	}
	// The corpus must have exercised every verdict.
	for v := range Verdict(NumVerdicts) {
		if seen[v] == 0 {
			t.Errorf("no frame got verdict %s (%v)", v, seen)
		}
	}
	t.Logf("verdicts over %d frames: %v", frames, seen)
}

// FuzzDifferential is the same comparison driven by the fuzzer: each input
// is a frame and a clock step.
func FuzzDifferential(f *testing.F) {
	p := newPair(f)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range p.corpus(rng) {
		f.Add(s, uint32(0))
		f.Add(mutate(rng, s), uint32(rng.IntN(1_000_000)))
	}
	f.Fuzz(func(t *testing.T, frame []byte, stepUs uint32) {
		if len(frame) < minTestRunFrame {
			return
		}
		p.t = t
		p.advance(uint64(stepUs) * 1000)
		p.compare(frame)
	})
}
