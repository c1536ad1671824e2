package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hallmark/firmware/clustertest"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

// batch is a set of transactions signed before a phase starts, so that
// signing does not compete with the nodes for the cores while it is
// measured.
type batch struct {
	dgs [][]byte
	ids []ledger.TxID
}

// sign signs n record.put transactions from the kiosk account, on every
// core, and encodes them as kiosk datagrams.
func sign(ctx context.Context, key gm.Signer, n int, workers int, seq0 uint64) (*batch, error) {
	b := &batch{dgs: make([][]byte, n), ids: make([]ledger.TxID, n)}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ts := time.Now().UnixMilli()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tx, err := clustertest.NewRecord(ctx, key, seq0+uint64(i), ts)
				if err == nil {
					b.dgs[i], err = kiosk.Encode(tx)
					b.ids[i] = tx.ID()
				}
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return b, firstErr
}

// tracker follows every transaction of a phase from its send to its first
// terminal event: committed (seen in a block on the watched node), refused
// by a receipt, or given up on.
type tracker struct {
	mu      sync.Mutex
	index   map[ledger.TxID]int
	sentAt  []time.Time
	done    []bool
	permits chan struct{} // closed-loop window; nil in open loop

	// Commits observed, with the time the watcher saw them.
	commits []commit
	// Receipt counts.
	accepted, duplicate, busy, rejected, expired int
	reasons                                      map[kiosk.Reason]int
}

type commit struct {
	idx int
	at  time.Time
}

func newTracker(b *batch, window int) *tracker {
	t := &tracker{index: make(map[ledger.TxID]int, len(b.ids)), sentAt: make([]time.Time, len(b.ids)), done: make([]bool, len(b.ids)),
		reasons: map[kiosk.Reason]int{}}
	for i, id := range b.ids {
		t.index[id] = i
	}
	if window > 0 {
		t.permits = make(chan struct{}, window)
	}
	return t
}

func (t *tracker) sent(i int, at time.Time) {
	t.mu.Lock()
	t.sentAt[i] = at
	t.mu.Unlock()
}

// finish marks transaction i done and returns its permit; it reports
// whether this was the first terminal event.
func (t *tracker) finish(i int) bool {
	if t.done[i] {
		return false
	}
	t.done[i] = true
	if t.permits != nil {
		select {
		case t.permits <- struct{}{}:
		default:
		}
	}
	return true
}

func (t *tracker) committed(id ledger.TxID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[id]
	if !ok || t.sentAt[i].IsZero() {
		return
	}
	t.commits = append(t.commits, commit{idx: i, at: at})
	t.finish(i)
}

func (t *tracker) receipt(r kiosk.Receipt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[r.TxID]
	if !ok {
		return
	}
	switch {
	case r.Status == kiosk.StatusAccepted:
		t.accepted++
	case r.Status == kiosk.StatusDuplicate:
		t.duplicate++
	case r.Reason == kiosk.ReasonBusy:
		t.busy++
		t.finish(i)
	default:
		t.rejected++
		t.reasons[r.Reason]++
		t.finish(i)
	}
}

// expire gives up on transactions sent before cutoff that are not done.
func (t *tracker) expire(cutoff time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, at := range t.sentAt {
		if !at.IsZero() && !t.done[i] && at.Before(cutoff) {
			t.expired++
			t.finish(i)
		}
	}
}

// result summarises the commits seen in [from, to): their rate, and the
// submit-to-commit latency of the transactions sent in [from, to).
type result struct {
	committed      int
	tps            float64
	p50, p99       time.Duration
	latencySamples int
}

