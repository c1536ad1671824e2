package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// find resolves a benchmark reference such as "gm.SM2Verify" to a result.
func find(out *Output, ref string) (*Result, error) {
	var hits []*Result
	for _, r := range out.Results {
		if matches(r, ref) {
			hits = append(hits, r)
		}
	}
	switch len(hits) {
	case 0:
		return nil, nil
	case 1:
		return hits[0], nil
	default:
		keys := make([]string, len(hits))
		for i, h := range hits {
			keys[i] = h.Key()
		}
		return nil, fmt.Errorf("%s is ambiguous: %s", ref, strings.Join(keys, ", "))
	}
}

// matches reports whether ref names r: "Name" alone, or "<pkg>.Name" where
// <pkg> is the import path or a trailing part of it cut at a slash.
func matches(r *Result, ref string) bool {
	if ref == r.Name {
		return true
	}
	pkg, ok := strings.CutSuffix(ref, "."+r.Name)
	return ok && (pkg == r.Pkg || strings.HasSuffix(r.Pkg, "/"+pkg))
}

// speedRatio returns speed(num) / speed(den) and the unit it compared.
func speedRatio(num, den *Result) (float64, string, error) {
	if a, ok := num.Metrics["MB/s"]; ok {
		if b, ok := den.Metrics["MB/s"]; ok && a > 0 && b > 0 {
			return a / b, "MB/s", nil
		}
	}
	a, okA := num.Metrics["ns/op"]
	b, okB := den.Metrics["ns/op"]
	if !okA || !okB || a <= 0 || b <= 0 {
		return 0, "", fmt.Errorf("no ns/op for %s or %s", num.Key(), den.Key())
	}
	return b / a, "ops/s", nil
}

// formatValue prints three significant digits: 0.93, 1.12, 22.1, 1050.
func formatValue(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// isSelfRatio reports whether a custom metric unit is a ratio the benchmark
// computed itself (b.ReportMetric with a unit ending in "ratio" or "x").
func isSelfRatio(unit string) bool {
	return strings.HasSuffix(unit, "ratio") || strings.HasSuffix(unit, "x")
}

// Report prints the ratio section and returns how many targets were missed.
func Report(w io.Writer, out *Output, table []Ratio) (missed int) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== ratios: speed of the first over speed of the second (ops/s, or MB/s when both report it)")
	printed := 0
	for _, r := range table {
		num, errN := find(out, r.Num)
		den, errD := find(out, r.Den)
		line := fmt.Sprintf("%-38s", r.Name)
		switch {
		case errN != nil || errD != nil:
			fmt.Fprintf(w, "%s = n/a (%v)\n", line, firstErr(errN, errD))
			printed++
			continue
		case num == nil && den == nil:
			continue // neither benchmark ran: filtered out
		case num == nil || den == nil:
			missing := r.Num
			if num != nil {
				missing = r.Den
			}
			fmt.Fprintf(w, "%s = n/a (%s did not run)\n", line, missing)
			printed++
			continue
		}
		v, unit, err := speedRatio(num, den)
		if err != nil {
			fmt.Fprintf(w, "%s = n/a (%v)\n", line, err)
			printed++
			continue
		}
		fmt.Fprintf(w, "%s = %-6s", line, formatValue(v))
		if r.Target > 0 {
			op, ok := ">=", v >= r.Target
			if !r.HigherIsBetter {
				op, ok = "<=", v <= r.Target
			}
			verdict := "ok"
			if !ok {
				verdict = "MISS"
				missed++
			}
			fmt.Fprintf(w, " (target %s %s) %s", op, formatValue(r.Target), verdict)
		}
		fmt.Fprintf(w, "  [%s]\n", unit)
		printed++
	}

	// Ratios the benchmarks reported themselves.
	for _, res := range out.Results {
		units := make([]string, 0, len(res.Metrics))
		for unit := range res.Metrics {
			if isSelfRatio(unit) {
				units = append(units, unit)
			}
		}
		sort.Strings(units)
		for _, unit := range units {
			fmt.Fprintf(w, "%-38s = %-6s  [reported by the benchmark]\n", res.Key()+" "+unit, formatValue(res.Metrics[unit]))
			printed++
		}
	}
	if printed == 0 {
		fmt.Fprintln(w, "(no declared ratio had its benchmarks in this run)")
	}
	if missed > 0 {
		fmt.Fprintf(w, "MISS: %d ratio(s) missed their target (reported, not a failure)\n", missed)
	}
	return missed
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
