// Command benchcluster is Hallmark's end-to-end benchmark (make
// bench-cluster). It starts a consortium of four hallmarkd processes on this
// machine, each with its own swtpm holding its validator key, drives them
// with kiosk load over the datagram path, and prints, from one run:
//
//	verify_bound_tps=<2 cores' SM2 verify rate / 4> committed_tps=<...> ratio=<...> p50_ms=<...> p99_ms=<...>
//	half_load offered_tps=<...> committed_tps=<...> p50_ms=<...> p99_ms=<...>
//
// and each node's peak resident memory.
//
// Why the bound is the verify rate over four: every validator verifies every
// transaction's SM2 signature once (the node that takes it from a kiosk, and
// each peer it gossips to), and all four share the machine's cores; so the
// cluster cannot commit more than the machine's verify rate divided by four.
// The verify rate is measured in the same run, on all cores in parallel,
// before the cluster starts and again after it stops; the bound uses their
// mean.
//
// Method. Saturation: a closed loop keeps -window transactions in flight
// (a new one goes out when one commits or is refused), which finds the
// cluster's capacity without flooding its ingress queues. The default,
// 2000, committed as much as 4000 or 8000 in sweeps on the current runtime
// (larger windows only add latency and memory); -window 0 searches 1000,
// 2000, 4000 and 8000, 5 s each, and keeps the best. After -warmup,
// committed_tps counts the transactions in blocks seen during -measure, and
// p50/p99 are submit-to-commit latencies of the transactions sent during
// -measure. Half load: an open loop at half the measured committed rate
// for -half, latencies likewise. A transaction counts as committed when the
// benchmark sees its block on node 0's HTTP API (height polled every 2 ms).
// Transactions are signed as the load consumes them, but not during a
// measurement (what a measurement needs is signed just before it), so that
// the load generator's signing does not compete with the nodes while they
// are measured; receipts are parsed but not verified, for the same reason.
//
// The nodes share loopback rather than network namespaces by default: the
// figure is about the node software, and a bridge between namespaces adds
// kernel forwarding work on the same two cores without adding anything the
// fault tests do not already cover. -netns runs them in namespaces (root).
// All kiosks reach the nodes from 127.0.0.1, so the per-source rate limiter
// of the kiosk fast path is switched off (xdp.ratePerSec 0).
//
// -rate N replaces both phases by one open loop at N transactions per
// second (latency at a fixed load); -min-interval sets the nodes'
// blocks.minInterval. Each measurement logs node 0's mean block stage
// times (hallmark_block_stage_seconds, docs/API.md) over its window.
//
// -profile DIR saves a CPU profile of every node over each measurement
// (from the nodes' pprof endpoint) and of the benchmark itself, and every
// node's metrics and heap profile after each (nodeN.saturation.pprof,
// nodeN.half.metrics, nodeN.saturation.heap.pprof...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hallmark/firmware/clustertest"
	"hallmark/gm"
)

type options struct {
	hallmarkd string
	dir       string
	keep      bool
	netns     bool
	nodes     int
	window    int
	sockets   int
	warmup    time.Duration
	measure   time.Duration
	half      time.Duration
	verifyFor time.Duration
	profile   string
	verbose   bool
	series    time.Duration
	rate      float64
	minIntvl  string
	gcPercent int
	memLimit  int64
}

