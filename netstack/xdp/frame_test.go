package xdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/netstack/kiosk"
)

// Ports the tests guard.
const (
	testIngressPort = 7400
	testPeerPort    = 7401
)

var (
	testDst  = netip.MustParseAddr("198.18.0.1")
	testPeer = netip.MustParseAddr("198.18.0.9")
)

func src(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}) }

// udpFrame builds an Ethernet frame carrying a UDP datagram with correct
// lengths (IPv4 or IPv6 by the address family).
func udpFrame(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	eth := make([]byte, 14)
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	if src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		ip[8] = 64
		ip[9] = 17
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
		return append(append(eth, ip...), udp...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
	ip[6] = 17
	ip[7] = 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(append(eth, ip...), udp...)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// fixture is a set of senders and datagrams the verdict tests share.
type fixture struct {
	admitted, frozen, stranger *gm.PrivateKey
	tsMs                       int64 // the "now" of the fixture, wall ms
	good                       []byte
	goodTx                     ledger.Transaction
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		admitted: ledgertest.Key(t),
		frozen:   ledgertest.Key(t),
		stranger: ledgertest.Key(t),
		tsMs:     1_700_000_000_000,
	}
	f.goodTx = ledgertest.Tx(t, f.admitted, ledgertest.TxOptions{Timestamp: f.tsMs, Nonce: 1})
	f.good = f.datagram(t, f.admitted, f.tsMs, 1)
	return f
}

func (f *fixture) datagram(t testing.TB, key *gm.PrivateKey, tsMs int64, nonce uint64) []byte {
	t.Helper()
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Timestamp: tsMs, Nonce: nonce, Data: []byte("fixture")})
	dg, err := kiosk.Encode(&tx)
	if err != nil {
		t.Fatal(err)
	}
	return dg
}

func shortID(k *gm.PrivateKey) kiosk.ShortKeyID { return kiosk.ShortKeyID(k.PublicKey().ID().Short()) }

// testMonoNs is the monotonic instant the tests pin both clocks to.
const testMonoNs = 5_000_000_000_000

// install writes the fixture's facts into a filter and pins its clock so
// that wall time equals the fixture's timestamp.
func (f *fixture) install(t testing.TB, flt Filter, peer netip.Addr) {
	t.Helper()
	must(t, flt.Configure(testConfig()))
	must(t, flt.SetSender(shortID(f.admitted), SenderAdmitted))
	must(t, flt.SetSender(shortID(f.frozen), SenderFrozen))
	must(t, flt.SetPeer(peer, true))
	must(t, flt.SetClock(f.tsMs*1_000_000-testMonoNs, testMonoNs))
}

func testConfig() Config {
	return Config{
		IngressPort: testIngressPort,
		PeerPort:    testPeerPort,
		MaxAge:      60_000_000_000, // 60 s
		MaxFuture:   5_000_000_000,  // 5 s
		RatePerSec:  10,
		Burst:       3,
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
