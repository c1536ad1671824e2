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

// runCommitter writes committed blocks to storage in order until the queue
// is closed. It finishes every queued job even when the node is stopping:
// each block is atomic in storage and the work is bounded. On a storage
// failure it records the error and stops the node.
func (n *Node) runCommitter(stop context.CancelFunc) {
	ctx := context.Background()
	failed := false
	for job := range n.commitQ {
		if failed {
			continue
		}
		if err := n.store1(ctx, job); err != nil {
			n.log.Error("storing committed blocks failed; stopping", "err", err)
			n.commitMu.Lock()
			n.commitFail = err
			n.commitMu.Unlock()
			failed = true
			stop()
		}
	}
}

func (n *Node) commitErr() error {
	n.commitMu.Lock()
	defer n.commitMu.Unlock()
	return n.commitFail
}

func (n *Node) store1(ctx context.Context, job *commitJob) error {
	touched := map[ledger.Address]bool{}
	recheckAll := false
	for i, sb := range job.blocks {
		t0 := time.Now()
		if err := n.store.CommitBlock(ctx, job.batches[i]); err != nil {
			return fmt.Errorf("node: storing block %d: %w", sb.Header.Height, err)
		}
		n.metrics.ExecDuration.WithLabelValues("store").Observe(time.Since(t0).Seconds())
		if err := n.tree.Stored(sb.ID); err != nil {
			return err
		}
		n.afterCommit(sb, touched, &recheckAll)
	}
	if job.epochChange != nil {
		n.enterEpoch(*job.epochChange)
	}
	if err := n.store.ReleaseKept(ctx, job.abandoned...); err != nil {
		n.log.Warn("releasing abandoned blocks", "err", err)
	}
	n.recheckPool(touched, recheckAll)
	return nil
}