func main() {
	var o options
	flag.StringVar(&o.hallmarkd, "hallmarkd", "bin/hallmarkd", "node binary")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a temporary one, removed at the end)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (stores, logs)")
	flag.BoolVar(&o.netns, "netns", false, "run every node in its own network namespace (root)")
	flag.IntVar(&o.nodes, "nodes", 4, "validators")
	flag.IntVar(&o.window, "window", 2000, "transactions in flight in the saturation phase (0: search 1000 to 8000 for the highest rate)")
	flag.IntVar(&o.sockets, "sockets", 2, "kiosk sockets per node")
	flag.DurationVar(&o.warmup, "warmup", 4*time.Second, "load before each measurement")
	flag.DurationVar(&o.measure, "measure", 10*time.Second, "saturation measurement")
	flag.DurationVar(&o.half, "half", 10*time.Second, "half-load measurement")
	flag.DurationVar(&o.verifyFor, "verify-time", 2*time.Second, "SM2 verify-rate measurement, before and after")
	flag.StringVar(&o.profile, "profile", "", "save CPU profiles and metrics of the nodes and the benchmark over each measurement in this directory")
	flag.BoolVar(&o.verbose, "v", false, "log the cluster's progress")
	flag.DurationVar(&o.series, "series", 0, "before the saturation measurement, log the committed rate every 5 s for this long")
	flag.StringVar(&o.minIntvl, "min-interval", "", "set the nodes' blocks.minInterval (a Go duration; default: the node's default)")
	flag.IntVar(&o.gcPercent, "gc-percent", 0, "set the nodes' runtime.gcPercent (0: the node's default)")
	flag.Int64Var(&o.memLimit, "memory-limit-mib", -1, "set the nodes' runtime.memoryLimit in MiB, 0 for none (-1: the node's default)")
	flag.Float64Var(&o.rate, "rate", 0, "skip the saturation phase and run the open loop at this many transactions per second instead of half the saturated rate (latency at a fixed load)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchcluster:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

func run(ctx context.Context, o options) (err error) {
	workers := runtime.NumCPU()
	logf("machine: %d cores, load average %s", workers, loadAvg())
	vBefore := verifyRate(o.verifyFor, workers)
	logf("SM2 verify rate on %d cores before the cluster starts: %.0f/s", workers, vBefore)

	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "benchcluster-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	var progress io.Writer = io.Discard
	if o.verbose {
		progress = os.Stderr
	}
	c, err := clustertest.Start(ctx, clustertest.Options{
		Nodes: o.nodes, Dir: dir, Hallmarkd: o.hallmarkd, Netns: o.netns, Log: progress,
		Configure: func(_ int, cfg map[string]any) {
			cfg["xdp"] = map[string]any{"ratePerSec": 0}
			if o.minIntvl != "" {
				cfg["blocks"] = map[string]any{"minInterval": o.minIntvl}
			}
			rt := map[string]any{}
			if o.gcPercent != 0 {
				rt["gcPercent"] = o.gcPercent
			}
			if o.memLimit >= 0 {
				rt["memoryLimit"] = o.memLimit << 20
			}
			if len(rt) > 0 {
				cfg["runtime"] = rt
			}
		},
	})
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	if err := c.WaitHeight(ctx, 2, 60*time.Second); err != nil {
		return err
	}
	logf("cluster: %d nodes up in %s (%s)", o.nodes, dir, map[bool]string{false: "loopback", true: "network namespaces"}[o.netns])

	ks, err := dialKiosks(c, o.sockets)
	if err != nil {
		return err
	}
	defer ks.close()

	var current struct {
		sync.Mutex
		t *tracker
	}
	track := func() *tracker {
		current.Lock()
		defer current.Unlock()
		return current.t
	}
	setTrack := func(t *tracker) {
		current.Lock()
		current.t = t
		current.Unlock()
		ks.track.Store(t)
	}
	start, err := c.Height(ctx, 0)
	if err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() { watchErr <- watchCommits(wctx, c, 0, start+1, track) }()

	bound := vBefore / float64(o.nodes)

	sg := &signer{key: c.Kiosk, workers: workers}
	ranOut := make(chan bool, 1)
	refillErr := make(chan error, 1)
	var refillPaused atomic.Bool
	var satRes result
	var satCost *costBreakdown
	rss := make([]int64, len(c.Nodes))
	window := o.window
	if o.rate <= 0 {
		// Saturation.
		win := newWindow()
		sat := newTracker(&batch{}, win)
		if err := sg.topUp(ctx, sat, 10*time.Second, bound/2); err != nil {
			return err
		}
		setTrack(sat)
		pctx, stopSend := context.WithCancel(ctx)
		defer stopSend()
		go func() { ranOut <- !ks.runClosed(pctx, sat) }()
		go func() {
			refillErr <- sg.keepUp(pctx, sat, func() float64 { return 1.5 * sg.recentRate(sat) }, &refillPaused)
		}()
		if window <= 0 {
			if window, err = searchWindow(ctx, sat, win); err != nil {
				return err
			}
		} else {
			win.resize(ctx, window, time.Second)
		}
		if err := sleep(ctx, o.warmup); err != nil {
			return err
		}
		for end, prev := time.Now().Add(o.series), phaseTimes(ctx, c, 1); time.Now().Before(end); {
			from := time.Now()
			if err := sleep(ctx, 5*time.Second); err != nil {
				return err
			}
			h, _ := c.Height(ctx, 0)
			m, _ := c.Memory(1)
			cur := phaseTimes(ctx, c, 1)
			logf("series: %.0f/s committed, height %d; node1: %.0f MiB resident, per block %s",
				sat.result(from, time.Now()).tps, h, mib(m.RSS), cur.since(prev))
			prev = cur
		}
		// No signing during the measurement: what it needs is signed now, at
		// twice the rate of the warm-up, and the cluster gets a moment to
		// settle after.
		refillPaused.Store(true)
		if err := sg.topUp(ctx, sat, o.measure+5*time.Second, 2*sg.recentRate(sat)); err != nil {
			return err
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
		var profiles *profiler
		if o.profile != "" {
			if profiles, err = startProfiles(ctx, c, o.profile, "saturation", o.measure); err != nil {
				return err
			}
		}
		cpu0, st0 := cpuSnapshot(c), readStages(ctx, c, 0)
		from := time.Now()
		if err := sleep(ctx, o.measure); err != nil {
			return err
		}
		to := time.Now()
		cpu1, st1 := cpuSnapshot(c), readStages(ctx, c, 0)
		stopSend()
		if <-ranOut {
			return errors.New("the saturation phase ran out of signed transactions")
		}
		if err := <-refillErr; err != nil {
			return err
		}
		if profiles != nil {
			if err := profiles.wait(); err != nil {
				logf("profiles: %v", err)
			}
			saveMetrics(ctx, c, o.profile, "saturation")
		}
		drain(ctx, sat, from, to)
		satRes = sat.result(from, to)
		logf("saturation (window %d): %d committed in %v; receipts: %s", window, satRes.committed, to.Sub(from).Round(time.Millisecond), sat.summary())
		logf("cpu over the saturation measurement: %s", cpu1.since(cpu0))
		logStages("saturation", st1.since(st0))
		if profiles != nil {
			satCost = logBreakdown(o.profile, "saturation", len(c.Nodes), satRes.committed)
		}
		if err := waitIdle(ctx, c, 30*time.Second); err != nil {
			logf("warning: %v", err)
		}

		var mem []string
		for i := range c.Nodes {
			m, err := c.Memory(i)
			if err != nil {
				return err
			}
			rss[i] = m.PeakRSS
			mem = append(mem, fmt.Sprintf("node%d %.0f (heap and stacks %.0f, mapped files %.0f)", i, mib(m.RSS), mib(m.Anon), mib(m.File)))
		}
		logf("resident memory after the saturation phase, MiB: %s", strings.Join(mem, "; "))
	}

	// Half load (or the fixed rate).
	rate := satRes.tps / 2
	phase := "half load"
	if o.rate > 0 {
		rate, phase = o.rate, "fixed rate"
	}
	hl := newTracker(&batch{}, nil)
	if err := sg.topUp(ctx, hl, 10*time.Second, rate); err != nil {
		return err
	}
	setTrack(hl)
	hctx, stopHalf := context.WithCancel(ctx)
	defer stopHalf()
	go func() { ranOut <- !ks.runOpen(hctx, hl, rate) }()
	refillPaused.Store(false)
	go func() { refillErr <- sg.keepUp(hctx, hl, func() float64 { return 1.2 * rate }, &refillPaused) }()
	if err := sleep(ctx, o.warmup); err != nil {
		return err
	}
	refillPaused.Store(true)
	if err := sg.topUp(ctx, hl, o.half+5*time.Second, 1.2*rate); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	var hprof *profiler
	if o.profile != "" {
		if hprof, err = startProfiles(ctx, c, o.profile, "half", o.half); err != nil {
			return err
		}
	}
	hcpu0, hst0 := cpuSnapshot(c), readStages(ctx, c, 0)
	hfrom := time.Now()
	if err := sleep(ctx, o.half); err != nil {
		return err
	}
	hto := time.Now()
	hcpu1, hst1 := cpuSnapshot(c), readStages(ctx, c, 0)
	stopHalf()
	if <-ranOut {
		return errors.New("the half-load phase ran out of signed transactions")
	}
	if err := <-refillErr; err != nil {
		return err
	}
	if hprof != nil {
		if err := hprof.wait(); err != nil {
			logf("profiles: %v", err)
		}
		saveMetrics(ctx, c, o.profile, "half")
	}
	drain(ctx, hl, hfrom, hto)
	halfRes := hl.result(hfrom, hto)
	logf("%s: offered %.0f/s, %d committed in %v; receipts: %s", phase, rate, halfRes.committed, hto.Sub(hfrom).Round(time.Millisecond), hl.summary())
	logf("cpu over the %s measurement: %s", phase, hcpu1.since(hcpu0))
	logStages(phase, hst1.since(hst0))
	var halfCost *costBreakdown
	if hprof != nil {
		halfCost = logBreakdown(o.profile, "half", len(c.Nodes), halfRes.committed)
	}

	for i := range c.Nodes {
		if m, err := c.Memory(i); err == nil {
			rss[i] = max(rss[i], m.PeakRSS)
		}
	}
	stopWatch()
	if err := <-watchErr; err != nil {
		return fmt.Errorf("watching commits: %w", err)
	}
	if ex := c.Exited(); len(ex) > 0 {
		return fmt.Errorf("nodes exited: %v", ex)
	}
	ag, err := c.CheckAgreement(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	logf("agreement: every node has the same %d blocks (%d transactions)", ag.Height, ag.Txs)
	ks.close()
	closed = true
	if err := c.Close(); err != nil {
		logf("stopping the cluster: %v", err)
	}
	vAfter := verifyRate(o.verifyFor, workers)
	logf("SM2 verify rate on %d cores after the cluster stopped: %.0f/s; load average %s", workers, vAfter, loadAvg())

	bound = (vBefore + vAfter) / 2 / float64(o.nodes)
	// One verification's CPU, and what a node may spend per transaction in
	// all at the goal: ratio = (one verify) / (CPU per tx per node)
	// when the nodes share the machine's cores.
	verifyUS := 1e6 * float64(workers) / ((vBefore + vAfter) / 2)
	logf("one SM2 verify costs %.1f µs of a core; at ratio 0.7 a node may spend %.1f µs of CPU per committed transaction in all", verifyUS, verifyUS/0.7)
	if o.rate > 0 {
		fmt.Printf("fixed_rate offered_tps=%.0f committed_tps=%.0f p50_ms=%.1f p99_ms=%.1f\n", rate, halfRes.tps, ms(halfRes.p50), ms(halfRes.p99))
		if halfCost != nil {
			fmt.Printf("fixed_rate_cpu_us_per_tx_per_node %s\n", halfCost.summary(halfRes.committed))
		}
		return nil
	}
	fmt.Printf("verify_bound_tps=%.0f committed_tps=%.0f ratio=%.3f p50_ms=%.1f p99_ms=%.1f\n",
		bound, satRes.tps, satRes.tps/bound, ms(satRes.p50), ms(satRes.p99))
	fmt.Printf("half_load offered_tps=%.0f committed_tps=%.0f p50_ms=%.1f p99_ms=%.1f\n", rate, halfRes.tps, ms(halfRes.p50), ms(halfRes.p99))
	var parts []string
	for i, v := range rss {
		parts = append(parts, fmt.Sprintf("node%d=%.1f", i, mib(v)))
	}
	fmt.Printf("peak_rss_mib %s\n", strings.Join(parts, " "))
	if satCost != nil {
		fmt.Printf("saturation_cpu_us_per_tx_per_node %s\n", satCost.summary(satRes.committed))
	}
	if halfCost != nil {
		fmt.Printf("half_load_cpu_us_per_tx_per_node %s\n", halfCost.summary(halfRes.committed))
	}
	return nil
}

// logBreakdown reads the nodes' CPU profiles of a phase and logs where
// their CPU went, per committed transaction per node. It returns nil if
// a profile cannot be read.
func logBreakdown(dir, phase string, nodes, committed int) *costBreakdown {
	b := newCostBreakdown()
	for i := range nodes {
		if err := b.addFile(filepath.Join(dir, fmt.Sprintf("node%d.%s.pprof", i, phase))); err != nil {
			logf("cpu breakdown: %v", err)
			return nil
		}
	}
	lines := b.lines(committed)
	if len(lines) == 0 {
		return nil
	}
	logf("where the nodes' CPU went over the %s measurement (from their CPU profiles; µs per committed transaction per node, mean of %d nodes; share of node CPU):", phase, nodes)
	for _, l := range lines {
		logf("  %s", l)
	}
	return b
}

// logStages logs node 0's mean block and transaction stage times over a
// measurement.
func logStages(phase string, lines []string) {
	if len(lines) == 0 {
		return
	}
	logf("node0 stage means over the %s measurement:", phase)
	for _, l := range lines {
		logf("  %s", l)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// phases are a node's cumulative block phase times (seconds) and counts.
type phases map[string][2]float64

var phaseNames = []string{"build", "validate", "safety", "store"}

func phaseTimes(ctx context.Context, c *clustertest.Cluster, i int) phases {
	p := phases{}
	for _, name := range phaseNames {
		sum, _ := c.Metric(ctx, i, "hallmark_block_phase_seconds_sum", `phase="`+name+`"`)
		n, _ := c.Metric(ctx, i, "hallmark_block_phase_seconds_count", `phase="`+name+`"`)
		p[name] = [2]float64{sum, n}
	}
	return p
}

// since renders the mean time per call of each phase since prev.
func (p phases) since(prev phases) string {
	var parts []string
	for _, name := range phaseNames {
		ds, dn := p[name][0]-prev[name][0], p[name][1]-prev[name][1]
		if dn > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f ms (%.0f)", name, 1000*ds/dn, dn))
		}
	}
	return strings.Join(parts, ", ")
}

// searchWindow finds the closed loop's window with the highest committed
// rate: it tries 1000, 2000, 4000 and 8000 transactions in flight, each
// measured for 5 s after 2 s to settle, keeps the best (the smaller of two
// within 5% of each other, for its lower latency), and leaves the loop
// there.
func searchWindow(ctx context.Context, t *tracker, win *window) (int, error) {
	const settle, step = 2 * time.Second, 5 * time.Second
	best, bestTPS := 0, 0.0
	var steps []string
	for _, w := range []int{1000, 2000, 4000, 8000} {
		win.resize(ctx, w, 500*time.Millisecond)
		if err := sleep(ctx, settle); err != nil {
			return 0, err
		}
		from := time.Now()
		if err := sleep(ctx, step); err != nil {
			return 0, err
		}
		tps := t.result(from, time.Now()).tps
		steps = append(steps, fmt.Sprintf("%d: %.0f/s", w, tps))
		if tps > bestTPS*1.05 {
			best, bestTPS = w, tps
		}
	}
	logf("window search (transactions in flight: committed rate): %s; using %d", strings.Join(steps, ", "), best)
	win.resize(ctx, best, 0)
	return best, nil
}

// drain waits until every transaction sent in [from, to) is committed or
// refused, and gives up on the rest of them after 30 s.
func drain(ctx context.Context, t *tracker, from, to time.Time) {
	deadline := time.Now().Add(30 * time.Second)
	for t.pendingSentIn(from, to) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	t.expireSentIn(from, to)
}

// waitIdle waits until every node's mempool is empty.
func waitIdle(ctx context.Context, c *clustertest.Cluster, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		busy := 0
		for i := range c.Nodes {
			st, err := c.Status(ctx, i)
			if err != nil {
				return err
			}
			busy += st.Mempool.Transactions
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d transactions still pending in the mempools after %v", busy, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (t *tracker) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	sent := 0
	for _, at := range t.sentAt {
		if !at.IsZero() {
			sent++
		}
	}
	s := fmt.Sprintf("sent %d: accepted %d, duplicate %d, busy %d, rejected %d, unanswered %d; sent in the measurement but not committed within 30 s of its end %d; %d signed but too old to send",
		sent, t.accepted, t.duplicate, t.busy, t.rejected, sent-t.accepted-t.duplicate-t.busy-t.rejected, t.expired, t.stale)
	for r, n := range t.reasons {
		s += fmt.Sprintf(", %v: %d", r, n)
	}
	return s
}

// verifyRate measures SM2 signature verifications per second on workers
// goroutines, each verifying its own signatures of one key (the kiosk
// load's shape: one account's transactions).
func verifyRate(d time.Duration, workers int) float64 {
	key, err := gm.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	pub := key.PublicKey()
	const nmsg = 64
	msgs := make([][]byte, nmsg)
	sigs := make([]gm.Signature, nmsg)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "hallmark/tx/v1\x00 benchmark message %d", i)
		if sigs[i], err = key.Sign(context.Background(), msgs[i]); err != nil {
			panic(err)
		}
	}
	var total int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			n := int64(0)
			for i := w; time.Now().Before(deadline); i++ {
				if !pub.Verify(msgs[i%nmsg], sigs[i%nmsg]) {
					panic("benchcluster: a good signature did not verify")
				}
				n++
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuTimes are CPU seconds used so far: per node, by this process, and by
// the whole machine (every process, ours or not).
type cpuTimes struct {
	at      time.Time
	nodes   []float64
	self    float64
	machine float64
}

func cpuSnapshot(c *clustertest.Cluster) cpuTimes {
	s := cpuTimes{at: time.Now(), self: procCPU(os.Getpid()), machine: machineCPU()}
	for i := range c.Nodes {
		s.nodes = append(s.nodes, procCPU(c.Pid(i)))
	}
	return s
}

func (s cpuTimes) since(p cpuTimes) string {
	el := s.at.Sub(p.at).Seconds()
	var parts []string
	sum := 0.0
	for i := range s.nodes {
		v := (s.nodes[i] - p.nodes[i]) / el
		sum += v
		parts = append(parts, fmt.Sprintf("node%d %.2f", i, v))
	}
	return fmt.Sprintf("%s cores (nodes together %.2f); benchmark process %.2f; whole machine %.2f of %d",
		strings.Join(parts, ", "), sum, (s.self-p.self)/el, (s.machine-p.machine)/el, runtime.NumCPU())
}

// procCPU returns a process's user+system CPU seconds.
func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// machineCPU returns the CPU seconds all processes used (user, nice,
// system, irq, softirq, steal).
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	sum := 0.0
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(f[i], 64)
		sum += v
	}
	return sum / 100
}

// profiler collects CPU profiles of the nodes and of this process.
type profiler struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func startProfiles(ctx context.Context, c *clustertest.Cluster, dir, phase string, d time.Duration) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &profiler{}
	secs := int(d.Seconds())
	for i, n := range c.Nodes {
		p.wg.Go(func() {
			if err := fetchProfile(ctx, c.HTTP(), "http://"+n.API+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), filepath.Join(dir, fmt.Sprintf("node%d.%s.pprof", i, phase))); err != nil {
				p.mu.Lock()
				p.errs = append(p.errs, fmt.Errorf("%s: %w", n.Name, err))
				p.mu.Unlock()
			}
		})
	}
	f, err := os.Create(filepath.Join(dir, "benchcluster."+phase+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	p.wg.Go(func() {
		_ = sleep(ctx, d)
		pprof.StopCPUProfile()
		f.Close()
	})
	return p, nil
}

func fetchProfile(ctx context.Context, hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	client := *hc
	client.Timeout = 0 // the request lasts the profile's duration
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("HTTP %d (is the node's api.pprof on?)", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// saveMetrics saves every node's /metrics as DIR/nodeN.<phase>.metrics
// and its heap profile (live objects at the last GC, and allocations since
// the start) as DIR/nodeN.<phase>.heap.pprof.
func saveMetrics(ctx context.Context, c *clustertest.Cluster, dir, phase string) {
	for i, n := range c.Nodes {
		path := filepath.Join(dir, fmt.Sprintf("node%d.%s.metrics", i, phase))
		if err := fetchProfile(ctx, c.HTTP(), "http://"+n.API+"/metrics", path); err != nil {
			logf("metrics: %v", err)
		}
		path = filepath.Join(dir, fmt.Sprintf("node%d.%s.heap.pprof", i, phase))
		if err := fetchProfile(ctx, c.HTTP(), "http://"+n.API+"/debug/pprof/heap", path); err != nil {
			logf("heap profile: %v", err)
		}
	}
}

func (p *profiler) wait() error {
	p.wg.Wait()
	return errors.Join(p.errs...)
}
