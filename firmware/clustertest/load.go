package clustertest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/netstack/kiosk"
)

// NewRecord returns a record.put transaction signed by key: a document
// digest about the key's own account, distinct for every seq.
func NewRecord(ctx context.Context, key gm.Signer, seq uint64, ts int64) (*ledger.Transaction, error) {
	self := ledger.AddressOf(key.PublicKey())
	doc := gm.SM3(fmt.Appendf(nil, "clustertest record %d at %d", seq, ts))
	data, err := txs.Encode(&txs.RecordPut{RecordType: "customs.declaration", Subject: self, Digest: &doc})
	if err != nil {
		return nil, err
	}
	return client.NewTransaction(ctx, key, client.TxParams{ChainID: ChainID, Type: ledger.TxRecordPut, Data: data, Timestamp: ts})
}

// KioskClient dials node i's kiosk port from the client side with the
// client SDK, checking receipts against the receipt key the node's
// identity delegated (fetched from its status, verified against the
// validator key in the genesis).
func (c *Cluster) KioskClient(ctx context.Context, i int, cfg client.Config) (*client.Client, error) {
	st, err := c.Status(ctx, i)
	if err != nil {
		return nil, err
	}
	raw, err := hex.DecodeString(st.ReceiptDelegation)
	if err != nil {
		return nil, fmt.Errorf("clustertest: %s: receipt delegation: %w", c.Nodes[i].Name, err)
	}
	rk, err := client.ReceiptKey(raw, c.Nodes[i].identityKey(), ChainID, time.Now())
	if err != nil {
		return nil, fmt.Errorf("clustertest: %s: %w", c.Nodes[i].Name, err)
	}
	cfg.NodeAddr, cfg.NodeKey = c.Nodes[i].Kiosk, rk
	var kc *client.Client
	err = c.InClientNetns(func() error {
		var err error
		kc, err = client.Dial(cfg)
		return err
	})
	return kc, err
}

// LoadStats count a load generator's submissions.
type LoadStats struct {
	Sent       int64 // submissions attempted
	Accepted   int64 // accepted receipts
	Duplicate  int64
	Rejected   int64 // rejections other than busy
	Busy       int64 // still busy after every retry
	Unanswered int64 // no receipt after every retry
	Skipped    int64 // the node's kiosk client could not be set up (node down)
}

func (s LoadStats) String() string {
	return fmt.Sprintf("sent %d, accepted %d, duplicate %d, rejected %d, busy %d, unanswered %d, skipped %d",
		s.Sent, s.Accepted, s.Duplicate, s.Rejected, s.Busy, s.Unanswered, s.Skipped)
}

// Load is a kiosk load generator: signed record.put transactions at a
// steady rate, round-robin over the nodes' kiosk ports, through the client
// SDK (receipts verified, retries with back-off).
type Load struct {
	c      *Cluster
	cancel context.CancelFunc
	done   chan struct{}

	sent, accepted, duplicate, rejected, busy, unanswered, skipped atomic.Int64

	mu       sync.Mutex
	kiosks   []*kioskSlot
	accepts  map[ledger.TxID]Accept
	firstErr error
}

// Accept is an accepted submission: which node took it, and when.
type Accept struct {
	Node int
	At   time.Time
}

type kioskSlot struct {
	mu     sync.Mutex
	kc     *client.Client
	stale  bool
	dialed time.Time
}

// StartLoad starts submitting rate transactions per second until Stop.
func (c *Cluster) StartLoad(ctx context.Context, rate float64) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{c: c, cancel: cancel, done: make(chan struct{}), accepts: map[ledger.TxID]Accept{}}
	for range c.Nodes {
		l.kiosks = append(l.kiosks, &kioskSlot{stale: true})
	}
	go func() {
		defer close(l.done)
		l.run(ctx, rate)
	}()
	return l
}

