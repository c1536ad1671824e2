// Package metrics defines the node's Prometheus metrics: what the node
// records as it runs (commits, latencies, rejections, API requests) and
// collectors that read the other parts' counters when scraped (consensus,
// mempool, signature cache, ingress, fast path, peer bandwidth).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const ns = "hallmark"

// Metrics are the instruments the node updates itself.
type Metrics struct {
	Registry *prometheus.Registry

	BlocksCommitted *prometheus.CounterVec // by kind: "full", "empty"
	TxsCommitted    *prometheus.CounterVec // by result: "ok", "failed"
	// CommitLatency is submit-to-commit time of transactions that
	// arrived at this node (kiosk, API or gossip).
	CommitLatency *prometheus.HistogramVec // by origin
	// BlockLatency is the time from first executing a block to its
	// commit on this node.
	BlockLatency prometheus.Histogram
	ExecDuration *prometheus.HistogramVec // by phase: "validate", "build", "commit"
	// BlockStage is the time a block spent between two stages of its
	// life on this node (proposed, received, validated, voted,
	// certified, committed, stored), observed when it is stored.
	BlockStage *prometheus.HistogramVec // by stage
	// TxInclusion is the time from a transaction's arrival at this node
	// to the proposal of the block that holds it.
	TxInclusion *prometheus.HistogramVec // by origin
	BlockTxs    prometheus.Histogram
	// StoreGroupBlocks is how many blocks each storage transaction of
	// the committer held (more than one when commits queued up).
	StoreGroupBlocks prometheus.Histogram
	Rejected         *prometheus.CounterVec // mempool refusals, by reason name
	APIRequests      *prometheus.CounterVec // by route and status code
	APIAuthDenied    *prometheus.CounterVec // by outcome: "unauthenticated", "forbidden"
	GossipDropped    prometheus.Counter
	InboundDropped   prometheus.Counter
}

// New registers the node's metrics, the Go runtime's and the process's in
// a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	latency := []float64{.002, .005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10, 30}
	stages := []float64{.0005, .001, .002, .005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, 1, 2, 5}
	m := &Metrics{
		Registry: r,
		BlocksCommitted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "blocks_committed_total",
			Help: "Blocks committed, by whether they carried transactions."}, []string{"kind"}),
		TxsCommitted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "transactions_committed_total",
			Help: "Transactions in committed blocks, by execution result."}, []string{"result"}),
		CommitLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "commit_latency_seconds",
			Help: "Time from a transaction's arrival at this node to its commit, by how it arrived.", Buckets: latency}, []string{"origin"}),
		BlockLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "block_latency_seconds",
			Help: "Time from first executing a block to its commit.", Buckets: latency}),
		ExecDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "block_phase_seconds",
			Help: "Time spent per block: validate, build, pace (a leader waiting before it builds), commit (store: the storage write within it), safety (safety data and kept block, before a vote).", Buckets: latency}, []string{"phase"}),
		BlockStage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "block_stage_seconds",
			Help: "Time a block spent between two stages of its life on this node, by the stage it reached (see docs/API.md).", Buckets: stages}, []string{"stage"}),
		TxInclusion: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "tx_inclusion_seconds",
			Help: "Time from a transaction's arrival at this node to the proposal of the block that holds it (the block's timestamp), by how it arrived.", Buckets: stages}, []string{"origin"}),
		BlockTxs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "block_transactions",
			Help: "Transactions per committed block.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		StoreGroupBlocks: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "store_group_blocks",
			Help: "Blocks stored per storage transaction (group commit when commits queue up).", Buckets: []float64{1, 2, 3, 4, 6, 8}}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mempool_rejected_total",
			Help: "Transactions the mempool refused, by reason."}, []string{"reason"}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "api_requests_total",
			Help: "HTTP API requests, by route and status code."}, []string{"route", "code"}),
		APIAuthDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "api_auth_denied_total",
			Help: "Admin API requests refused, by outcome."}, []string{"outcome"}),
		GossipDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "gossip_dropped_total",
			Help: "Gossiped transaction batches dropped because this node was behind."}),
		InboundDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "consensus_inbound_dropped_total",
			Help: "Consensus messages dropped because the core was behind."}),
	}
	r.MustRegister(m.BlocksCommitted, m.TxsCommitted, m.CommitLatency, m.BlockLatency, m.ExecDuration, m.BlockStage, m.TxInclusion, m.BlockTxs, m.StoreGroupBlocks,
		m.Rejected, m.APIRequests, m.APIAuthDenied, m.GossipDropped, m.InboundDropped)
	return m
}

// Since returns seconds since t, for observing.
func Since(t time.Time) float64 { return time.Since(t).Seconds() }

// Sample is one value of a labelled metric read at scrape time.
type Sample struct {
	Labels []string
	Value  float64
}

// funcCollector exports values a function reads at scrape time.
type funcCollector struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func() []Sample
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, c.kind, s.Value, s.Labels...)
	}
}

// CounterFunc registers a counter family whose values read returns at
// each scrape.
func (m *Metrics) CounterFunc(name, help string, labels []string, read func() []Sample) {
	m.Registry.MustRegister(&funcCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil),
		kind: prometheus.CounterValue, read: read,
	})
}

// GaugeFunc registers a gauge family whose values read returns at each
// scrape.
func (m *Metrics) GaugeFunc(name, help string, labels []string, read func() []Sample) {
	m.Registry.MustRegister(&funcCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil),
		kind: prometheus.GaugeValue, read: read,
	})
}

// One is a single unlabelled sample.
func One(v float64) []Sample { return []Sample{{Value: v}} }
