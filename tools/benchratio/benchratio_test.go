package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"testing"
)

// The testdata files are real `go test -bench` output, captured:
//   - gm.txt: this module's gm benchmarks (GOMAXPROCS 2);
//   - multi.txt: two packages, -count 2, sub-benchmarks whose names end in
//     "-1" and "-4", benchmarks reporting their own "speedup-x" and
//     "repair-ratio", a benchmark that logs, and one that fails;
//   - procs1.txt: GOMAXPROCS=1, where go test adds no "-N" suffix.

func parseFile(t *testing.T, name string, procs int) *Output {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(bytes.NewReader(raw), procs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustFind(t *testing.T, out *Output, ref string) *Result {
	t.Helper()
	r, err := find(out, ref)
	if err != nil || r == nil {
		t.Fatalf("find(%q) = %v, %v", ref, r, err)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestParseGM(t *testing.T) {
	out := parseFile(t, "gm.txt", 2)
	if len(out.Failures) != 0 {
		t.Fatalf("failures in a passing run: %q", out.Failures)
	}
	if len(out.Results) != 12 {
		t.Fatalf("got %d results, want 12", len(out.Results))
	}
	v := mustFind(t, out, "gm.SM2Verify")
	if v.Pkg != "hallmark/gm" || v.Name != "SM2Verify" || v.Iters != 23016 {
		t.Fatalf("SM2Verify parsed as %+v", v)
	}
	want := map[string]float64{"ns/op": 53625, "B/op": 1184, "allocs/op": 21}
	for unit, x := range want {
		if !near(v.Metrics[unit], x) {
			t.Errorf("SM2Verify %s = %v, want %v", unit, v.Metrics[unit], x)
		}
	}
	sm3 := mustFind(t, out, "hallmark/gm.SM3_1KiB")
	if !near(sm3.Metrics["MB/s"], 287.51) || !near(sm3.Metrics["ns/op"], 3562) {
		t.Errorf("SM3_1KiB parsed as %v", sm3.Metrics)
	}
	if !near(mustFind(t, out, "gm.SHA256_1KiB").Metrics["ns/op"], 846.7) {
		t.Error("fractional ns/op misparsed")
	}
	// A reference must match a whole path element.
	if r, err := find(out, "m.SM2Verify"); r != nil || err != nil {
		t.Errorf("m.SM2Verify matched %v, %v", r, err)
	}
}

func TestParseMultiPackage(t *testing.T) {
	out := parseFile(t, "multi.txt", 2)

	// -count 2: each benchmark is one result, its faster run (the second
	// here), with all of that run's figures.
	cp := mustFind(t, out, "a.Copy")
	if cp.Runs != 2 || cp.Metrics["ns/op"] != 92.58 || cp.Metrics["MB/s"] != 44245.21 || cp.Iters != 2000 {
		t.Errorf("a.Copy = %+v", cp)
	}
	if fast := mustFind(t, out, "a.Fast"); fast.Metrics["ns/op"] != 0.5155 {
		t.Errorf("a.Fast kept %v, want the faster first run", fast.Metrics["ns/op"])
	}
	// Only the -2 procs suffix is stripped; "-1" and "-4" belong to the names.
	for _, ref := range []string{"b.Encode/shards-1", "b.Encode/shards-4"} {
		r := mustFind(t, out, ref)
		if r.Metrics["speedup-x"] != 1.5 {
			t.Errorf("%s speedup-x = %v", ref, r.Metrics["speedup-x"])
		}
	}
	if r := mustFind(t, out, "b.Scrub"); r.Runs != 2 || r.Metrics["repair-ratio"] != 0.95 {
		t.Errorf("b.Scrub = %+v", r)
	}
	// "Fast" exists in both packages: a bare name is ambiguous.
	if _, err := find(out, "Fast"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("bare Fast: err = %v, want ambiguous", err)
	}
	mustFind(t, out, "a.Fast")
	mustFind(t, out, "example.com/bcap/b.Fast")

	// The failing benchmark and package are reported.
	joined := strings.Join(out.Failures, "\n")
	for _, want := range []string{"--- FAIL: BenchmarkBroken", "FAIL\texample.com/bcap/b"} {
		if !strings.Contains(joined, want) {
			t.Errorf("failures %q lack %q", out.Failures, want)
		}
	}
	if _, err := find(out, "b.Broken"); err != nil {
		t.Fatal(err)
	} else if r, _ := find(out, "b.Broken"); r != nil {
		t.Error("a failed benchmark produced a result")
	}
}

func TestParseProcsOne(t *testing.T) {
	raw, err := os.ReadFile("testdata/procs1.txt")
	if err != nil {
		t.Fatal(err)
	}
	if p := procsFromOutput(raw); p != 1 {
		t.Fatalf("procsFromOutput = %d, want 1", p)
	}
	out := parseFile(t, "procs1.txt", 1)
	mustFind(t, out, "b.Encode/shards-1")
	mustFind(t, out, "b.Encode/shards-4")
	mustFind(t, out, "b.Scrub")

	for name, want := range map[string]int{"gm.txt": 2, "multi.txt": 2} {
		raw, _ := os.ReadFile("testdata/" + name)
		if p := procsFromOutput(raw); p != want {
			t.Errorf("procsFromOutput(%s) = %d, want %d", name, p, want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, line := range []string{
		"BenchmarkX-2   100   12 ns/op  5",      // value without a unit
		"BenchmarkX-2   100   abc ns/op",        // value not a number
		"BenchmarkX-2   100   12 ns/op  x MB/s", // second value not a number
	} {
		if _, err := Parse(strings.NewReader("pkg: p\n"+line+"\n"), 2); err == nil {
			t.Errorf("Parse accepted %q", line)
		}
	}
	// Lines that merely start with "Benchmark" are not results.
	out, err := Parse(strings.NewReader("pkg: p\nBenchmarkX-2\nBenchmarking is fun\nBenchmarkY-2 --- FAIL\n"), 2)
	if err != nil || len(out.Results) != 0 {
		t.Fatalf("Parse = %+v, %v", out, err)
	}
}

func TestReportGM(t *testing.T) {
	out := parseFile(t, "gm.txt", 2)
	var buf bytes.Buffer
	missed := Report(&buf, out, ratios)
	text := buf.String()
	if missed != 0 {
		t.Errorf("missed = %d\n%s", missed, text)
	}
	// 60161 / 53625 = 1.12; 1687065 / 53625 = 31.5; 287.51 / 1209.44 = 0.238.
	for _, want := range []string{
		"sm2_verify/p256_verify                 = 1.12   (target >= 0.9) ok  [ops/s]",
		"emmansun/tjfoc verify                  = 31.5",
		"emmansun/tjfoc sign                    = 11.5",
		"sm3/sha256 (1 KiB)                     = 0.238   [MB/s]",
		"sm2_verify all cores/one core          = 2.01",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "MISS") {
		t.Errorf("report says MISS:\n%s", text)
	}
}

func TestReportTargetsAndSelfRatios(t *testing.T) {
	out := parseFile(t, "multi.txt", 2)
	table := []Ratio{
		{"copy/fast", "a.Copy", "a.Fast", 1, true},                 // fast is far faster: MISS
		{"fast/copy", "a.Fast", "a.Copy", 0, true},                 // no target
		{"fast/copy capped", "a.Fast", "a.Copy", 10, false},        // lower is better: MISS
		{"scrub/fast", "b.Scrub", "b.Fast", 0.1, true},             // ok
		{"half missing", "a.Copy", "c.Nothing", 1, true},           // n/a
		{"filtered out", "c.Nothing", "d.Nothing", 1, true},        // not printed
		{"ambiguous", "Fast", "a.Copy", 1, true},                   // n/a with reason
		{"sub-benchmarks", "b.Encode/shards-4", "b.Fast", 0, true}, // names with -N
	}
	var buf bytes.Buffer
	missed := Report(&buf, out, table)
	text := buf.String()
	if missed != 2 {
		t.Errorf("missed = %d, want 2\n%s", missed, text)
	}
	for _, want := range []string{
		"copy/fast", "(target >= 1) MISS",
		"(target <= 10) MISS",
		"(target >= 0.1) ok",
		"half missing                           = n/a (c.Nothing did not run)",
		"ambiguous                              = n/a (Fast is ambiguous",
		"sub-benchmarks                         = ",
		"example.com/bcap/b.Encode/shards-1 speedup-x = 1.5",
		"example.com/bcap/b.Scrub repair-ratio  = 0.95",
		"MISS: 2 ratio(s) missed their target",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "filtered out") {
		t.Errorf("a ratio with neither benchmark run was printed:\n%s", text)
	}
}

func TestRunParseMode(t *testing.T) {
	ctx := context.Background()
	noEnv := func(string) string { return "" }

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"-parse", "testdata/gm.txt"}, &stdout, &stderr, noEnv); code != exitOK {
		t.Fatalf("gm.txt: exit %d, stderr %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "goos: linux") || !strings.Contains(stdout.String(), "== ratios") {
		t.Errorf("raw output or ratio section missing:\n%s", stdout.String())
	}

	// A failed benchmark fails the command, after the report.
	stdout.Reset()
	if code := run(ctx, []string{"-parse", "testdata/multi.txt"}, &stdout, &stderr, noEnv); code != exitFailed {
		t.Fatalf("multi.txt: exit %d, want %d", code, exitFailed)
	}
	if !strings.Contains(stdout.String(), "FAILED: ") || !strings.Contains(stdout.String(), "repair-ratio") {
		t.Errorf("failure summary or self ratio missing:\n%s", stdout.String())
	}

	// Usage errors.
	for _, args := range [][]string{{"-count", "0"}, {"-rounds", "0"}, {"-nosuchflag"}, {"-parse", "testdata/none.txt"}} {
		if code := run(ctx, args, &stdout, &stderr, noEnv); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code := run(ctx, nil, &stdout, &stderr, func(k string) string {
		if k == "BENCHCOUNT" {
			return "many"
		}
		return ""
	}); code != exitUsage {
		t.Errorf("bad BENCHCOUNT: exit %d", code)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"BENCH": "SM2", "BENCHTIME": "200ms", "BENCHCOUNT": "3", "BENCHROUNDS": "2", "BENCHPKG": "/gm$"}
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"./gm/"}, &stderr, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.bench != "SM2" || cfg.benchtime != "200ms" || cfg.count != 3 || cfg.rounds != 2 || cfg.pkgFilter != "/gm$" ||
		len(cfg.patterns) != 1 || cfg.patterns[0] != "./gm/" {
		t.Fatalf("config from environment: %+v", cfg)
	}
	// Flags override the environment.
	cfg, err = parseFlags([]string{"-benchtime", "1x", "-bench", "."}, &stderr, func(k string) string { return env[k] })
	if err != nil || cfg.benchtime != "1x" || cfg.bench != "." || cfg.patterns[0] != defaultPkgs {
		t.Fatalf("flags over environment: %+v, %v", cfg, err)
	}
}
