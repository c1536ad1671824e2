//go:build linux

package xdp

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"hallmark/netstack/kiosk"
)

// floodResult is what one phase of the flood measured.
type floodResult struct {
	junkSent, junkDropped    float64 // per second
	validSent, validReceived float64 // per second
}

// BenchmarkFlood measures, in one run, junk datagrams per second dropped
// with the program attached (native XDP on the receiving veth) against
// the Go twin judging datagrams read from a socket, and the valid
// transactions per second reaching user space during the flood in each
// case. Run it with `make bench-xdp` (-benchtime=1x: each iteration is a
// few seconds of flood per path).
func BenchmarkFlood(b *testing.B) {
	tn := newTestNet(b)
	f := newFixture(b)
	prog := loadProgram(b)
	const phase = 3 * time.Second

	var rx *net.UDPConn
	must(b, inNetns(tn.rx, func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tn.rxAddr), Port: testIngressPort})
		if err == nil {
			err = rx.SetReadBuffer(4 << 20)
		}
		return err
	}))
	defer rx.Close()

	cfg := testConfig()
	cfg.RatePerSec = 0 // measure the junk verdicts, not the limiter
	now := time.Now().UnixMilli()
	valid := f.datagram(b, f.admitted, now, 1)
	junk := f.datagram(b, f.stranger, now, 1)
	twin, err := NewTwin(cfg)
	must(b, err)
	for _, flt := range []Filter{prog, twin} {
		must(b, flt.Configure(cfg))
		must(b, flt.SetSender(shortID(f.admitted), SenderAdmitted))
		must(b, flt.SetClock(ClockOffset(), 0))
	}

	var withXDP, withTwin floodResult
	for range b.N {
		// Phase 1: program attached, user space only counts arrivals.
		var mode AttachMode
		must(b, inNetns(tn.rx, func() error {
			var err error
			mode, err = prog.Attach(tn.rxIf)
			return err
		}))
		before, err := prog.Counters()
		must(b, err)
		r := flood(b, tn, rx, valid, junk, phase, nil)
		after, err := prog.Counters()
		must(b, err)
		r.junkDropped = float64(after.Sub(before)[DropNotAdmitted]) / phase.Seconds()
		must(b, prog.link.Close())
		prog.link = nil
		withXDP = r
		b.Logf("XDP (%s): %+v", mode, r)

		// Phase 2: nothing attached; the twin judges what the socket reads.
		tb, _ := twin.Counters()
		r = flood(b, tn, rx, valid, junk, phase, twin)
		ta, _ := twin.Counters()
		r.junkDropped = float64(ta.Sub(tb)[DropNotAdmitted]) / phase.Seconds()
		withTwin = r
		b.Logf("twin: %+v", r)
	}
	b.ReportMetric(withXDP.junkDropped, "xdp-junk-dropped/s")
	b.ReportMetric(withTwin.junkDropped, "twin-junk-dropped/s")
	b.ReportMetric(withXDP.junkDropped/withTwin.junkDropped, "junk-drop-ratio")
	b.ReportMetric(withXDP.validReceived, "xdp-valid-received/s")
	b.ReportMetric(withTwin.validReceived, "twin-valid-received/s")
	b.ReportMetric(withXDP.validReceived/max(withTwin.validReceived, 1), "valid-ratio")
	fmt.Printf("flood figure: junk dropped/s XDP %.0f vs twin %.0f (ratio %.2f; junk offered %.0f/s vs %.0f/s)\n",
		withXDP.junkDropped, withTwin.junkDropped, withXDP.junkDropped/withTwin.junkDropped, withXDP.junkSent, withTwin.junkSent)
	fmt.Printf("flood figure: valid tx/s reaching user space during the flood XDP %.0f of %.0f sent (%.1f%%) vs twin %.0f of %.0f sent (%.1f%%), ratio %.2f\n",
		withXDP.validReceived, withXDP.validSent, 100*withXDP.validReceived/max(withXDP.validSent, 1),
		withTwin.validReceived, withTwin.validSent, 100*withTwin.validReceived/max(withTwin.validSent, 1),
		withXDP.validReceived/max(withTwin.validReceived, 1))
}

// flood sends junk as fast as two batch writers can and valid datagrams at
// about 20k/s, from the tx namespace, for d; a reader in user space counts
// the valid datagrams that reach it (judging each with twin if non-nil).
func flood(b *testing.B, tn *testNet, rx *net.UDPConn, valid, junk []byte, d time.Duration, twin *Twin) floodResult {
	dst := &net.UDPAddr{IP: net.ParseIP(tn.rxAddr), Port: testIngressPort}
	var junkConns []*ipv4.PacketConn
	var validConn *net.UDPConn
	must(b, inNetns(tn.tx, func() error {
		for range 2 {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tn.txAddr2)})
			if err != nil {
				return err
			}
			junkConns = append(junkConns, ipv4.NewPacketConn(c))
		}
		var err error
		validConn, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tn.txAddr)}, dst)
		return err
	}))
	defer func() {
		for _, c := range junkConns {
			c.Close()
		}
		validConn.Close()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var received, junkSent, validSent atomic.Uint64
	var wg sync.WaitGroup

	// Reader: the user-space side of the ingress.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 2048)
		admitted := valid[8:16]
		for {
			rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			dg := buf[:n]
			if twin != nil && twin.Datagram(from.Addr().Unmap(), dg) != PassIngress {
				continue
			}
			if n > kiosk.HeaderSize && string(dg[8:16]) == string(admitted) {
				received.Add(1)
			}
		}
	}()
	for _, c := range junkConns {
		wg.Go(func() {
			msgs := make([]ipv4.Message, 64)
			for i := range msgs {
				msgs[i] = ipv4.Message{Buffers: [][]byte{junk}, Addr: dst}
			}
			for ctx.Err() == nil {
				n, err := c.WriteBatch(msgs, 0)
				if err != nil {
					continue
				}
				junkSent.Add(uint64(n))
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				for range 20 {
					if _, err := validConn.Write(valid); err == nil {
						validSent.Add(1)
					}
				}
			}
		}
	})
	wg.Wait()
	<-readerDone
	s := d.Seconds()
	return floodResult{
		junkSent:      float64(junkSent.Load()) / s,
		validSent:     float64(validSent.Load()) / s,
		validReceived: float64(received.Load()) / s,
	}
}
