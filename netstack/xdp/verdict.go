// Package xdp is Hallmark's fast path for the kiosk ingress and peer
// ports: a BPF program attached with XDP (filter.c, compiled through
// bpf2go) and a Go twin with identical verdicts for hosts where XDP cannot
// be attached. Both implement [Filter]: user space writes verified facts
// into it (admitted and frozen senders, accepted transaction ids, admitted
// node addresses, the clock offset) and reads its counters.
//
// The verdicts, in the order they are taken for a datagram to the ingress
// port: malformed header or lengths; sender not admitted; sender frozen;
// timestamp outside the window; replay of an accepted transaction id;
// source over its token bucket. A datagram to the peer port is dropped
// unless its source address is an admitted node's. Everything else passes.
// docs/PROTOCOL.md explains why no unauthenticated header can get another
// sender's valid transaction dropped (except through the per-source rate
// limit).
package xdp

import (
	"errors"
	"fmt"
	"time"
)

// Verdict is the fast path's decision on one packet. The numbering is the
// BPF program's (enum verdict in filter.c) and indexes the counters.
type Verdict uint8

// Verdicts.
const (
	PassOther       Verdict = 0 // not addressed to a guarded port
	PassIngress     Verdict = 1 // kiosk datagram handed to user space
	PassPeer        Verdict = 2 // peer packet from an admitted node address
	DropMalformed   Verdict = 3 // bad header, or lengths that disagree
	DropNotAdmitted Verdict = 4 // sender key id not admitted
	DropFrozen      Verdict = 5 // sender frozen
	DropReplay      Verdict = 6 // transaction id already accepted
	DropStale       Verdict = 7 // timestamp outside the window
	DropRate        Verdict = 8 // source over its token bucket
	DropPeer        Verdict = 9 // peer port, source not an admitted node

	// NumVerdicts is the number of verdicts (and counters).
	NumVerdicts = 10
)

var verdictNames = [NumVerdicts]string{
	"pass_other", "pass_ingress", "pass_peer", "drop_malformed", "drop_not_admitted",
	"drop_frozen", "drop_replay", "drop_stale", "drop_rate", "drop_peer",
}

// String returns the verdict's metric label, e.g. "drop_replay".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Drop reports whether the packet is dropped.
func (v Verdict) Drop() bool { return v >= DropMalformed && v < NumVerdicts }

// Counters holds one count per verdict.
type Counters [NumVerdicts]uint64

// Each calls fn with every verdict's label and count, in verdict order
// (the form a metrics exporter wants).
func (c *Counters) Each(fn func(label string, n uint64)) {
	for v, n := range c {
		fn(Verdict(v).String(), n)
	}
}

// Dropped returns the number of packets dropped for any reason.
func (c *Counters) Dropped() uint64 {
	var n uint64
	for v := DropMalformed; v < NumVerdicts; v++ {
		n += c[v]
	}
	return n
}

// Sub returns c - o, counter by counter.
func (c Counters) Sub(o Counters) Counters {
	for i := range c {
		c[i] -= o[i]
	}
	return c
}

// SenderState is what the fast path knows of a sender key id.
type SenderState uint8

// Sender states (values of the senders map). A key id absent from the
// map is not admitted.
const (
	SenderAdmitted SenderState = 1
	SenderFrozen   SenderState = 2
)

// Map sizes; the kernel maps and the twin's tables have the same bounds.
const (
	MaxSenders  = 65536
	MaxAccepted = 65536 // least recently used ids are evicted
	MaxPeers    = 1024
	MaxBuckets  = 65536 // least recently used sources are evicted
)

// Config sets the ports the fast path guards and its limits.
type Config struct {
	// IngressPort is the kiosk datagram port; 0 disables its checks.
	IngressPort uint16
	// PeerPort is the QUIC peer port; 0 disables its check.
	PeerPort uint16
	// MaxAge and MaxFuture bound a transaction's timestamp to
	// [now-MaxAge, now+MaxFuture], at millisecond granularity.
	MaxAge, MaxFuture time.Duration
	// RatePerSec and Burst shape the token bucket each source address
	// gets: Burst datagrams at once, RatePerSec sustained. RatePerSec 0
	// disables the limiter.
	RatePerSec uint64
	Burst      uint64
}

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("xdp: invalid configuration")

// token is one token in bucket units; units refill at RatePerSec per ns.
const token = 1_000_000_000

// params is the configuration as both implementations use it (the layout
// of struct config in filter.c, less the clock).
type params struct {
	ingressPort, peerPort uint16
	maxAgeMs, maxFutureMs uint64
	ratePerSec            uint64
	burstUnits            uint64
	fillCapNs             uint64
}

func (c Config) params() (params, error) {
	if c.IngressPort != 0 && c.IngressPort == c.PeerPort {
		return params{}, fmt.Errorf("%w: ingress and peer port are both %d", ErrConfig, c.IngressPort)
	}
	if c.MaxAge < 0 || c.MaxFuture < 0 {
		return params{}, fmt.Errorf("%w: negative timestamp window", ErrConfig)
	}
	p := params{
		ingressPort: c.IngressPort,
		peerPort:    c.PeerPort,
		maxAgeMs:    uint64(c.MaxAge / time.Millisecond),
		maxFutureMs: uint64(c.MaxFuture / time.Millisecond),
		ratePerSec:  c.RatePerSec,
	}
	if c.RatePerSec != 0 {
		if c.Burst == 0 || c.Burst > 1<<32 || c.RatePerSec > 1<<32 {
			return params{}, fmt.Errorf("%w: burst %d and rate %d/s must be in 1..2^32", ErrConfig, c.Burst, c.RatePerSec)
		}
		p.burstUnits = c.Burst * token
		p.fillCapNs = (p.burstUnits + c.RatePerSec - 1) / c.RatePerSec
	}
	return p, nil
}
