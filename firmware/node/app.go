package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"hallmark/consensus"
	"hallmark/firmware/blockrec"
	"hallmark/firmware/exec"
	"hallmark/firmware/mempool"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/storage"
)

// syncRebuildTimeout bounds rebuilding a pruned body to serve a peer's
// sync request.
const syncRebuildTimeout = 3 * time.Second

// maxProposalPayloads bounds the payload bytes one proposal carries, so
// that a proposal fits a peer message.
const maxProposalPayloads = 32 << 20

// consensusApp is the node's side of the consensus driver: validation,
// block building, commits, the committed chain for peers' catch-up, and
// durable safety data. Its methods run on the driver's application
// goroutine (SaveSafety on the signer goroutine).
type consensusApp struct{ n *Node }

// ValidateBlock implements driver.App.
func (a consensusApp) ValidateBlock(_ context.Context, req consensus.ValidateBlock) (*consensus.EpochConfig, error) {
	start := time.Now()
	_, next, err := a.n.tree.Validate(req.Block, req.Parent.ID, req.MustBeEmpty, req.Committed)
	d := time.Since(start)
	a.n.metrics.ExecDuration.WithLabelValues("validate").Observe(d.Seconds())
	if err == nil {
		a.n.cost.observe(d, len(req.Block.Txs))
	}
	return next, err
}

// BuildProposal implements driver.App. A leader with nothing to propose
// waits up to the idle wait for transactions; it proposes at once when
// the chain below holds uncommitted transactions, so that they commit.
func (a consensusApp) BuildProposal(ctx context.Context, req consensus.BuildProposal) (*ledger.Block, *consensus.EpochConfig, error) {
	n := a.n
	parent := n.tree.Lookup(req.Parent.ID)
	if parent == nil {
		return nil, nil, fmt.Errorf("node: proposal parent %s unknown", req.Parent.ID)
	}
	if !req.Empty {
		start := time.Now()
		if err := n.paceProposal(ctx, req, parent); err != nil {
			return nil, nil, err
		}
		n.metrics.ExecDuration.WithLabelValues("pace").Observe(time.Since(start).Seconds())
		// Stamp the block when it is built, not when it was asked for, so
		// that paced blocks' timestamps are blocks.minInterval apart.
		req.Timestamp = max(req.Timestamp, n.now().UnixMilli())
	}
	start := time.Now()
	b, next, rejected, err := n.tree.Build(req, n.chainID, func(p ledger.Params, skip func(ledger.TxID) bool) []*ledger.Transaction {
		var payloads int
		budget := time.Duration(p.BaseTimeoutMs) * time.Millisecond / 5
		return n.pool.Pick(min(int(p.MaxBlockTxs), n.cost.maxTxs(budget)), int64(p.MaxBlockBytes)-64, skip, func(tx *ledger.Transaction) bool {
			payloads += len(tx.Payload)
			return payloads <= maxProposalPayloads
		})
	})
	d := time.Since(start)
	n.metrics.ExecDuration.WithLabelValues("build").Observe(d.Seconds())
	if err == nil {
		n.cost.observe(d, len(b.Block.Txs))
	}
	if err != nil {
		return nil, nil, err
	}
	var drop []ledger.TxID
	for _, r := range rejected {
		n.countRejection(r.Err)
		switch reason.Of(r.Err) {
		case reason.TooNew, reason.Internal:
		default:
			drop = append(drop, r.Tx.ID())
		}
	}
	n.pool.Remove(drop)
	return b.Block, next, nil
}

