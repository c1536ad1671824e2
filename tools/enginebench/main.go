// Command enginebench compares storage engines on hallmark's commit
// pattern: blocks of record.put transactions, each block durable before its
// commit returns, on a store pre-filled with transactions. It reports per
// engine and block size the whole process's CPU (user + system, background
// work included) and wall time per transaction, the bytes written to disk
// and fsyncs, and for the pre-filled store its open time, the CPU of a
// random transaction lookup and its size on disk. See README.md.
//
// It is its own module so that hallmark does not depend on the engines it
// compares against.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type config struct {
	engines      []string
	blockSizes   []int
	prefill      int
	prefillBlock int
	measureTxs   int
	minBlocks    int
	lookups      int
	subjects     int
	senders      int
	seenWindow   int
	bodyWindow   uint64
	seed         uint64
	dir          string
	keep         bool
	checks       bool
	dropCache    bool
	cpuProfile   string
	verbose      bool
	platWrites   int
	platSyncs    int
}

func main() {
	var c config
	var engines, blocks string
	flag.StringVar(&engines, "engines", "bbolt,pebble,log,bbolt-seq", "engines to compare, comma-separated (have "+strings.Join(specNames(), ", ")+")")
	flag.StringVar(&blocks, "blocks", "80,160,320,1000", "block sizes in transactions, comma-separated, measured in this order on one store")
	flag.IntVar(&c.prefill, "prefill", 200_000, "transactions committed before measuring")
	flag.IntVar(&c.prefillBlock, "prefill-block", 1000, "transactions per block while pre-filling")
	flag.IntVar(&c.measureTxs, "txs", 40_000, "transactions committed per measured block size")
	flag.IntVar(&c.minBlocks, "min-blocks", 20, "at least this many blocks per measured block size")
	flag.IntVar(&c.lookups, "lookups", 20_000, "random transaction-id lookups on the pre-filled store")
	flag.IntVar(&c.subjects, "subjects", 10_000, "distinct record subjects (s/<subject><id> keys)")
	flag.IntVar(&c.senders, "senders", 8, "distinct sending accounts (hot a/<address> keys)")
	flag.IntVar(&c.seenWindow, "seen-window", 150_000, "replay markers x/<time><id> kept before the oldest are deleted (5 min at 500 tx/s)")
	flag.Uint64Var(&c.bodyWindow, "body-window", 1000, "blocks that keep their full body (storage.DefaultWindow)")
	flag.Uint64Var(&c.seed, "seed", 1, "workload seed")
	flag.StringVar(&c.dir, "dir", "", "directory for the stores (default: the system temp dir); must be on the disk under test")
	flag.BoolVar(&c.keep, "keep", false, "keep the stores after the run")
	flag.BoolVar(&c.dropCache, "drop-cache", false, "after the prefill, drop the store's files from the page cache and read them back 4 KiB at a time without readahead before reopening: the cache is warm but in 4 KiB folios instead of the large ones the writes made")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of each measured phase (commits until settled) to DIR/<engine>-<block>.pprof")
	flag.BoolVar(&c.checks, "checks", true, "read the block id and every tx id before writing, as storage's CommitBlocks does")
	flag.BoolVar(&c.verbose, "v", false, "print pebble's LSM metrics after each engine")
	flag.IntVar(&c.platWrites, "platform-writes", 5000, "4 KiB pwrites timed for the platform figures")
	flag.IntVar(&c.platSyncs, "platform-syncs", 300, "pwrite+fdatasync rounds timed for the platform figures")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	if c.engines, err = parseEngines(engines); err == nil {
		c.blockSizes, err = parseSizes(blocks)
	}
	if err == nil {
		err = c.check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginebench:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, log, os.Stdout, c); err != nil {
		log.Error("enginebench failed", "err", err)
		stop()
		os.Exit(1)
	}
}

