package xdp

import (
	"errors"
	"testing"

	"hallmark/netstack/kiosk"
)

// TestTwinDatagram checks the socket path of the twin against its frame
// path on the same payloads.
func TestTwinDatagram(t *testing.T) {
	f := newFixture(t)
	a, err := NewTwin(testConfig())
	must(t, err)
	b, err := NewTwin(testConfig())
	must(t, err)
	f.install(t, a, testPeer)
	f.install(t, b, testPeer)
	payloads := [][]byte{f.good, f.datagram(t, f.stranger, f.tsMs, 1), f.good[:40], f.good, f.good, f.good}
	for i, p := range payloads {
		va := a.Datagram(src(1), p)
		vb := b.Frame(udpFrame(src(1), testDst, 1, testIngressPort, p))
		if va != vb {
			t.Fatalf("payload %d: socket path %s, frame path %s", i, va, vb)
		}
	}
	ca, _ := a.Counters()
	if ca[DropRate] != 1 || ca[PassIngress] != 3 {
		t.Fatalf("counters %v", ca)
	}
	if v := a.Datagram(src(9), make([]byte, kiosk.MaxDatagramSize+1)); v != DropMalformed {
		t.Fatalf("oversize datagram: %s", v)
	}
}

func TestConfigRejects(t *testing.T) {
	for _, c := range []Config{
		{IngressPort: 1, PeerPort: 1},
		{RatePerSec: 5},
		{MaxAge: -1},
	} {
		if _, err := NewTwin(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