// paceProposal waits before a proposal, by two time limits: a leader with
// nothing to propose (no pending transactions, none uncommitted below)
// waits up to the idle wait for transactions; any other waits until
// blocks.minInterval after the parent's timestamp (its leader's build
// request; or after this node executed the parent, if that was earlier:
// a leader whose clock runs ahead cannot stretch the pause) unless a full
// block is pending. The first keeps an idle chain to a couple of empty
// blocks a second, the second bounds the block rate under a trickle of
// transactions (each of which otherwise brings the two blocks that commit
// it at network speed).
//
// The pause runs from the parent's timestamp, not from when this node
// executed the parent: measured from there, the parent's proposing,
// delivery and validation came on top of the interval, and rounds at
// light load took minInterval plus the whole critical path.
func (n *Node) paceProposal(ctx context.Context, req consensus.BuildProposal, parent *exec.Block) error {
	params := n.currentEpoch().Params
	paceFrom := parent.Seen
	if ts := time.UnixMilli(int64(parent.Header.Timestamp)); ts.Before(paceFrom) {
		paceFrom = ts
	}
	var wait time.Duration
	if n.pool.Len() == 0 && len(n.tree.ChainTxs(parent)) == 0 {
		wait = min(n.cfg.Blocks.IdleWait.D(), time.Duration(params.BaseTimeoutMs)*time.Millisecond/2)
	} else {
		wait = time.Until(paceFrom.Add(n.cfg.Blocks.MinInterval.D()))
	}
	if wait <= 0 {
		return nil
	}
	full := min(int(params.MaxBlockTxs), n.cost.maxTxs(time.Duration(params.BaseTimeoutMs)*time.Millisecond/5))
	idle := n.pool.Len() == 0
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return nil
		case <-tick.C:
			// An idle leader proposes as soon as a transaction comes (then
			// paced by the minimum interval); a busy one when a block fills.
			if l := n.pool.Len(); (idle && l > 0) || l >= full {
				if idle {
					idle = false
					rest := time.Until(paceFrom.Add(n.cfg.Blocks.MinInterval.D()))
					if rest <= 0 || l >= full {
						return nil
					}
					deadline.Reset(rest)
					continue
				}
				return nil
			}
		}
	}
}

