// Package ingress is the node's kiosk datagram endpoint. It reads one
// transaction per UDP datagram, checks the header against the body, the
// chain, the sender's admission, the timestamp window and the signatures,
// hands the transaction to a [Submitter] (the mempool) and answers with a
// signed receipt. Transactions it accepted are fed to the fast path's
// replay table; when XDP is not attached it runs the fast path's Go twin
// on every datagram first.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
	"hallmark/netstack/xdp"
)

// Outcome is the mempool's answer to a submitted transaction.
type Outcome uint8

// Outcomes.
const (
	Accepted  Outcome = iota + 1 // taken in
	Duplicate                    // already known (mempool or chain)
	Rejected                     // refused by the application; Code says why
	Busy                         // no room now; the kiosk should retry
)

// Result is what a [Submitter] returns.
type Result struct {
	Outcome Outcome
	// Code is the ledger application's reason code when Outcome is
	// Rejected (below 0x8000); it reaches the kiosk as 0x8000|Code.
	Code uint16
}

// Submitter takes a transaction whose header, admission, timestamp and
// signatures the ingress has verified. The mempool implements it.
type Submitter interface {
	Submit(ctx context.Context, tx *ledger.Transaction) Result
}

// FullReporter is implemented by a Submitter that can tell cheaply that it
// has no room. The ingress then answers "node busy" before verifying the
// datagram's signatures, so that an overloaded node spends no verification
// on transactions it would refuse anyway.
type FullReporter interface {
	Full() bool
}

// Config configures a [Server].
type Config struct {
	// ChainID is the network's chain id; other chains' transactions are
	// rejected.
	ChainID string
	// Conn is the UDP socket to serve. The server does not close it.
	Conn *net.UDPConn
	// Signer signs receipts. A receipt per transaction is too many for a
	// hardware key that signs in tens of milliseconds; give a software
	// key the node's identity has certified, or accept the rate.
	Signer    gm.Signer
	Admission Admission
	Submitter Submitter
	// FastPath receives accepted transaction ids; if its Twin is set, the
	// server judges every datagram with it first. May be nil.
	FastPath *xdp.FastPath
	// MaxAge and MaxFuture bound transaction timestamps around Now; use
	// the fast path's values.
	MaxAge, MaxFuture time.Duration
	// ReplayGrace is how long after acceptance an id enters the fast
	// path's replay table. Until then a retransmission (the kiosk lost
	// its receipt) reaches user space and gets the cached receipt again.
	// It should exceed the kiosk SDK's total retry time.
	ReplayGrace time.Duration
	// Workers verify signatures in parallel (default GOMAXPROCS).
	Workers int
	// QueueLen bounds datagrams waiting for a worker (default 1024);
	// beyond it datagrams are dropped and counted.
	QueueLen int
	// ReceiptCache bounds remembered receipts (default 65536).
	ReceiptCache int
	Now          func() time.Time
	Logger       *slog.Logger
}

// Stats counts what the server did. All fields are totals since start.
type Stats struct {
	Received     uint64 // datagrams read from the socket
	TwinDropped  uint64 // dropped by the Go twin of the fast path
	Malformed    uint64 // header unreadable: no receipt possible
	QueueFull    uint64 // dropped because the workers were behind
	CachedAnswer uint64 // retransmissions answered from the receipt cache
	InFlight     uint64 // retransmissions dropped while their first copy was being handled
	Accepted     uint64
	Duplicate    uint64
	Rejected     uint64
	Busy         uint64
	SendErrors   uint64
}

type stats struct {
	received, twinDropped, malformed, queueFull, cachedAnswer, inFlight atomic.Uint64
	accepted, duplicate, rejected, busy, sendErrors                     atomic.Uint64
}

// Server serves the kiosk datagram port.
type Server struct {
	cfg      Config
	log      *slog.Logger
	stats    stats
	receipts *receiptCache
	replay   *replayFeeder
	// handling holds the ids of the transactions queued or being handled:
	// a retransmission of one of them is dropped, because the answer to
	// the first copy is on its way (handling the copy too would race the
	// first to the mempool and could answer "duplicate" to the kiosk's
	// own first submission).
	handlingMu sync.Mutex
	handling   map[ledger.TxID]struct{}
}

type job struct {
	buf  []byte
	from netip.AddrPort
	id   ledger.TxID // from the header, before any check
}

