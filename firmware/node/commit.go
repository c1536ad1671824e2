package node

import (
	"context"
	"fmt"
	"time"

	"hallmark/consensus"
	"hallmark/firmware/exec"
	"hallmark/ledger"
	"hallmark/storage"
)

// commitJob is one consensus commit on its way to storage.
type commitJob struct {
	blocks      []*exec.Block
	batches     []*storage.Batch
	epochChange *consensus.EpochConfig
	abandoned   []ledger.BlockID
}

// commitQueueLen bounds the commits waiting for storage; beyond it
// consensus waits (back-pressure from the disk).
const commitQueueLen = 64

// Group commit bounds: when commits queue up behind the disk, the
// committer stores up to this many blocks (and transactions) in one bbolt
// transaction. A random-key index insert dirties a page whichever block
// it comes from, so blocks stored together share page writes and one
// fsync; the bounds keep one transaction's memory and latency modest.
const (
	maxGroupBlocks = 8
	maxGroupTxs    = 8000
)

// runCommitter writes committed blocks to storage in order until the queue
// is closed. It finishes every queued job even when the node is stopping:
// each group of blocks is atomic in storage and the work is bounded. On a
// storage failure it records the error and stops the node.
func (n *Node) runCommitter(stop context.CancelFunc) {
	ctx := context.Background()
	failed := false
	var next *commitJob
	for {
		job := next
		next = nil
		if job == nil {
			var ok bool
			if job, ok = <-n.commitQ; !ok {
				return
			}
		}
		if failed {
			continue
		}
		group := []*commitJob{job}
		group, next = n.gatherCommits(group)
		if err := n.storeGroup(ctx, group); err != nil {
			n.log.Error("storing committed blocks failed; stopping", "err", err)
			n.commitMu.Lock()
			n.commitFail = err
			n.commitMu.Unlock()
			failed = true
			stop()
		}
	}
}

// gatherCommits adds to group the jobs already waiting in the queue, up to
// the group bounds, without waiting for more. A job with an epoch change
// ends a group (the next epoch takes over once its blocks are stored). It
// returns the group and a job it took from the queue that did not fit.
func (n *Node) gatherCommits(group []*commitJob) ([]*commitJob, *commitJob) {
	blocks, txs := 0, 0
	for _, j := range group {
		blocks, txs = blocks+len(j.blocks), txs+j.txCount()
	}
	for group[len(group)-1].epochChange == nil {
		var j *commitJob
		select {
		case q, ok := <-n.commitQ:
			if !ok {
				return group, nil
			}
			j = q
		default:
			return group, nil
		}
		if blocks+len(j.blocks) > maxGroupBlocks || txs+j.txCount() > maxGroupTxs {
			return group, j
		}
		group = append(group, j)
		blocks, txs = blocks+len(j.blocks), txs+j.txCount()
	}
	return group, nil
}

func (j *commitJob) txCount() int {
	c := 0
	for _, sb := range j.blocks {
		c += len(sb.Block.Txs)
	}
	return c
}

func (n *Node) commitErr() error {
	n.commitMu.Lock()
	defer n.commitMu.Unlock()
	return n.commitFail
}

// storeGroup stores the blocks of consecutive jobs in one storage
// transaction, then does each job's bookkeeping in order: the execution
// tree learns each block is stored, the mempool and admission see it, an
// epoch change takes effect, abandoned blocks are released.
func (n *Node) storeGroup(ctx context.Context, group []*commitJob) error {
	var batches []*storage.Batch
	var blocks []*exec.Block
	for _, j := range group {
		batches = append(batches, j.batches...)
		blocks = append(blocks, j.blocks...)
	}
	if len(batches) > 0 {
		t0 := time.Now()
		if err := n.store.CommitBlocks(ctx, batches); err != nil {
			return fmt.Errorf("node: storing blocks %d to %d: %w", blocks[0].Header.Height, blocks[len(blocks)-1].Header.Height, err)
		}
		now := n.now()
		for _, sb := range blocks {
			n.tracer.stored(sb, now)
		}
		// The store metric stays per block: the group's time shared out.
		per := time.Since(t0).Seconds() / float64(len(batches))
		for range batches {
			n.metrics.ExecDuration.WithLabelValues("store").Observe(per)
		}
		n.metrics.StoreGroupBlocks.Observe(float64(len(batches)))
	}
	touched := map[ledger.Address]bool{}
	recheckAll := false
	for _, job := range group {
		for _, sb := range job.blocks {
			if err := n.tree.Stored(sb.ID); err != nil {
				return err
			}
			n.afterCommit(sb, touched, &recheckAll)
		}
		if job.epochChange != nil {
			n.enterEpoch(*job.epochChange)
		}
		n.tracer.forget(job.abandoned)
		if err := n.store.ReleaseKept(ctx, job.abandoned...); err != nil {
			n.log.Warn("releasing abandoned blocks", "err", err)
		}
	}
	// Only the last job of a group may change the epoch, so one recheck
	// after all of them sees what each would have.
	n.recheckPool(touched, recheckAll)
	return nil
}
