// Package driver runs a consensus core in real time: one goroutine owns the
// core and feeds it events stamped with the wall clock; a signer goroutine
// stores safety data and signs; an application goroutine validates, builds
// and commits blocks and serves sync reads; a timer fires the round
// timeout. The network, the application and storage, and the keys come in
// through small interfaces that the node runtime wires to QUIC, the ledger
// and bbolt, and the hsm package.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"hallmark/consensus"
	"hallmark/gm"
	"hallmark/ledger"
)

// Inbound is a message from a peer, with the peer's authenticated key id.
type Inbound struct {
	From gm.KeyID
	Data []byte
}

// Transport carries consensus messages between validators.
type Transport interface {
	// Send queues msg for the validator with key id to. It must not
	// block for long: a transport that cannot keep up drops messages
	// (the protocol recovers from loss) rather than stall the node.
	Send(ctx context.Context, to gm.KeyID, msg []byte) error
	// Incoming returns the channel on which messages from peers arrive.
	Incoming() <-chan Inbound
}

// App is the application and storage side of a node.
type App interface {
	// ValidateBlock executes req.Block on top of req.Parent's state,
	// checks its roots, makes storage keep this node's shard, and
	// returns the next epoch's configuration if the block ends its
	// epoch.
	ValidateBlock(ctx context.Context, req consensus.ValidateBlock) (*consensus.EpochConfig, error)
	// BuildProposal builds, executes and seals the block req describes.
	// It may wait a little for transactions.
	BuildProposal(ctx context.Context, req consensus.BuildProposal) (*ledger.Block, *consensus.EpochConfig, error)
	// Commit makes blocks final: flush their writes, store them with the
	// proof, record an epoch change. An error stops the node.
	Commit(ctx context.Context, c consensus.Commit) error
	// The committed chain, to answer peers' sync requests.
	consensus.CommittedReader
}

// SafetyStore keeps safety data, and the block a vote or proposal is for,
// durably: SaveSafety returns only once both would survive a crash
// (fsync). Kept blocks go back to the core in Recovery.Blocks after a
// restart until they commit or are abandoned (see consensus.Sign).
type SafetyStore interface {
	SaveSafety(ctx context.Context, s consensus.SafetyData, block *consensus.CertifiedBlock) error
}

// Config assembles a driver.
type Config struct {
	Core      consensus.Config
	Recovery  consensus.Recovery
	Transport Transport
	App       App
	Safety    SafetyStore
	// Signer returns the signer of a validator key this node holds (a
	// node holds a new key before a rotation takes effect).
	Signer func(gm.KeyID) (gm.Signer, error)
	// Clock returns the time; nil means time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
	// Trace, if set, is told when a block reaches each Stage. It is
	// called from the driver's goroutines and must not block.
	Trace func(TraceEvent)
}

// Driver runs one core.
type Driver struct {
	cfg  Config
	core *consensus.Core

	events chan consensus.Event
	signQ  *workQueue
	appQ   *workQueue

	mu      sync.Mutex
	status  consensus.Status
	metrics consensus.Metrics
	runErr  error
}

// New builds a driver from its configuration and recovered state.
func New(cfg Config) (*Driver, error) {
	if cfg.Transport == nil || cfg.App == nil || cfg.Safety == nil || cfg.Signer == nil {
		return nil, errors.New("driver: transport, app, safety store and signer are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	core, err := consensus.New(cfg.Core, cfg.Recovery)
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	return &Driver{
		cfg:    cfg,
		core:   core,
		events: make(chan consensus.Event, 256),
		signQ:  newWorkQueue(),
		appQ:   newWorkQueue(),
	}, nil
}

// Status returns the core's status as of its last event.
func (d *Driver) Status() consensus.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// Metrics returns the core's counters as of its last event.
func (d *Driver) Metrics() consensus.Metrics {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.metrics
}

func (d *Driver) now() int64 { return d.cfg.Clock().UnixMilli() }

// Run drives the core until ctx ends or the application fails a commit.
func (d *Driver) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.signQ.run(ctx) }()
	go func() { defer wg.Done(); d.appQ.run(ctx) }()
	defer wg.Wait()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerSeq uint64
	defer timer.Stop()

	handle := func(effs []consensus.Effect) {
		for _, e := range effs {
			if seq, ms, ok := d.carry(ctx, e, cancel); ok {
				timer.Stop()
				timerSeq = seq
				timer.Reset(time.Duration(ms) * time.Millisecond)
			}
		}
		d.mu.Lock()
		d.status = d.core.Status()
		d.metrics = d.core.Metrics()
		d.mu.Unlock()
	}
	handle(d.core.Start(d.now()))
	in := d.cfg.Transport.Incoming()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			err := d.runErr
			d.mu.Unlock()
			if err != nil {
				return err
			}
			return ctx.Err()
		case m, ok := <-in:
			if !ok {
				return errors.New("driver: transport closed")
			}
			handle(d.core.Step(d.now(), consensus.MessageReceived{From: m.From, Data: m.Data}))
		case ev := <-d.events:
			handle(d.core.Step(d.now(), ev))
		case <-timer.C:
			handle(d.core.Step(d.now(), consensus.TimerFired{Seq: timerSeq}))
		}
	}
}

// post hands a worker's result back to the core's goroutine.
func (d *Driver) post(ctx context.Context, ev consensus.Event) {
	select {
	case d.events <- ev:
	case <-ctx.Done():
	}
}

