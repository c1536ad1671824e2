package node

import (
	"sync"
	"time"

	"hallmark/consensus/driver"
	"hallmark/firmware/exec"
	"hallmark/firmware/metrics"
	"hallmark/ledger"
)

// maxTraced bounds the blocks whose timelines the tracer holds; beyond it
// (blocks that never commit pile up only under faults) it starts afresh.
const maxTraced = 4096

// blockTracer follows each block through the stages the consensus driver
// reports and, once the block is stored, observes the time between
// consecutive stages (hallmark_block_stage_seconds) and logs the timeline
// at debug level: where a block's, and so a transaction's, latency goes.
type blockTracer struct {
	metrics *metrics.Metrics
	log     func(msg string, args ...any)

	mu     sync.Mutex
	blocks map[ledger.BlockID]*timeline
}

type timeline struct {
	at [driver.NumStages]time.Time
}

func newBlockTracer(m *metrics.Metrics, debug func(string, ...any)) *blockTracer {
	return &blockTracer{metrics: m, log: debug, blocks: map[ledger.BlockID]*timeline{}}
}

// observe records a stage; the first report of a stage counts.
func (t *blockTracer) observe(ev driver.TraceEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.blocks[ev.Block]
	if tl == nil {
		if len(t.blocks) >= maxTraced {
			clear(t.blocks)
		}
		tl = &timeline{}
		t.blocks[ev.Block] = tl
	}
	if tl.at[ev.Stage].IsZero() {
		tl.at[ev.Stage] = ev.At
	}
}

// forget drops the timelines of abandoned blocks.
func (t *blockTracer) forget(ids []ledger.BlockID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		delete(t.blocks, id)
	}
}

// stageSpan is one observed interval: from the latest earlier stage
// present to this one.
type stageSpan struct {
	name string
	to   driver.Stage
}

// spans are the intervals observed per block, in order. "received" runs
// from the block's timestamp (its leader's build request), so it holds
// the leader's building and proposing, the network and this node's
// decoding and checks of the proposal.
var spans = []stageSpan{
	{"built", driver.StageBuilt},
	{"proposed", driver.StageProposed},
	{"received", driver.StageReceived},
	{"validated", driver.StageValidated},
	{"voted", driver.StageVoted},
	{"certified", driver.StageCertified},
	{"committed", driver.StageCommitted},
}

// stored closes a block's timeline: it is on disk at time now.
func (t *blockTracer) stored(sb *exec.Block, now time.Time) {
	t.mu.Lock()
	tl := t.blocks[sb.ID]
	delete(t.blocks, sb.ID)
	t.mu.Unlock()
	proposed := time.UnixMilli(int64(sb.Header.Timestamp))
	t.metrics.BlockStage.WithLabelValues("total").Observe(max(0, now.Sub(proposed).Seconds()))
	if tl == nil {
		return // synced, or traced before a restart
	}
	prev := proposed
	if !tl.at[driver.StageBuildRequested].IsZero() {
		prev = tl.at[driver.StageBuildRequested]
	}
	args := []any{"height", sb.Header.Height, "round", sb.Header.Round, "txs", len(sb.Block.Txs)}
	for _, s := range spans {
		at := tl.at[s.to]
		if at.IsZero() {
			continue
		}
		d := at.Sub(prev)
		t.metrics.BlockStage.WithLabelValues(s.name).Observe(max(0, d.Seconds()))
		args = append(args, s.name, d.Round(10*time.Microsecond))
		prev = at
	}
	d := now.Sub(prev)
	t.metrics.BlockStage.WithLabelValues("stored").Observe(max(0, d.Seconds()))
	args = append(args, "stored", d.Round(10*time.Microsecond), "total", now.Sub(proposed).Round(time.Millisecond))
	t.log("block timeline", args...)
}