// New checks cfg and returns a server; [Server.Serve] runs it.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("ingress: no socket")
	case cfg.Signer == nil:
		return nil, errors.New("ingress: no receipt signer")
	case cfg.Admission == nil:
		return nil, errors.New("ingress: no admission source")
	case cfg.Submitter == nil:
		return nil, errors.New("ingress: no submitter")
	case cfg.ChainID == "":
		return nil, errors.New("ingress: no chain id")
	case cfg.MaxAge <= 0 || cfg.MaxFuture < 0:
		return nil, fmt.Errorf("ingress: timestamp window -%v/+%v", cfg.MaxAge, cfg.MaxFuture)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.ReceiptCache <= 0 {
		cfg.ReceiptCache = 65536
	}
	if cfg.ReplayGrace <= 0 {
		cfg.ReplayGrace = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, receipts: newReceiptCache(cfg.ReceiptCache), handling: make(map[ledger.TxID]struct{})}
	if cfg.FastPath != nil {
		s.replay = &replayFeeder{filter: cfg.FastPath.Filter, grace: cfg.ReplayGrace}
	}
	return s, nil
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Received: st.received.Load(), TwinDropped: st.twinDropped.Load(), Malformed: st.malformed.Load(),
		QueueFull: st.queueFull.Load(), CachedAnswer: st.cachedAnswer.Load(), InFlight: st.inFlight.Load(), Accepted: st.accepted.Load(),
		Duplicate: st.duplicate.Load(), Rejected: st.rejected.Load(), Busy: st.busy.Load(), SendErrors: st.sendErrors.Load(),
	}
}

// Serve reads datagrams until ctx is done or the socket fails. It returns
// nil after ctx is cancelled.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan job, s.cfg.QueueLen)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				s.handle(ctx, j)
				s.handled(j.id)
			}
		})
	}
	if s.replay != nil {
		wg.Go(func() { s.replay.run(ctx, s.log) })
	}
	// Unblock the read when ctx ends.
	stop := context.AfterFunc(ctx, func() { s.cfg.Conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var err error
	buf := make([]byte, kiosk.MaxDatagramSize+1)
	for {
		n, from, rerr := s.cfg.Conn.ReadFromUDPAddrPort(buf)
		if rerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("ingress: reading socket: %w", rerr)
			}
			break
		}
		s.stats.received.Add(1)
		dg := buf[:n]
		if tw := s.twin(); tw != nil {
			if v := tw.Datagram(from.Addr().Unmap(), dg); v.Drop() {
				s.stats.twinDropped.Add(1)
				continue
			}
		}
		h, herr := kiosk.ParseHeader(dg)
		if herr != nil {
			s.stats.malformed.Add(1)
			continue
		}
		if cached := s.receipts.get(h.TxID); cached != nil {
			s.stats.cachedAnswer.Add(1)
			s.send(cached, from)
			continue
		}
		if !s.startHandling(h.TxID) {
			s.stats.inFlight.Add(1)
			continue
		}
		select {
		case jobs <- job{buf: append([]byte(nil), dg...), from: from, id: h.TxID}:
		default:
			s.handled(h.TxID)
			s.stats.queueFull.Add(1)
		}
	}
	cancel()
	close(jobs)
	wg.Wait()
	return err
}

func (s *Server) twin() *xdp.Twin {
	if s.cfg.FastPath == nil {
		return nil
	}
	return s.cfg.FastPath.Twin
}

// startHandling records id as being handled, or reports false if it
// already is.
func (s *Server) startHandling(id ledger.TxID) bool {
	s.handlingMu.Lock()
	defer s.handlingMu.Unlock()
	if _, busy := s.handling[id]; busy {
		return false
	}
	s.handling[id] = struct{}{}
	return true
}

// handled ends what startHandling began. A successful answer is in the
// receipt cache by then, so later retransmissions are answered from it.
func (s *Server) handled(id ledger.TxID) {
	s.handlingMu.Lock()
	delete(s.handling, id)
	s.handlingMu.Unlock()
}

