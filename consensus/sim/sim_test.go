package sim

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Uint64("seed", 1, "seed for TestSeed")
	flagN     = flag.Int("nodes", 4, "validators for TestSeed")
	flagTrace = flag.Bool("simtrace", false, "TestSeed prints every event")
	flagSeeds = flag.Int("seeds", 16, "seeds TestSweep runs for each of n = 4 and n = 7")
	flagFirst = flag.Uint64("first", 1, "first seed TestSweep runs")
	flagSizes = flag.String("sizes", "4,7", "validator counts TestSweep runs, comma-separated")
)

// TestSeed replays one seed: go test ./consensus/sim -run TestSeed -seed=N -nodes=7 -v
func TestSeed(t *testing.T) {
	cfg := ConfigFor(*flagSeed, *flagN)
	t.Log(cfg)
	opts := Options{}
	if *flagTrace {
		opts.Trace = os.Stdout
	}
	res, err := Run(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("heights %v, epoch %d, %d events, %d messages, %d virtual ms, liveness after %d ms",
		res.Heights, res.Epoch, res.Events, res.Messages, res.VirtualMs, res.LivenessMs)
}

// TestSweep runs many seeds for each validator count, on all cores:
// go test ./consensus/sim -run TestSweep -seeds=500 -sizes=4,7 -v
func TestSweep(t *testing.T) {
	type job struct {
		seed uint64
		n    int
	}
	var sizes []int
	for _, f := range strings.Split(*flagSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("bad -sizes %q", *flagSizes)
		}
		sizes = append(sizes, n)
	}
	var jobs []job
	for i := 0; i < *flagSeeds; i++ {
		for _, n := range sizes {
			jobs = append(jobs, job{*flagFirst + uint64(i), n})
		}
	}
	start := time.Now()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		fails  []string
		blocks atomic.Uint64
		wg     sync.WaitGroup
	)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				res, err := Run(ConfigFor(jobs[i].seed, jobs[i].n), Options{})
				if err != nil {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("seed %d n %d: %v", jobs[i].seed, jobs[i].n, err))
					mu.Unlock()
					continue
				}
				blocks.Add(res.MaxHeight)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d seeds in %v: %.1f seeds/s, %d blocks committed", len(jobs), el.Round(time.Millisecond),
		float64(len(jobs))/el.Seconds(), blocks.Load())
	for _, f := range fails {
		t.Error(f)
	}
}

// TestRegressions replays every seed that once failed.
func TestRegressions(t *testing.T) {
	f, err := os.Open("testdata/regressions.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	count := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			t.Fatalf("bad regression line %q", line)
		}
		seed, err1 := strconv.ParseUint(fields[0], 10, 64)
		n, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad regression line %q", line)
		}
		count++
		if _, err := Run(ConfigFor(seed, n), Options{}); err != nil {
			t.Errorf("regression seed %d n %d (%s): %v", seed, n, strings.Join(fields[2:], " "), err)
		}
	}
	if count == 0 {
		t.Fatal("no regression seeds")
	}
}

// TestSizes runs a few seeds for validator counts other than 4 and 7, from
// a single development node up to sixteen.
func TestSizes(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 10, 16} {
		for seed := uint64(1); seed <= 3; seed++ {
			res, err := Run(ConfigFor(seed, n), Options{})
			if err != nil {
				t.Errorf("n=%d: %v", n, err)
				continue
			}
			if res.MaxHeight == 0 {
				t.Errorf("n=%d seed %d committed nothing", n, seed)
			}
		}
	}
}