func (t *tracker) result(from, to time.Time) result {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r result
	var lat []time.Duration
	for _, c := range t.commits {
		if !c.at.Before(from) && c.at.Before(to) {
			r.committed++
		}
		if s := t.sentAt[c.idx]; !s.Before(from) && s.Before(to) {
			lat = append(lat, c.at.Sub(s))
		}
	}
	r.tps = float64(r.committed) / to.Sub(from).Seconds()
	slices.Sort(lat)
	r.latencySamples = len(lat)
	if len(lat) > 0 {
		r.p50 = lat[len(lat)*50/100]
		r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r
}

// pendingSentIn counts transactions sent in [from, to) that are not done.
func (t *tracker) pendingSentIn(from, to time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i, s := range t.sentAt {
		if !s.IsZero() && !t.done[i] && !s.Before(from) && s.Before(to) {
			n++
		}
	}
	return n
}

// kioskSockets are UDP sockets to the nodes' kiosk ports; socket j talks to
// node j mod n. A reader per socket hands receipts to the tracker. The
// receipts are parsed but their signatures are not checked: checking costs
// an SM2 verification per transaction, which this machine's two cores are
// busy doing for the nodes (the fault tests use the client SDK, which
// checks every receipt).
type kioskSockets struct {
	conns []*net.UDPConn
	track atomic.Pointer[tracker]
	wg    sync.WaitGroup
}

func dialKiosks(c *clustertest.Cluster, perNode int) (*kioskSockets, error) {
	k := &kioskSockets{}
	for j := range perNode * len(c.Nodes) {
		node := c.Nodes[j%len(c.Nodes)]
		var conn *net.UDPConn
		err := c.InClientNetns(func() error {
			raddr, err := net.ResolveUDPAddr("udp", node.Kiosk)
			if err != nil {
				return err
			}
			conn, err = net.DialUDP("udp", nil, raddr)
			return err
		})
		if err != nil {
			k.close()
			return nil, fmt.Errorf("dialling %s's kiosk port: %w", node.Name, err)
		}
		_ = conn.SetReadBuffer(4 << 20)
		_ = conn.SetWriteBuffer(4 << 20)
		k.conns = append(k.conns, conn)
		k.wg.Go(func() { k.read(conn) })
	}
	return k, nil
}

func (k *kioskSockets) read(conn *net.UDPConn) {
	buf := make([]byte, 2*kiosk.ReceiptSize)
	for {
		n, err := conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		r, _, err := kiosk.ParseReceipt(buf[:n])
		if err != nil {
			continue
		}
		if t := k.track.Load(); t != nil {
			t.receipt(r)
		}
	}
}

func (k *kioskSockets) close() {
	for _, c := range k.conns {
		c.Close()
	}
	k.wg.Wait()
}

// send sends datagram i of the batch over socket i mod len(conns), so
// that transactions spread evenly over the nodes.
func (k *kioskSockets) send(b *batch, t *tracker, i int) {
	t.sent(i, time.Now())
	_, _ = k.conns[i%len(k.conns)].Write(b.dgs[i])
}

// runClosed keeps window transactions in flight until ctx ends or the
// batch runs out: a new one goes out as soon as one commits or is refused.
// The window opens over rampUp, so that the nodes' ingress queues are not
// flooded at the start.
func (k *kioskSockets) runClosed(ctx context.Context, b *batch, t *tracker, window int, rampUp time.Duration) (sent int) {
	go func() {
		step := rampUp / time.Duration(window)
		for range window {
			select {
			case t.permits <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if step > 0 {
				time.Sleep(step)
			}
		}
	}()
	for i := range b.dgs {
		select {
		case <-t.permits:
		case <-ctx.Done():
			return i
		}
		k.send(b, t, i)
	}
	return len(b.dgs)
}

// runOpen sends at rate per second until ctx ends or the batch runs out.
func (k *kioskSockets) runOpen(ctx context.Context, b *batch, t *tracker, rate float64) (sent int) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	i := 0
	for i < len(b.dgs) {
		select {
		case <-ctx.Done():
			return i
		case <-tick.C:
		}
		due := min(int(time.Since(start).Seconds()*rate), len(b.dgs))
		for ; i < due; i++ {
			k.send(b, t, i)
		}
	}
	return i
}

// watchCommits follows node's chain from height from, handing every
// committed transaction to the tracker with the time its block's height
// was first seen. It polls the height every 2 ms and stops when ctx ends.
func watchCommits(ctx context.Context, c *clustertest.Cluster, node int, from uint64, track func() *tracker) error {
	next := from
	for ctx.Err() == nil {
		h, err := c.Height(ctx, node)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		seen := time.Now()
		for ; next <= h; next++ {
			ids, err := c.BlockTxIDs(ctx, node, next)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if t := track(); t != nil {
				for _, id := range ids {
					t.committed(id, seen)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