// client returns node i's kiosk client, dialling (again) when the last one
// went unanswered: a restarted node signs receipts with a new key.
func (l *Load) client(ctx context.Context, i int) *client.Client {
	s := l.kiosks[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale && time.Since(s.dialed) > time.Second {
		s.dialed = time.Now()
		kc, err := l.c.KioskClient(ctx, i, client.Config{Attempts: 4, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
		if err == nil {
			if s.kc != nil {
				s.kc.Close()
			}
			s.kc, s.stale = kc, false
		}
	}
	return s.kc
}

func (l *Load) markStale(i int) {
	s := l.kiosks[i]
	s.mu.Lock()
	s.stale = true
	s.mu.Unlock()
}

func (l *Load) run(ctx context.Context, rate float64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 512)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	n := len(l.c.Nodes)
	for seq := uint64(0); ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := uint64(time.Since(start).Seconds() * rate)
		for ; seq < due; seq++ {
			i := int(seq % uint64(n))
			kc := l.client(ctx, i)
			if kc == nil {
				l.skipped.Add(1)
				continue
			}
			tx, err := NewRecord(ctx, l.c.Kiosk, seq, time.Now().UnixMilli())
			if err != nil {
				l.fail(err)
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			l.sent.Add(1)
			wg.Go(func() {
				defer func() { <-sem }()
				l.submit(ctx, kc, i, tx)
			})
		}
	}
}

func (l *Load) submit(ctx context.Context, kc *client.Client, i int, tx *ledger.Transaction) {
	r, err := kc.Submit(ctx, tx)
	switch {
	case errors.Is(err, context.Canceled):
	case err != nil:
		l.unanswered.Add(1)
		l.markStale(i)
	case r.Status == kiosk.StatusAccepted:
		l.accepted.Add(1)
		l.mu.Lock()
		l.accepts[tx.ID()] = Accept{Node: i, At: time.Now()}
		l.mu.Unlock()
	case r.Status == kiosk.StatusDuplicate:
		l.duplicate.Add(1)
	case r.Reason == kiosk.ReasonBusy:
		l.busy.Add(1)
	default:
		l.rejected.Add(1)
		l.fail(fmt.Errorf("clustertest: %s rejected a valid record: %v", l.c.Nodes[i].Name, r.Reason))
	}
}

func (l *Load) fail(err error) {
	l.mu.Lock()
	if l.firstErr == nil {
		l.firstErr = err
	}
	l.mu.Unlock()
}

// Stats returns the counts so far.
func (l *Load) Stats() LoadStats {
	return LoadStats{Sent: l.sent.Load(), Accepted: l.accepted.Load(), Duplicate: l.duplicate.Load(),
		Rejected: l.rejected.Load(), Busy: l.busy.Load(), Unanswered: l.unanswered.Load(), Skipped: l.skipped.Load()}
}

// Stop stops submitting, waits for submissions in flight, and returns the
// counts and the first unexpected error (a valid record rejected).
func (l *Load) Stop() (LoadStats, error) {
	l.cancel()
	<-l.done
	for _, s := range l.kiosks {
		s.mu.Lock()
		if s.kc != nil {
			s.kc.Close()
			s.kc = nil
		}
		s.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Stats(), l.firstErr
}

// Accepted returns the transactions that got an accepted receipt.
func (l *Load) Accepted() map[ledger.TxID]Accept {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[ledger.TxID]Accept, len(l.accepts))
	for k, v := range l.accepts {
		out[k] = v
	}
	return out
}

// CommittedTxs returns the transaction ids in node i's blocks from height
// from to to, with the height of each.
func (c *Cluster) CommittedTxs(ctx context.Context, i int, from, to uint64) (map[ledger.TxID]uint64, error) {
	out := map[ledger.TxID]uint64{}
	for h := from; h <= to; h++ {
		b, err := c.Block(ctx, i, h)
		if err != nil {
			return nil, err
		}
		for _, id := range b.TxIDs {
			if prev, dup := out[id]; dup {
				return nil, fmt.Errorf("clustertest: transaction %s committed twice, at %d and %d", id, prev, h)
			}
			out[id] = h
		}
	}
	return out, nil
}