// carry performs one effect. It reports a timer to set instead of setting
// it, as the timer belongs to Run's goroutine.
func (d *Driver) carry(ctx context.Context, e consensus.Effect, stop context.CancelFunc) (seq, ms uint64, timer bool) {
	log := d.cfg.Logger
	switch e := e.(type) {
	case consensus.Send:
		if err := d.cfg.Transport.Send(ctx, e.To, e.Message); err != nil {
			log.Debug("consensus send failed", "to", e.To.String()[:16], "kind", e.Kind, "err", err)
		}
	case consensus.Broadcast:
		for _, to := range e.To {
			if err := d.cfg.Transport.Send(ctx, to, e.Message); err != nil {
				log.Debug("consensus send failed", "to", to.String()[:16], "kind", e.Kind, "err", err)
			}
		}
	case consensus.SetTimer:
		return e.Seq, e.AfterMs, true
	case consensus.Sign:
		d.signQ.push(func(ctx context.Context) {
			ev := consensus.Signed{Seq: e.Seq}
			if err := d.cfg.Safety.SaveSafety(ctx, e.Safety, e.Block); err != nil {
				ev.Err = fmt.Errorf("driver: storing safety data: %w", err)
			} else if signer, err := d.cfg.Signer(e.Key); err != nil {
				ev.Err = fmt.Errorf("driver: no signer for %s: %w", e.Key, err)
			} else {
				ev.Signature, ev.Err = signer.Sign(ctx, e.Message)
			}
			if ev.Err != nil {
				log.Warn("consensus signing failed", "err", ev.Err)
			} else if e.Kind == consensus.KindProposal {
				d.trace(StageProposed, e.For, 0, d.cfg.Clock())
			} else if e.Kind == consensus.KindVote {
				d.trace(StageVoted, e.For, 0, d.cfg.Clock())
			}
			d.post(ctx, ev)
		})
	case consensus.ValidateBlock:
		h := &e.Block.Header
		id := h.ID()
		if d.cfg.Trace != nil {
			// The block's parent is certified here: by the block's own
			// justification, or by a commit proof for synced blocks.
			now := d.cfg.Clock()
			d.trace(StageCertified, e.Parent.ID, e.Parent.Height, now)
			d.trace(StageReceived, id, h.Height, now)
		}
		d.appQ.push(func(ctx context.Context) {
			reconfig, err := d.cfg.App.ValidateBlock(ctx, e)
			if err != nil {
				log.Info("block rejected", "height", h.Height, "round", h.Round, "err", err)
			} else {
				d.trace(StageValidated, id, h.Height, d.cfg.Clock())
			}
			d.post(ctx, consensus.BlockValidated{BlockID: id, Err: err, Reconfig: reconfig})
		})
	case consensus.BuildProposal:
		requested := d.cfg.Clock()
		d.trace(StageCertified, e.Parent.ID, e.Parent.Height, requested)
		d.appQ.push(func(ctx context.Context) {
			b, reconfig, err := d.cfg.App.BuildProposal(ctx, e)
			if err != nil {
				log.Warn("building a proposal failed", "round", e.Round, "err", err)
			} else if d.cfg.Trace != nil {
				id := b.Header.ID()
				d.trace(StageBuildRequested, id, b.Header.Height, requested)
				d.trace(StageBuilt, id, b.Header.Height, d.cfg.Clock())
			}
			d.post(ctx, consensus.ProposalBuilt{Epoch: e.Epoch, Round: e.Round, Block: b, Reconfig: reconfig, Err: err})
		})
	case consensus.Commit:
		if d.cfg.Trace != nil {
			now := d.cfg.Clock()
			// The proof's QC certifies the child of the last committed
			// block: a QC announcement brings it before any proposal.
			qc := &e.Proof.QC.Data
			d.trace(StageCertified, qc.BlockID, qc.Height, now)
			for _, b := range e.Blocks {
				d.trace(StageCommitted, b.Header.ID(), b.Header.Height, now)
			}
		}
		d.appQ.push(func(ctx context.Context) {
			if err := d.cfg.App.Commit(ctx, e); err != nil {
				log.Error("commit failed; stopping", "err", err)
				d.mu.Lock()
				d.runErr = fmt.Errorf("driver: commit: %w", err)
				d.mu.Unlock()
				stop()
			}
		})
	case consensus.ServeSync:
		d.appQ.push(func(ctx context.Context) {
			msg, err := consensus.BuildSyncResponse(d.cfg.App, e.Request)
			if err != nil {
				log.Warn("serving sync failed", "err", err)
				return
			}
			if err := d.cfg.Transport.Send(ctx, e.To, msg); err != nil {
				log.Debug("consensus send failed", "to", e.To.String()[:16], "kind", consensus.KindSyncResponse, "err", err)
			}
		})
	}
	return 0, 0, false
}

// workQueue runs jobs one at a time, in order, on its own goroutine. It is
// unbounded so the core's goroutine never waits on slow I/O.
type workQueue struct {
	mu   sync.Mutex
	jobs []func(context.Context)
	wake chan struct{}
}

func newWorkQueue() *workQueue { return &workQueue{wake: make(chan struct{}, 1)} }

func (q *workQueue) push(job func(context.Context)) {
	q.mu.Lock()
	q.jobs = append(q.jobs, job)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *workQueue) run(ctx context.Context) {
	for {
		q.mu.Lock()
		var job func(context.Context)
		if len(q.jobs) > 0 {
			job = q.jobs[0]
			q.jobs = q.jobs[1:]
		}
		q.mu.Unlock()
		if job != nil {
			if ctx.Err() != nil {
				return
			}
			job(ctx)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}