// handle verifies one datagram, submits it and answers.
func (s *Server) handle(ctx context.Context, j job) {
	digest := gm.SM3(j.buf)
	h, d, err := kiosk.Decode(j.buf)
	if err != nil {
		if h.TxID.IsZero() || errors.Is(err, kiosk.ErrHeader) {
			s.stats.malformed.Add(1)
			return
		}
		s.reject(ctx, h.TxID, digest, kiosk.ReasonOf(err), j.from)
		return
	}
	tx := d.Tx
	if tx.Body.ChainID != s.cfg.ChainID {
		s.reject(ctx, h.TxID, digest, kiosk.ReasonWrongChain, j.from)
		return
	}
	switch s.cfg.Admission.SenderState(d.SenderKeyID()) {
	case Admitted:
	case Frozen:
		s.reject(ctx, h.TxID, digest, kiosk.ReasonFrozen, j.from)
		return
	default:
		s.reject(ctx, h.TxID, digest, kiosk.ReasonNotAdmitted, j.from)
		return
	}
	now := s.cfg.Now().UnixMilli()
	if ts := tx.Body.Timestamp; ts < now-s.cfg.MaxAge.Milliseconds() || ts > now+s.cfg.MaxFuture.Milliseconds() {
		s.reject(ctx, h.TxID, digest, kiosk.ReasonStale, j.from)
		return
	}
	if f, ok := s.cfg.Submitter.(FullReporter); ok && f.Full() {
		s.stats.busy.Add(1)
		s.answer(ctx, kiosk.Receipt{TxID: h.TxID, DatagramDigest: digest, Status: kiosk.StatusRejected, Reason: kiosk.ReasonBusy}, j.from)
		return
	}
	if err := tx.VerifySignatures(); err != nil {
		s.reject(ctx, h.TxID, digest, kiosk.ReasonBadSignature, j.from)
		return
	}
	res := s.cfg.Submitter.Submit(ctx, tx)
	var r kiosk.Receipt
	switch res.Outcome {
	case Accepted:
		s.stats.accepted.Add(1)
		r.Status = kiosk.StatusAccepted
	case Duplicate:
		s.stats.duplicate.Add(1)
		r.Status = kiosk.StatusDuplicate
	case Rejected:
		s.reject(ctx, h.TxID, digest, kiosk.AppReason(res.Code), j.from)
		return
	default:
		s.stats.busy.Add(1)
		s.answer(ctx, kiosk.Receipt{TxID: h.TxID, DatagramDigest: digest, Status: kiosk.StatusRejected, Reason: kiosk.ReasonBusy}, j.from)
		return
	}
	r.TxID, r.DatagramDigest = h.TxID, digest
	b := s.answer(ctx, r, j.from)
	if b != nil {
		s.receipts.put(h.TxID, b)
	}
	if s.replay != nil {
		s.replay.add(h.TxID, s.cfg.Now())
	}
}

func (s *Server) reject(ctx context.Context, id ledger.TxID, digest gm.Digest, reason kiosk.Reason, to netip.AddrPort) {
	s.stats.rejected.Add(1)
	s.log.Debug("ingress: rejected", "tx", id, "reason", reason, "from", to)
	s.answer(ctx, kiosk.Receipt{TxID: id, DatagramDigest: digest, Status: kiosk.StatusRejected, Reason: reason}, to)
}

// answer signs and sends a receipt, returning its bytes (nil on failure).
func (s *Server) answer(ctx context.Context, r kiosk.Receipt, to netip.AddrPort) []byte {
	r.Timestamp = uint64(s.cfg.Now().UnixMilli())
	b, err := kiosk.SignReceipt(ctx, s.cfg.Signer, r)
	if err != nil {
		s.stats.sendErrors.Add(1)
		s.log.Warn("ingress: signing receipt", "tx", r.TxID, "err", err)
		return nil
	}
	s.send(b, to)
	return b
}

func (s *Server) send(b []byte, to netip.AddrPort) {
	if _, err := s.cfg.Conn.WriteToUDPAddrPort(b, to); err != nil {
		s.stats.sendErrors.Add(1)
		s.log.Debug("ingress: sending receipt", "to", to, "err", err)
	}
}

// receiptCache remembers the receipts of accepted transactions, so that a
// retransmission is answered without decoding, verifying or signing.
type receiptCache struct {
	mu    sync.Mutex
	cap   int
	order []ledger.TxID // insertion order, oldest first (ring)
	next  int
	items map[ledger.TxID][]byte
}

func newReceiptCache(capacity int) *receiptCache {
	return &receiptCache{cap: capacity, order: make([]ledger.TxID, 0, capacity), items: make(map[ledger.TxID][]byte)}
}

func (c *receiptCache) get(id ledger.TxID) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items[id]
}

func (c *receiptCache) put(id ledger.TxID, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[id]; ok {
		return
	}
	if len(c.order) < c.cap {
		c.order = append(c.order, id)
	} else {
		delete(c.items, c.order[c.next])
		c.order[c.next] = id
		c.next = (c.next + 1) % c.cap
	}
	c.items[id] = b
}

// replayFeeder writes accepted ids into the fast path's replay table once
// their grace period is over.
type replayFeeder struct {
	filter xdp.Filter
	grace  time.Duration
	mu     sync.Mutex
	queue  []pendingID
}

type pendingID struct {
	id  ledger.TxID
	due time.Time
}

func (f *replayFeeder) add(id ledger.TxID, now time.Time) {
	f.mu.Lock()
	f.queue = append(f.queue, pendingID{id: id, due: now.Add(f.grace)})
	f.mu.Unlock()
}

func (f *replayFeeder) run(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(min(f.grace/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f.flush(now, log)
		}
	}
}

// flush moves every due id into the filter.
func (f *replayFeeder) flush(now time.Time, log *slog.Logger) {
	f.mu.Lock()
	i := 0
	for i < len(f.queue) && !f.queue[i].due.After(now) {
		i++
	}
	due := f.queue[:i:i]
	f.queue = f.queue[i:]
	f.mu.Unlock()
	for _, p := range due {
		if err := f.filter.AddAccepted(p.id); err != nil {
			log.Warn("ingress: feeding the replay table", "tx", p.id, "err", err)
		}
	}
}
