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
	// ts is the transactions' timestamp: a node's kiosk fast path drops
	// datagrams older than its window (60 s by default) without a
	// receipt, so a datagram is not sent once it is older than maxSendAge.
	ts time.Time
}

// maxSendAge is how old a signed datagram may be when it is sent.
const maxSendAge = 40 * time.Second

// sign signs n record.put transactions from the kiosk account, on every
// core, and encodes them as kiosk datagrams.
func sign(ctx context.Context, key gm.Signer, n int, workers int, seq0 uint64) (*batch, error) {
	b := &batch{dgs: make([][]byte, n), ids: make([]ledger.TxID, n), ts: time.Now()}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ts := b.ts.UnixMilli()
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

// signer signs the load's transactions, numbering them across phases.
type signer struct {
	key     gm.Signer
	workers int
	seq     uint64
}

func (s *signer) sign(ctx context.Context, n int) (*batch, error) {
	b, err := sign(ctx, s.key, n, s.workers, s.seq)
	s.seq += uint64(n)
	return b, err
}

// recentRate is the rate the cluster committed t's transactions at over
// the last 5 s (at least 1000/s).
func (s *signer) recentRate(t *tracker) float64 {
	now := time.Now()
	return max(t.result(now.Add(-5*time.Second), now).tps, 1000)
}

// topUp signs what t needs for d at rate, less what it has unsent.
func (s *signer) topUp(ctx context.Context, t *tracker, d time.Duration, rate float64) error {
	n := int(rate*d.Seconds()) - t.unsent()
	if n <= 0 {
		return nil
	}
	start := time.Now()
	b, err := s.sign(ctx, n)
	if err != nil {
		return err
	}
	t.add(b)
	logf("signed %d more transactions in %v", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// keepUp keeps about 10 s of datagrams ready at rate() per second, in
// chunks, until ctx ends; it does nothing while paused. Signing far ahead
// is wasted: datagrams older than maxSendAge are not sent.
func (s *signer) keepUp(ctx context.Context, t *tracker, rate func() float64, paused *atomic.Bool) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		if paused.Load() {
			continue
		}
		r := rate()
		if t.unsent() >= int(r*8) {
			continue
		}
		n := min(int(r*10)-t.unsent(), 20000)
		b, err := s.sign(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.add(b)
	}
}

// tracker follows every transaction of a phase from its send to its first
// terminal event: committed (seen in a block on the watched node), refused
// by a receipt, or given up on. It holds the phase's signed datagrams;
// more can be added while the phase runs.
type tracker struct {
	mu     sync.Mutex
	dgs    [][]byte
	ts     []time.Time // each datagram's transaction timestamp
	stale  int         // datagrams not sent because they grew too old
	index  map[ledger.TxID]int
	sentAt []time.Time
	done   []bool
	next   int     // the next datagram to send
	win    *window // closed loop; nil in open loop

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

func newTracker(b *batch, win *window) *tracker {
	t := &tracker{index: map[ledger.TxID]int{}, reasons: map[kiosk.Reason]int{}, win: win}
	t.add(b)
	return t
}

// add appends a batch to the datagrams to send.
func (t *tracker) add(b *batch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, id := range b.ids {
		t.index[id] = len(t.dgs)
		t.dgs = append(t.dgs, b.dgs[k])
		t.ts = append(t.ts, b.ts)
	}
	t.sentAt = append(t.sentAt, make([]time.Time, len(b.ids))...)
	t.done = append(t.done, make([]bool, len(b.ids))...)
}

// committedCount returns how many commits the tracker has seen.
func (t *tracker) committedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.commits)
}

// unsent returns how many datagrams are left to send.
func (t *tracker) unsent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.dgs) - t.next
}

// take returns the next datagram to send and marks it sent now, skipping
// those older than maxSendAge; false when none is left.
func (t *tracker) take() (int, []byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for ; t.next < len(t.dgs); t.next++ {
		if i := t.next; now.Sub(t.ts[i]) <= maxSendAge {
			t.next++
			t.sentAt[i] = now
			return i, t.dgs[i], true
		}
		t.stale++
		t.dgs[t.next] = nil
	}
	return 0, nil, false
}

// finish marks transaction i done and returns its permit; it reports
// whether this was the first terminal event.
func (t *tracker) finish(i int) bool {
	if t.done[i] {
		return false
	}
	t.done[i] = true
	if t.win != nil {
		t.win.release()
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

// expireSentIn gives up on the transactions sent in [from, to) that are
// not done.
func (t *tracker) expireSentIn(from, to time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, at := range t.sentAt {
		if !at.IsZero() && !t.done[i] && !at.Before(from) && at.Before(to) {
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

// send sends datagram i over socket i mod len(conns), so that
// transactions spread evenly over the nodes.
func (k *kioskSockets) send(i int, dg []byte) {
	_, _ = k.conns[i%len(k.conns)].Write(dg)
}

// window bounds the transactions in flight in the closed loop. Its size
// can change while the loop runs: growing lets more out at once, shrinking
// holds new sends back until enough have ended.
type window struct {
	mu          sync.Mutex
	size, inUse int
	wake        chan struct{} // one sender waits on it
}

func newWindow() *window { return &window{wake: make(chan struct{}, 1)} }

func (w *window) acquire(ctx context.Context) bool {
	for {
		w.mu.Lock()
		if w.inUse < w.size {
			w.inUse++
			w.mu.Unlock()
			return true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return false
		}
	}
}

func (w *window) release() {
	w.mu.Lock()
	w.inUse--
	w.mu.Unlock()
	w.notify()
}

func (w *window) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// resize moves the window to size; a larger window opens over rampUp so
// that the nodes' ingress queues are not flooded at once.
func (w *window) resize(ctx context.Context, size int, rampUp time.Duration) {
	w.mu.Lock()
	from := w.size
	w.mu.Unlock()
	if size <= from || rampUp <= 0 {
		w.mu.Lock()
		w.size = size
		w.mu.Unlock()
		w.notify()
		return
	}
	const steps = 20
	for k := 1; k <= steps; k++ {
		w.mu.Lock()
		w.size = from + (size-from)*k/steps
		w.mu.Unlock()
		w.notify()
		select {
		case <-ctx.Done():
			return
		case <-time.After(rampUp / steps):
		}
	}
}

// runClosed sends a transaction whenever the window has room, until ctx
// ends; it reports false if the datagrams ran out first.
func (k *kioskSockets) runClosed(ctx context.Context, t *tracker) bool {
	for t.win.acquire(ctx) {
		i, dg, ok := t.take()
		if !ok {
			t.win.release()
			return false
		}
		k.send(i, dg)
	}
	return true
}

// runOpen sends at rate per second until ctx ends; it reports false if the
// datagrams ran out first.
func (k *kioskSockets) runOpen(ctx context.Context, t *tracker, rate float64) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return true
		case <-tick.C:
		}
		for due := int(time.Since(start).Seconds() * rate); sent < due; sent++ {
			i, dg, ok := t.take()
			if !ok {
				return false
			}
			k.send(i, dg)
		}
	}
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
