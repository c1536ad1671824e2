package xdp

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

// Filter is the interface user space drives the fast path through, kernel
// program or Go twin alike. Every fact written must have been verified by
// user space first: see docs/PROTOCOL.md.
type Filter interface {
	// Configure sets ports and limits.
	Configure(Config) error
	// SetSender records what the ledger says of a sender key id.
	SetSender(id kiosk.ShortKeyID, s SenderState) error
	// DeleteSender forgets a key id (it is then not admitted).
	DeleteSender(id kiosk.ShortKeyID) error
	// AddAccepted records a transaction id whose signatures user space
	// verified and which the mempool accepted (or already had).
	AddAccepted(id ledger.TxID) error
	// SetPeer admits (or forgets) a node address on the peer port.
	SetPeer(addr netip.Addr, admitted bool) error
	// SetClock publishes the wall-clock offset: wall ns = monotonic ns +
	// offsetNs. overrideNs, when non-zero, replaces the monotonic reading
	// (a test hook; a node leaves it zero).
	SetClock(offsetNs int64, overrideNs uint64) error
	// Counters returns the verdict counts so far.
	Counters() (Counters, error)
	// Close releases the filter (detaching a kernel program).
	Close() error
}

// Twin is the user-space implementation of the fast path: the same
// verdicts as filter.c, in the same order, with tables of the same sizes.
// The ingress calls [Twin.Datagram] for each datagram it reads when the
// kernel program is not attached. It is safe for concurrent use.
type Twin struct {
	mu       sync.Mutex
	p        params
	offset   int64
	override uint64
	senders  map[kiosk.ShortKeyID]SenderState
	accepted *lru[ledger.TxID, struct{}]
	peers    map[[16]byte]struct{}
	buckets  *lru[[16]byte, bucket]
	counts   Counters
	mono     func() uint64
}

type bucket struct {
	units  uint64
	lastNs uint64
}

var _ Filter = (*Twin)(nil)

// NewTwin returns a twin with the given configuration and empty tables.
func NewTwin(cfg Config) (*Twin, error) {
	t := &Twin{
		senders:  make(map[kiosk.ShortKeyID]SenderState),
		accepted: newLRU[ledger.TxID, struct{}](MaxAccepted),
		peers:    make(map[[16]byte]struct{}),
		buckets:  newLRU[[16]byte, bucket](MaxBuckets),
		mono:     monotonicNs,
	}
	if err := t.Configure(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// Configure implements [Filter].
func (t *Twin) Configure(cfg Config) error {
	p, err := cfg.params()
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.p = p
	t.mu.Unlock()
	return nil
}

// SetSender implements [Filter].
func (t *Twin) SetSender(id kiosk.ShortKeyID, s SenderState) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.senders[id]; !ok && len(t.senders) >= MaxSenders {
		return fmt.Errorf("xdp: sender table full (%d entries)", MaxSenders)
	}
	t.senders[id] = s
	return nil
}

// DeleteSender implements [Filter].
func (t *Twin) DeleteSender(id kiosk.ShortKeyID) error {
	t.mu.Lock()
	delete(t.senders, id)
	t.mu.Unlock()
	return nil
}

// AddAccepted implements [Filter].
func (t *Twin) AddAccepted(id ledger.TxID) error {
	t.mu.Lock()
	t.accepted.put(id, struct{}{})
	t.mu.Unlock()
	return nil
}

// SetPeer implements [Filter].
func (t *Twin) SetPeer(addr netip.Addr, admitted bool) error {
	key := addr.As16()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !admitted {
		delete(t.peers, key)
		return nil
	}
	if _, ok := t.peers[key]; !ok && len(t.peers) >= MaxPeers {
		return fmt.Errorf("xdp: peer table full (%d entries)", MaxPeers)
	}
	t.peers[key] = struct{}{}
	return nil
}

// SetClock implements [Filter].
func (t *Twin) SetClock(offsetNs int64, overrideNs uint64) error {
	t.mu.Lock()
	t.offset, t.override = offsetNs, overrideNs
	t.mu.Unlock()
	return nil
}

// Counters implements [Filter].
func (t *Twin) Counters() (Counters, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts, nil
}

// Close implements [Filter].
func (t *Twin) Close() error { return nil }

// Datagram judges a UDP payload that arrived on the ingress port from src,
// as the socket delivers it, and counts the verdict.
func (t *Twin) Datagram(src netip.Addr, payload []byte) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	var v Verdict
	if len(payload) > kiosk.MaxDatagramSize {
		v = DropMalformed
	} else {
		v = t.kiosk(src.As16(), payload)
	}
	t.counts[v]++
	return v
}

// Frame judges a whole Ethernet frame exactly as the BPF program does,
// and counts the verdict. It exists so that tests can feed the same frames
// to both.
func (t *Twin) Frame(frame []byte) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.frame(frame)
	t.counts[v]++
	return v
}

const (
	ethHeaderLen  = 14
	ipv4MinLen    = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	protoUDP      = 17
)