// Commit implements driver.App. The blocks are final: the execution tree
// drops every branch that conflicts with them at once, and the committer
// goroutine writes them to storage in order (one CommitBlock per block,
// with the commit proof and the next epoch's configuration beside the
// last), so that validating the next proposal need not wait for the disk.
// A storage failure stops the node.
func (a consensusApp) Commit(ctx context.Context, c consensus.Commit) error {
	n := a.n
	if err := n.commitErr(); err != nil {
		return err
	}
	start := time.Now()
	job := &commitJob{epochChange: c.EpochChange, abandoned: c.Abandoned}
	for i, blk := range c.Blocks {
		id := blk.Header.ID()
		sb := n.tree.Lookup(id)
		if sb == nil || sb.Output == nil || sb.Epoch == nil {
			return fmt.Errorf("node: committed block %d (%s) was not executed here", blk.Header.Height, id)
		}
		var proof *consensus.CommitProof
		var next *consensus.EpochConfig
		if i == len(c.Blocks)-1 {
			p := c.Proof
			proof, next = &p, c.EpochChange
		}
		rec, err := blockrec.Encode(proof, next, sb.Output)
		if err != nil {
			return err
		}
		job.blocks = append(job.blocks, sb)
		job.batches = append(job.batches, &storage.Batch{
			Block:      sb.Block,
			Validators: sb.Epoch.Validators.N(),
			ShardIndex: n.tree.ShardIndex(sb.Epoch),
			Shard:      sb.Shard,
			Body:       sb.Body,
			Writes:     sb.Output.Writes,
			Cert:       rec,
			Audit:      auditEntries(sb),
			Masks:      masks(sb),
		})
	}
	if len(job.blocks) > 0 {
		if err := n.tree.Finalize(job.blocks[len(job.blocks)-1].ID, c.Abandoned); err != nil {
			return err
		}
	}
	n.metrics.ExecDuration.WithLabelValues("commit").Observe(time.Since(start).Seconds())
	select {
	case n.commitQ <- job:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// afterCommit updates the mempool, admission and metrics for a block now
// in storage.
func (n *Node) afterCommit(sb *exec.Block, touched map[ledger.Address]bool, recheckAll *bool) {
	ids := make([]ledger.TxID, len(sb.Block.Txs))
	ok := 0
	for i := range sb.Block.Txs {
		ids[i] = sb.Output.Results[i].ID
		if sb.Output.Results[i].OK() {
			ok++
		}
	}
	now := n.now()
	proposed := time.UnixMilli(int64(sb.Header.Timestamp))
	for _, r := range n.pool.Remove(ids) {
		origin := r.Origin.String()
		n.metrics.CommitLatency.WithLabelValues(origin).Observe(now.Sub(r.Arrived).Seconds())
		// The block's timestamp is its leader's build request, which may
		// precede the arrival of transactions it picked after pacing.
		n.metrics.TxInclusion.WithLabelValues(origin).Observe(max(0, proposed.Sub(r.Arrived).Seconds()))
	}
	kind := "full"
	if len(ids) == 0 {
		kind = "empty"
	}
	n.metrics.BlocksCommitted.WithLabelValues(kind).Inc()
	n.metrics.TxsCommitted.WithLabelValues("ok").Add(float64(ok))
	n.metrics.TxsCommitted.WithLabelValues("failed").Add(float64(len(ids) - ok))
	n.metrics.BlockTxs.Observe(float64(len(ids)))
	n.metrics.BlockLatency.Observe(now.Sub(sb.Seen).Seconds())
	for addr := range n.applyAdmission(sb.Output.Writes) {
		touched[addr] = true
	}
	for _, w := range sb.Output.Writes {
		if bytes.Equal(w.Key, keyFilter) || bytes.Equal(w.Key, keyParams) {
			*recheckAll = true
		}
		if bytes.Equal(w.Key, keyValidators) {
			n.refreshPeers()
		}
	}
	n.committedHook(sb)
}

// recheckPool drops pending transactions that the committed state now
// refuses: those of accounts a commit changed, or all of them when the
// filter rules or parameters changed. Transactions that aged out of the
// window go as well.
func (n *Node) recheckPool(touched map[ledger.Address]bool, all bool) {
	if !all && len(touched) == 0 {
		return
	}
	dropped := n.pool.Recheck(func(_ *ledger.Transaction, sender ledger.Address, _ time.Time) bool {
		return all || touched[sender]
	}, n.admit.Check)
	if dropped > 0 {
		n.log.Debug("pending transactions dropped after a commit", "count", dropped)
	}
}

// costEstimate follows what executing a transaction costs this node
// (validating or building a block, per transaction), so that a leader
// proposes no more than the others can validate within a fraction of the
// round timeout: blocks grow with the load up to what the machine does in
// time, instead of timing out and stalling the chain.
type costEstimate struct {
	mu    sync.Mutex
	perTx time.Duration // moving average; 0 until measured
}

// minBlockCap is the fewest transactions a block may be capped at.
const minBlockCap = 200

func (c *costEstimate) observe(d time.Duration, txs int) {
	if txs < 20 {
		return // fixed costs dominate small blocks
	}
	v := d / time.Duration(txs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perTx == 0 {
		c.perTx = v
	} else {
		c.perTx = (4*c.perTx + v) / 5
	}
}

// maxTxs returns how many transactions fit the time budget.
func (c *costEstimate) maxTxs(budget time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perTx <= 0 {
		return 1 << 30
	}
	return max(minBlockCap, int(budget/c.perTx))
}

// countRejection counts a mempool refusal by reason.
func (n *Node) countRejection(err error) {
	switch {
	case err == nil:
	case errors.Is(err, mempool.ErrDuplicate):
		n.metrics.Rejected.WithLabelValues("duplicate").Inc()
	case errors.Is(err, mempool.ErrBusy):
		n.metrics.Rejected.WithLabelValues("busy").Inc()
	default:
		n.metrics.Rejected.WithLabelValues(reason.Of(err).String()).Inc()
	}
}

// auditEntries turns a block's audit events into storage's entries.
func auditEntries(sb *exec.Block) []storage.AuditEntry {
	var out []storage.AuditEntry
	for _, ev := range sb.Output.Events {
		e := storage.AuditEntry{
			Time: ev.Time, Actor: ev.Actor.String(), Action: ev.Kind.String(), Outcome: "ok", Detail: ev.Note, Height: ev.Height,
		}
		if ev.Type != 0 {
			e.Action += " " + ev.Type.String()
		}
		if ev.Outcome != reason.OK {
			e.Outcome = ev.Outcome.String()
		}
		if ev.Record != nil {
			e.Record = ev.Record.String()
		}
		if ev.Grant != nil {
			e.Grant = ev.Grant.String()
		}
		if ev.Target != nil {
			e.Detail = joinDetail(e.Detail, "target "+ev.Target.String())
		}
		if ev.Tx != nil {
			e.Detail = joinDetail(e.Detail, "tx "+ev.Tx.String())
		}
		out = append(out, e)
	}
	return out
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// masks turns a block's payload erasures into storage's mask orders.
func masks(sb *exec.Block) []storage.Mask {
	var out []storage.Mask
	for _, e := range sb.Output.Erasures {
		m := storage.Mask{Digest: e.Payload, Time: sb.Header.Timestamp, Height: sb.Header.Height, By: "supervision.mask"}
		// The masking transaction is the one whose event names the record.
		for _, ev := range sb.Output.Events {
			if ev.Record != nil && *ev.Record == e.Record && ev.Type == ledger.TxRecordMask && ev.Tx != nil {
				tx := *ev.Tx
				m.TxID, m.By, m.Reason = &tx, ev.Actor.String(), ev.Note
			}
		}
		out = append(out, m)
	}
	return out
}

// CommittedHeight implements consensus.CommittedReader.
func (a consensusApp) CommittedHeight() (uint64, error) {
	tip, ok := a.n.store.Tip()
	if !ok {
		return 0, errors.New("node: empty store")
	}
	return tip.Height, nil
}

// CommittedBlock implements consensus.CommittedReader: the block with the
// payloads this node still has, and the proof stored beside it.
func (a consensusApp) CommittedBlock(h uint64) (*ledger.Block, *consensus.CommitProof, error) {
	n := a.n
	// This runs on the consensus application goroutine: a body that must
	// be rebuilt from peers gets a short deadline, not the request default.
	ctx, cancel := context.WithTimeout(context.Background(), syncRebuildTimeout)
	defer cancel()
	b, err := n.store.Block(ctx, h, n.transport)
	if err != nil {
		return nil, nil, err
	}
	for i := range b.Txs {
		if d := b.Txs[i].Body.PayloadDigest; d != nil {
			if p, err := n.store.Payload(*d); err == nil {
				b.Txs[i].Payload = p
			}
		}
	}
	rec, err := readRecord(n.store, h)
	if err != nil {
		return nil, nil, err
	}
	proof, err := rec.CommitProof()
	if err != nil {
		return nil, nil, err
	}
	return b, proof, nil
}

// SaveSafety implements driver.SafetyStore: safety data and the block
// voted for or proposed go to storage in one fsync'd transaction.
func (a consensusApp) SaveSafety(ctx context.Context, s consensus.SafetyData, cb *consensus.CertifiedBlock) error {
	enc, err := consensus.EncodeSafetyData(&s)
	if err != nil {
		return err
	}
	var keep []storage.KeptBlock
	if cb != nil {
		data, err := ledger.Marshal(cb)
		if err != nil {
			return fmt.Errorf("node: encoding kept block: %w", err)
		}
		keep = append(keep, storage.KeptBlock{Height: cb.Block.Header.Height, ID: cb.Block.Header.ID(), Data: data})
	}
	start := time.Now()
	err = a.n.store.SaveSafety(ctx, enc, keep...)
	a.n.metrics.ExecDuration.WithLabelValues("safety").Observe(time.Since(start).Seconds())
	return err
}

// keptBlocks decodes the kept blocks for recovery.
func keptBlocks(st *storage.Store) ([]consensus.CertifiedBlock, error) {
	kept, err := st.KeptBlocks()
	if err != nil {
		return nil, err
	}
	var out []consensus.CertifiedBlock
	for _, k := range kept {
		var cb consensus.CertifiedBlock
		if err := ledger.Unmarshal(k.Data, &cb); err != nil {
			return nil, fmt.Errorf("node: kept block %d: %w", k.Height, err)
		}
		out = append(out, cb)
	}
	return out, nil
}
