package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one benchmark's figures from `go test -bench` output. When a
// benchmark ran several times (-count, or several rounds), the fastest run
// (lowest ns/op) stands for it: on a shared machine the fastest run is the
// one least disturbed by other load, and all of a run's figures are kept
// together rather than averaged across runs.
type Result struct {
	Pkg     string             // import path, from the "pkg:" line before it
	Name    string             // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	Runs    int                // how many result lines were seen
	Iters   int64              // iterations of the chosen run
	Metrics map[string]float64 // unit → value: "ns/op", "MB/s", "B/op", "allocs/op", custom units
}

// Key names a result as "<import path>.<name>", e.g. "hallmark/gm.SM2Verify".
func (r *Result) Key() string { return r.Pkg + "." + r.Name }

// Output is what one `go test -bench` run reported.
type Output struct {
	Results  []*Result // in the order they first appeared
	Failures []string  // lines that report a failed test, benchmark or build
}

// Parse reads `go test -bench` output. procs is the GOMAXPROCS the run used:
// go test appends "-<procs>" to each name unless procs is 1, so only that
// exact suffix is stripped (a sub-benchmark may end in "-16" of its own).
func Parse(r io.Reader, procs int) (*Output, error) {
	out := &Output{}
	index := map[string]*Result{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
		case isFailure(line):
			out.Failures = append(out.Failures, strings.TrimSpace(line))
		case strings.HasPrefix(line, "Benchmark"):
			res, ok, err := parseResultLine(line, procs)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // a name printed alone before the benchmark's own output
			}
			res.Pkg = pkg
			if prev, seen := index[res.Key()]; seen {
				prev.merge(res)
				continue
			}
			index[res.Key()] = res
			out.Results = append(out.Results, res)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	return out, nil
}

func isFailure(line string) bool {
	t := strings.TrimSpace(line)
	return strings.HasPrefix(t, "--- FAIL") ||
		t == "FAIL" || strings.HasPrefix(t, "FAIL\t") || strings.HasPrefix(t, "FAIL ") ||
		strings.HasPrefix(line, "panic: ") ||
		strings.HasSuffix(t, "[build failed]") || strings.HasSuffix(t, "[setup failed]")
}

// parseResultLine reads "BenchmarkName-2  1000  123 ns/op  45.6 MB/s ...".
// It returns ok=false for a line holding only a name.
func parseResultLine(line string, procs int) (*Result, bool, error) {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return nil, false, nil
	}
	iters, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		// Not a result line (for example "BenchmarkX-2 --- FAIL" or log
		// text that happens to start with "Benchmark").
		return nil, false, nil
	}
	if len(fields)%2 != 0 {
		return nil, false, fmt.Errorf("benchmark line has an unpaired value/unit: %q", line)
	}
	res := &Result{
		Name:    trimName(fields[0], procs),
		Runs:    1,
		Iters:   iters,
		Metrics: map[string]float64{},
	}
	for i := 2; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return nil, false, fmt.Errorf("benchmark %s: value %q for %q: %w", fields[0], fields[i], fields[i+1], err)
		}
		res.Metrics[fields[i+1]] = v
	}
	return res, true, nil
}

func trimName(name string, procs int) string {
	name = strings.TrimPrefix(name, "Benchmark")
	if procs > 1 {
		name = strings.TrimSuffix(name, "-"+strconv.Itoa(procs))
	}
	return name
}

// merge folds another run of the same benchmark into r, keeping the
// faster of the two.
func (r *Result) merge(o *Result) {
	r.Runs++
	if o.Metrics["ns/op"] < r.Metrics["ns/op"] {
		r.Metrics, r.Iters = o.Metrics, o.Iters
	}
}