func (t *Twin) frame(f []byte) Verdict {
	if len(f) < ethHeaderLen {
		return PassOther
	}
	var src [16]byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ip := f[ethHeaderLen:]
		if len(ip) < ipv4MinLen {
			return PassOther
		}
		ihl := int(ip[0] & 0x0f)
		if ip[0]>>4 != 4 || ihl < 5 || ip[9] != protoUDP {
			return PassOther
		}
		hlen := ihl * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		frag := binary.BigEndian.Uint16(ip[6:])
		if frag&0x1fff != 0 {
			return PassOther
		}
		if len(ip) < hlen+udpHeaderLen {
			return PassOther
		}
		src[10], src[11] = 0xff, 0xff
		copy(src[12:], ip[12:16])
		if tot < hlen {
			tot = hlen
		}
		return t.udp(src, ip[hlen:], tot-hlen, frag&0x2000 != 0)
	case 0x86dd:
		ip6 := f[ethHeaderLen:]
		if len(ip6) < ipv6HeaderLen {
			return PassOther
		}
		if ip6[0]>>4 != 6 || ip6[6] != protoUDP {
			return PassOther
		}
		copy(src[:], ip6[8:24])
		return t.udp(src, ip6[ipv6HeaderLen:], int(binary.BigEndian.Uint16(ip6[4:])), false)
	}
	return PassOther
}

// udp mirrors udp_verdict: seg is the frame from the UDP header on.
func (t *Twin) udp(src [16]byte, seg []byte, ipPayloadLen int, moreFragments bool) Verdict {
	if len(seg) < udpHeaderLen {
		return PassOther
	}
	dport := binary.BigEndian.Uint16(seg[2:])
	if dport == 0 {
		return PassOther
	}
	if dport == t.p.peerPort {
		if _, ok := t.peers[src]; ok {
			return PassPeer
		}
		return DropPeer
	}
	if dport != t.p.ingressPort {
		return PassOther
	}
	if moreFragments {
		return DropMalformed
	}
	ulen := int(binary.BigEndian.Uint16(seg[4:]))
	if ulen < udpHeaderLen || ulen > ipPayloadLen {
		return DropMalformed
	}
	plen := ulen - udpHeaderLen
	if plen > len(seg)-udpHeaderLen || plen > kiosk.MaxDatagramSize {
		return DropMalformed
	}
	return t.kiosk(src, seg[udpHeaderLen:udpHeaderLen+plen])
}

// kiosk mirrors kiosk_verdict.
func (t *Twin) kiosk(src [16]byte, p []byte) Verdict {
	if len(p) <= kiosk.HeaderSize || len(p) > kiosk.MaxDatagramSize {
		return DropMalformed
	}
	if binary.BigEndian.Uint32(p[0:]) != kiosk.Magic || p[4] != kiosk.Version || p[5] != 0 {
		return DropMalformed
	}
	if int(binary.BigEndian.Uint16(p[6:])) != len(p) {
		return DropMalformed
	}
	var kid kiosk.ShortKeyID
	copy(kid[:], p[8:16])
	switch t.senders[kid] {
	case SenderAdmitted:
	case SenderFrozen:
		return DropFrozen
	default:
		return DropNotAdmitted
	}
	now := t.override
	if now == 0 {
		now = t.mono()
	}
	nowMs := (now + uint64(t.offset)) / 1_000_000
	ts := binary.BigEndian.Uint64(p[48:])
	if ts > nowMs+t.p.maxFutureMs {
		return DropStale
	}
	if nowMs > t.p.maxAgeMs && ts < nowMs-t.p.maxAgeMs {
		return DropStale
	}
	var id ledger.TxID
	copy(id[:], p[16:48])
	if _, ok := t.accepted.get(id); ok {
		return DropReplay
	}
	if !t.rateOK(src, now) {
		return DropRate
	}
	return PassIngress
}

// rateOK mirrors rate_ok.
func (t *Twin) rateOK(src [16]byte, now uint64) bool {
	if t.p.ratePerSec == 0 {
		return true
	}
	b, ok := t.buckets.get(src)
	if !ok {
		if t.p.burstUnits < token {
			return false
		}
		t.buckets.put(src, bucket{units: t.p.burstUnits - token, lastNs: now})
		return true
	}
	var elapsed uint64
	if now > b.lastNs {
		elapsed = now - b.lastNs
	}
	elapsed = min(elapsed, t.p.fillCapNs)
	units := min(b.units+elapsed*t.p.ratePerSec, t.p.burstUnits)
	b.lastNs = now
	pass := units >= token
	if pass {
		units -= token
	}
	b.units = units
	t.buckets.put(src, b)
	return pass
}

// lru is a fixed-capacity map that evicts its least recently used entry.
type lru[K comparable, V any] struct {
	cap   int
	order *list.List // front is most recent; elements hold K
	items map[K]*list.Element
	vals  map[K]V
}

func newLRU[K comparable, V any](capacity int) *lru[K, V] {
	return &lru[K, V]{cap: capacity, order: list.New(), items: make(map[K]*list.Element), vals: make(map[K]V)}
}

func (l *lru[K, V]) get(k K) (V, bool) {
	e, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	l.order.MoveToFront(e)
	return l.vals[k], true
}

func (l *lru[K, V]) put(k K, v V) {
	if e, ok := l.items[k]; ok {
		l.order.MoveToFront(e)
		l.vals[k] = v
		return
	}
	if len(l.items) >= l.cap {
		oldest := l.order.Back()
		ok := oldest.Value.(K)
		l.order.Remove(oldest)
		delete(l.items, ok)
		delete(l.vals, ok)
	}
	l.items[k] = l.order.PushFront(k)
	l.vals[k] = v
}

func (l *lru[K, V]) len() int { return len(l.items) }
