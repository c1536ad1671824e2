// Command benchratio runs the module's benchmarks in one `go test` run and
// prints the ratios that Hallmark's speed targets are stated in.
//
// Usage:
//
//	go run ./tools/benchratio [flags] [packages]
//
// It runs `go test -run '^$' -bench <regexp> -benchmem` once over the
// packages (default ./...), so every figure comes from the same machine in
// the same state, echoes the raw output, then prints the ratios declared in
// ratios.go and any ratio a benchmark reported itself (b.ReportMetric with
// a unit ending in "ratio" or "x"). A missed target prints MISS but does
// not fail the command; a failed benchmark, test binary or build does.
//
// On a machine shared with other work, -rounds n repeats the whole run n
// times and keeps each benchmark's fastest run: unlike -count, whose
// repetitions of one benchmark follow each other, rounds spread every
// benchmark over the same stretch of time, so a burst of outside load
// does not land on one side of a ratio only.
//
// Flags (each has an environment default, so `make bench BENCHTIME=3s`
// works):
//
//	-bench regexp     which benchmarks ($BENCH, default ".")
//	-benchtime d      passed to go test ($BENCHTIME, default go test's 1s)
//	-count n          go test -count; the fastest run is kept ($BENCHCOUNT, default 1)
//	-rounds n         whole runs, one after another; the fastest run of
//	                  each benchmark is kept ($BENCHROUNDS, default 1)
//	-pkg regexp       keep only packages whose import path matches ($BENCHPKG)
//	-timeout d        go test timeout (default 30m)
//	-parse file       do not run anything: read saved `go test -bench`
//	                  output from file ("-" for stdin) and report on it
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // a benchmark, test binary or build failed
	exitUsage   = 2 // bad flags, or nothing to run
	defaultPkgs = "./..."
)

type config struct {
	bench, benchtime, pkgFilter, timeout, parseFile string
	count, rounds                                   int
	patterns                                        []string
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("benchratio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	count, err := strconv.Atoi(envOr("BENCHCOUNT", "1"))
	if err != nil {
		return nil, fmt.Errorf("BENCHCOUNT: %w", err)
	}
	rounds, err := strconv.Atoi(envOr("BENCHROUNDS", "1"))
	if err != nil {
		return nil, fmt.Errorf("BENCHROUNDS: %w", err)
	}
	fs.StringVar(&cfg.bench, "bench", envOr("BENCH", "."), "benchmark regexp passed to go test -bench")
	fs.StringVar(&cfg.benchtime, "benchtime", getenv("BENCHTIME"), "passed to go test -benchtime (empty: go test's default)")
	fs.IntVar(&cfg.count, "count", count, "go test -count; each benchmark's fastest run is kept")
	fs.IntVar(&cfg.rounds, "rounds", rounds, "whole go test runs, one after another; each benchmark's fastest run is kept")
	fs.StringVar(&cfg.pkgFilter, "pkg", getenv("BENCHPKG"), "keep only packages whose import path matches this regexp")
	fs.StringVar(&cfg.timeout, "timeout", "30m", "go test -timeout")
	fs.StringVar(&cfg.parseFile, "parse", "", "report on saved go test -bench output instead of running (\"-\" for stdin)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if cfg.count < 1 || cfg.rounds < 1 {
		return nil, fmt.Errorf("-count and -rounds must be at least 1, got %d and %d", cfg.count, cfg.rounds)
	}
	cfg.patterns = fs.Args()
	if len(cfg.patterns) == 0 {
		cfg.patterns = []string{defaultPkgs}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, err := parseFlags(args, stderr, getenv)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "benchratio:", err)
		}
		return exitUsage
	}
	procs := runtime.GOMAXPROCS(0) // the child inherits the same environment

	var raw []byte
	failed := false
	if cfg.parseFile != "" {
		if raw, err = readInput(cfg.parseFile); err != nil {
			fmt.Fprintln(stderr, "benchratio:", err)
			return exitUsage
		}
		stdout.Write(raw)
		procs = procsFromOutput(raw)
	} else {
		pkgs, err := selectPackages(ctx, cfg, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "benchratio:", err)
			return exitUsage
		}
		for round := 1; round <= cfg.rounds; round++ {
			if cfg.rounds > 1 {
				fmt.Fprintf(stderr, "benchratio: round %d of %d\n", round, cfg.rounds)
			}
			chunk, err := runBenchmarks(ctx, cfg, pkgs, stdout, stderr)
			raw = append(raw, chunk...)
			if err != nil {
				fmt.Fprintln(stderr, "benchratio:", err)
				failed = true
				break
			}
		}
	}

	out, err := Parse(bytes.NewReader(raw), procs)
	if err != nil {
		fmt.Fprintln(stderr, "benchratio:", err)
		return exitFailed
	}
	Report(stdout, out, ratios)
	if len(out.Failures) > 0 {
		fmt.Fprintf(stdout, "FAILED: %d failure line(s) in the run:\n", len(out.Failures))
		for _, f := range out.Failures {
			fmt.Fprintln(stdout, "  "+f)
		}
		failed = true
	}
	if len(out.Results) == 0 && !failed {
		fmt.Fprintln(stderr, "benchratio: no benchmark results (check -bench and the package filter)")
		return exitUsage
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// procsFromOutput guesses GOMAXPROCS from saved output: go test appends
// "-<procs>" to every benchmark name when procs > 1, so a suffix shared by
// every result line is taken as procs; otherwise names carry none (procs 1).
func procsFromOutput(raw []byte) int {
	line := regexp.MustCompile(`(?m)^Benchmark(\S+)\s+\d+\s`)
	suffix := regexp.MustCompile(`-(\d+)$`)
	shared := ""
	for i, m := range line.FindAllSubmatch(raw, -1) {
		s := suffix.FindSubmatch(m[1])
		if s == nil || (i > 0 && string(s[1]) != shared) {
			return 1
		}
		shared = string(s[1])
	}
	n, err := strconv.Atoi(shared)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// selectPackages applies the -pkg filter to the package patterns.
func selectPackages(ctx context.Context, cfg *config, stderr io.Writer) ([]string, error) {
	if cfg.pkgFilter == "" {
		return cfg.patterns, nil
	}
	re, err := regexp.Compile(cfg.pkgFilter)
	if err != nil {
		return nil, fmt.Errorf("-pkg: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, cfg.patterns...)...)
	cmd.Stderr = stderr
	listed, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w", strings.Join(cfg.patterns, " "), err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(listed)) {
		if re.MatchString(p) {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("no package in %s matches -pkg %q", strings.Join(cfg.patterns, " "), cfg.pkgFilter)
	}
	return pkgs, nil
}

// runBenchmarks runs go test once, echoing its output as it comes, and
// returns that output.
func runBenchmarks(ctx context.Context, cfg *config, pkgs []string, stdout, stderr io.Writer) ([]byte, error) {
	args := []string{"test", "-run", "^$", "-bench", cfg.bench, "-benchmem",
		"-count", strconv.Itoa(cfg.count), "-timeout", cfg.timeout}
	if cfg.benchtime != "" {
		args = append(args, "-benchtime", cfg.benchtime)
	}
	args = append(args, pkgs...)
	fmt.Fprintf(stderr, "benchratio: go %s\n", strings.Join(args, " "))

	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout = io.MultiWriter(stdout, &buf)
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return buf.Bytes(), fmt.Errorf("go test: %w", err)
	}
	return buf.Bytes(), nil
}