func parseEngines(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if _, err := lookupSpec(name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, errors.New("no engines given")
	}
	return out, nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 100_000 {
			return nil, fmt.Errorf("block size %q: want an integer from 1 to 100000", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no block sizes given")
	}
	return out, nil
}

func (c *config) check() error {
	switch {
	case c.prefill < 0 || c.prefillBlock < 1:
		return errors.New("-prefill must be ≥ 0 and -prefill-block ≥ 1")
	case c.measureTxs < 1 || c.minBlocks < 1:
		return errors.New("-txs and -min-blocks must be ≥ 1")
	case c.lookups < 0:
		return errors.New("-lookups must be ≥ 0")
	case c.subjects < 1 || c.senders < 1:
		return errors.New("-subjects and -senders must be ≥ 1")
	case c.seenWindow < 1 || c.bodyWindow < 1:
		return errors.New("-seen-window and -body-window must be ≥ 1")
	case c.platWrites < 1 || c.platSyncs < 1:
		return errors.New("-platform-writes and -platform-syncs must be ≥ 1")
	}
	return nil
}

// phase is one engine's figures at one block size.
type phase struct {
	engine      string
	blockTxs    int
	blocks      int
	txs         int
	cpu         time.Duration // whole process, until background work settled
	wall        time.Duration // the commit loop
	wchar       int64
	writeBytes  int64
	writeCalls  int64
	syncs       int64
	pages       int64 // -1 if not bbolt
	storedBytes int64 // keys + values handed to the engine
}

func (p phase) perTx(v float64) float64    { return v / float64(p.txs) }
func (p phase) perBlock(v float64) float64 { return v / float64(p.blocks) }
func (p phase) cpuPerTx() float64          { return p.perTx(float64(p.cpu.Nanoseconds()) / 1e3) }

// storeFigures describe the pre-filled store.
type storeFigures struct {
	engine    string
	fillWall  time.Duration
	diskBytes int64
	openWall  time.Duration
	openCPU   time.Duration
	lookups   int
	lookupCPU time.Duration // per lookup
	lookupW   time.Duration // per lookup
	rssAnon   int64         // anonymous resident memory after the run (heap, caches, memtables)
	rssFile   int64         // file-backed resident memory after the run (bbolt's mmap)
}

func run(ctx context.Context, log *slog.Logger, out io.Writer, c config) error {
	parent := c.dir
	if parent == "" {
		parent = os.TempDir()
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	fmt.Fprintf(out, "enginebench: %s, GOMAXPROCS %d, stores under %s\n", runtime.Version(), runtime.GOMAXPROCS(0), parent)
	if c.dropCache {
		fmt.Fprintln(out, "page cache of each store dropped and re-read in 4 KiB folios after its prefill (-drop-cache)")
	}
	fmt.Fprintf(out, "workload: prefill %d tx in blocks of %d; measured %d tx (≥ %d blocks) per block size %v; %d subjects, %d senders, replay window %d tx, body window %d blocks, duplicate checks %v\n",
		c.prefill, c.prefillBlock, c.measureTxs, c.minBlocks, c.blockSizes, c.subjects, c.senders, c.seenWindow, c.bodyWindow, c.checks)

	var plat []platform
	for _, fill := range []int{4 << 10, 1 << 20} {
		p, err := measurePlatform(parent, fill, c.platWrites, c.platSyncs)
		if err != nil {
			return fmt.Errorf("platform figures: %w", err)
		}
		fmt.Fprintf(out, "platform (file filled %d KiB at a time): 4 KiB pwrite %.1f µs CPU; fdatasync after one dirty page %.1f µs CPU, %.1f µs wall\n",
			fill>>10, us(p.pwriteCPU), us(p.fdatasyncCPU), us(p.fdatasyncW))
		plat = append(plat, p)
	}

	if c.cpuProfile != "" {
		if err := os.MkdirAll(c.cpuProfile, 0o755); err != nil {
			return err
		}
	}

	var phases []phase
	var stores []storeFigures
	for _, name := range c.engines {
		if err := ctx.Err(); err != nil {
			return err
		}
		ps, sf, err := runEngine(ctx, log, c, name, parent)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		phases = append(phases, ps...)
		stores = append(stores, sf)
	}
	report(out, plat, phases, stores)
	return nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func runEngine(ctx context.Context, log *slog.Logger, c config, name, parent string) ([]phase, storeFigures, error) {
	spec, _ := lookupSpec(name)
	sf := storeFigures{engine: name}
	dir, err := os.MkdirTemp(parent, "enginebench-"+name+"-")
	if err != nil {
		return nil, sf, err
	}
	if !c.keep {
		defer os.RemoveAll(dir)
	}
	log.Info("engine", "name", name, "what", spec.desc, "dir", dir)
	e, err := spec.open(dir)
	if err != nil {
		return nil, sf, err
	}
	defer func() {
		if e != nil {
			e.close()
		}
	}()
	w := newWorkload(c.seed, c.subjects, c.senders, c.seenWindow, c.bodyWindow)

	// Pre-fill, keeping a sample of keys to look up afterwards.
	pick := rand.New(rand.NewPCG(c.seed, 2))
	var sample [][]byte
	t0 := time.Now()
	lastLog := t0
	for done := 0; done < c.prefill; {
		if err := ctx.Err(); err != nil {
			return nil, sf, err
		}
		n := min(c.prefillBlock, c.prefill-done)
		b := nextBlock(w, n, c.checks)
		if err := e.commit(b); err != nil {
			return nil, sf, fmt.Errorf("prefill: %w", err)
		}
		for i := range b.txIDs {
			if pick.IntN(c.prefill) < 4*c.lookups {
				sample = append(sample, lookupKey(spec, b, i))
			}
		}
		done += n
		if time.Since(lastLog) > 5*time.Second {
			log.Info("prefill", "engine", name, "txs", done, "of", c.prefill)
			lastLog = time.Now()
		}
	}
	if err := e.settle(); err != nil {
		return nil, sf, err
	}
	sf.fillWall = time.Since(t0)
	if err := e.close(); err != nil {
		e = nil
		return nil, sf, fmt.Errorf("close after prefill: %w", err)
	}
	e = nil
	if sf.diskBytes, err = dirSize(dir); err != nil {
		return nil, sf, err
	}
	if c.dropCache {
		if err := dropCache(dir); err != nil {
			return nil, sf, err
		}
	}

	// Reopen: what a restart costs on the filled store.
	runtime.GC()
	c0, err := cpuTime()
	if err != nil {
		return nil, sf, err
	}
	t0 = time.Now()
	if e, err = spec.open(dir); err != nil {
		return nil, sf, fmt.Errorf("reopen: %w", err)
	}
	sf.openWall = time.Since(t0)
	c1, err := cpuTime()
	if err != nil {
		return nil, sf, err
	}
	sf.openCPU = c1 - c0
	if err := e.settle(); err != nil {
		return nil, sf, err
	}

	if !spec.noIndex && len(sample) > 0 && c.lookups > 0 {
		keys := make([][]byte, c.lookups)
		for i := range keys {
			keys[i] = sample[pick.IntN(len(sample))]
		}
		runtime.GC()
		c0, err := cpuTime()
		if err != nil {
			return nil, sf, err
		}
		t0 := time.Now()
		for _, k := range keys {
			found, err := e.lookup(k)
			if err != nil {
				return nil, sf, fmt.Errorf("lookup: %w", err)
			}
			if !found {
				return nil, sf, fmt.Errorf("lookup: committed key %x not found", k)
			}
		}
		wall := time.Since(t0)
		c1, err := cpuTime()
		if err != nil {
			return nil, sf, err
		}
		sf.lookups = len(keys)
		sf.lookupCPU = (c1 - c0) / time.Duration(len(keys))
		sf.lookupW = wall / time.Duration(len(keys))
	}
	log.Info("filled", "engine", name, "fill", sf.fillWall.Round(time.Millisecond),
		"disk_mb", float64(sf.diskBytes)/(1<<20), "open", sf.openWall.Round(time.Microsecond))

	var phases []phase
	for _, size := range c.blockSizes {
		if err := ctx.Err(); err != nil {
			return nil, sf, err
		}
		p, err := measure(e, w, name, size, c)
		if err != nil {
			return nil, sf, fmt.Errorf("blocks of %d: %w", size, err)
		}
		log.Info("measured", "engine", name, "block", size, "cpu_us_per_tx", fmt.Sprintf("%.1f", p.cpuPerTx()))
		phases = append(phases, p)
	}
	runtime.GC()
	debug.FreeOSMemory()
	if sf.rssAnon, sf.rssFile, err = residentMemory(); err != nil {
		return nil, sf, err
	}
	if pe, ok := e.(*pebbleEngine); ok && c.verbose {
		fmt.Fprintf(os.Stderr, "pebble LSM after the run:\n%s\n", pe.describe())
	}
	return phases, sf, nil
}

// nextBlock returns the workload's next block, without its duplicate
// checks unless checks is set.
func nextBlock(w *workload, n int, checks bool) *block {
	b := w.next(n)
	if !checks {
		b.checks, b.seqChecks = nil, nil
	}
	return b
}

// lookupKey is the index key of transaction i of b as the engine stores it.
func lookupKey(spec engineSpec, b *block, i int) []byte {
	if spec.seqKeys {
		return append(be64(b.height), byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	}
	return b.txIDs[i][:]
}

// measure commits blocks of size transactions and counts what they cost.
// The blocks are generated first so that only the engine's work is in
// the figures; CPU is counted until the engine's background work has
// settled.
func measure(e engine, w *workload, name string, size int, c config) (phase, error) {
	n := max(c.minBlocks, (c.measureTxs+size-1)/size)
	blocks := make([]*block, n)
	p := phase{engine: name, blockTxs: size, blocks: n, txs: n * size}
	for i := range blocks {
		blocks[i] = nextBlock(w, size, c.checks)
		p.storedBytes += int64(blocks[i].bytes())
	}
	if err := e.settle(); err != nil {
		return p, err
	}
	runtime.GC()
	io0, err := readIO()
	if err != nil {
		return p, err
	}
	s0, pg0 := e.syncs(), e.pageWrites()
	c0, err := cpuTime()
	if err != nil {
		return p, err
	}
	var prof *os.File
	if c.cpuProfile != "" {
		if prof, err = os.Create(filepath.Join(c.cpuProfile, fmt.Sprintf("%s-%d.pprof", name, size))); err != nil {
			return p, err
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return p, err
		}
	}
	t0 := time.Now()
	for _, b := range blocks {
		if err := e.commit(b); err != nil {
			return p, err
		}
	}
	p.wall = time.Since(t0)
	if err := e.settle(); err != nil {
		return p, err
	}
	if prof != nil {
		pprof.StopCPUProfile()
	}
	c1, err := cpuTime()
	if err != nil {
		return p, err
	}
	io1, err := readIO()
	if err != nil {
		return p, err
	}
	p.cpu = c1 - c0
	p.wchar = io1.wchar - io0.wchar
	p.writeBytes = io1.writeBytes - io0.writeBytes
	p.writeCalls = io1.writeCalls - io0.writeCalls
	p.syncs = e.syncs() - s0
	p.pages = -1
	if pg0 >= 0 {
		p.pages = e.pageWrites() - pg0
	}
	return p, nil
}

func report(out io.Writer, plat []platform, phases []phase, stores []storeFigures) {
	base := map[int]float64{} // bbolt's CPU per tx by block size
	for _, p := range phases {
		if p.engine == "bbolt" {
			base[p.blockTxs] = p.cpuPerTx()
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Commit cost (CPU = whole process, user+sys, background work until settled):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tblock tx\tblocks\tCPU µs/tx\tvs bbolt\tCPU µs/block\twall µs/tx\twritten B/tx\tstored B/tx\twrite calls/tx\tfsyncs/block\tpages/tx\t")
	for _, p := range phases {
		vs := "-"
		if b, ok := base[p.blockTxs]; ok && b > 0 {
			vs = fmt.Sprintf("%.2f", p.cpuPerTx()/b)
		}
		pages := "-"
		if p.pages >= 0 {
			pages = fmt.Sprintf("%.2f", p.perTx(float64(p.pages)))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%.0f\t%.1f\t%.0f\t%.0f\t%.2f\t%.2f\t%s\t\n",
			p.engine, p.blockTxs, p.blocks, p.cpuPerTx(), vs, p.perBlock(us(p.cpu)),
			p.perTx(us(p.wall)), p.perTx(float64(p.wchar)), p.perTx(float64(p.storedBytes)),
			p.perTx(float64(p.writeCalls)), p.perBlock(float64(p.syncs)), pages)
	}
	tw.Flush()

	fmt.Fprintln(out)
	fmt.Fprintln(out, "Pre-filled store:")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tfill s\ton disk MiB\topen ms\topen CPU ms\tlookup CPU µs\tlookup wall µs\tRSS anon MiB\tRSS file MiB\t")
	for _, s := range stores {
		lc, lw := "-", "-"
		if s.lookups > 0 {
			lc, lw = fmt.Sprintf("%.2f", us(s.lookupCPU)), fmt.Sprintf("%.2f", us(s.lookupW))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t%s\t%.0f\t%.0f\t\n", s.engine, s.fillWall.Seconds(),
			float64(s.diskBytes)/(1<<20), us(s.openWall)/1e3, us(s.openCPU)/1e3, lc, lw,
			float64(s.rssAnon)/(1<<20), float64(s.rssFile)/(1<<20))
	}
	tw.Flush()

	fmt.Fprintln(out)
	for _, p := range plat {
		fmt.Fprintf(out, "PLATFORM fill_kib=%d pwrite4k_cpu_us=%.2f fdatasync_cpu_us=%.2f fdatasync_wall_us=%.2f\n",
			p.fill>>10, us(p.pwriteCPU), us(p.fdatasyncCPU), us(p.fdatasyncW))
	}
	for _, p := range phases {
		pages := "NA"
		if p.pages >= 0 {
			pages = fmt.Sprintf("%.3f", p.perTx(float64(p.pages)))
		}
		fmt.Fprintf(out, "COMMIT engine=%s block_txs=%d blocks=%d cpu_us_per_tx=%.2f cpu_us_per_block=%.1f wall_us_per_tx=%.2f wchar_per_tx=%.1f kernel_write_bytes_per_tx=%.1f stored_bytes_per_tx=%.1f write_calls_per_tx=%.3f fsyncs_per_block=%.3f pages_per_tx=%s\n",
			p.engine, p.blockTxs, p.blocks, p.cpuPerTx(), p.perBlock(us(p.cpu)), p.perTx(us(p.wall)),
			p.perTx(float64(p.wchar)), p.perTx(float64(p.writeBytes)), p.perTx(float64(p.storedBytes)),
			p.perTx(float64(p.writeCalls)), p.perBlock(float64(p.syncs)), pages)
	}
	for _, s := range stores {
		fmt.Fprintf(out, "STORE engine=%s fill_s=%.2f disk_bytes=%d open_ms=%.3f open_cpu_ms=%.3f lookups=%d lookup_cpu_us=%.3f lookup_wall_us=%.3f rss_anon_bytes=%d rss_file_bytes=%d\n",
			s.engine, s.fillWall.Seconds(), s.diskBytes, us(s.openWall)/1e3, us(s.openCPU)/1e3, s.lookups, us(s.lookupCPU), us(s.lookupW),
			s.rssAnon, s.rssFile)
	}
}
