package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/google/pprof/profile"
)

// A costCategory names a kind of work and the functions whose presence in
// a CPU sample's stack marks the sample as that work.
type costCategory struct {
	Name  string
	Match *regexp.Regexp
	// Except, if set, exempts functions Match would take: a frame that
	// only wraps the work (bbolt's View runs a whole block's execution).
	Except *regexp.Regexp
}

func category(name, match, except string) costCategory {
	c := costCategory{Name: name, Match: regexp.MustCompile(match)}
	if except != "" {
		c.Except = regexp.MustCompile(except)
	}
	return c
}

func (c *costCategory) takes(fn string) bool {
	return c.Match.MatchString(fn) && (c.Except == nil || !c.Except.MatchString(fn))
}

// costCategories are tried in order; a sample belongs to the first whose
// pattern matches any function on its stack. The order puts the narrow,
// inner kinds of work first (a signature verification inside the kiosk
// ingress is verification, not ingress), and the garbage collector before
// all, so that allocation assists are charged to it wherever they happen.
var costCategories = []costCategory{
	category("garbage collection", `^runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcMarkDone|gcStart|markroot)`, ""),
	category("SM2 verify: transactions", `^hallmark/(ledger\.\(\*Transaction\)\.VerifySignatures|firmware/sigcache\.)`, ""),
	category("SM2 verify: votes, QCs, peers", `^hallmark/gm\.\(\*PublicKey\)\.Verify`, ""),
	category("SM2 sign: kiosk receipts", `^hallmark/netstack/kiosk\.SignReceipt$`, ""),
	category("SM2 sign: votes, proposals", `^hallmark/gm\.\(\*PrivateKey\)\.Sign|^hallmark/hsm`, ""),
	category("storage: block commit", `^hallmark/storage\.\(\*Store\)\.CommitBlocks$`, ""),
	category("storage: safety record", `^hallmark/storage\.\(\*Store\)\.(SaveSafety|ReleaseKept)$`, ""),
	category("storage: reads", `^go\.etcd\.io/bbolt\.`, `^go\.etcd\.io/bbolt\.\(\*DB\)\.(View|Update|Batch)$`),
	category("execution", `^hallmark/ledger/app\.`, ""),
	category("block build and validation", `^hallmark/firmware/exec\.`, ""),
	category("mempool and admission", `^hallmark/firmware/(mempool\.|node\.\(\*admitter\))`, ""),
	category("kiosk ingress", `^hallmark/netstack/(ingress|kiosk|xdp)\.`, ""),
	category("gossip", `^hallmark/firmware/node\.(\(\*gossiper\)|decodeBatch)`, ""),
	category("consensus and peer transport", `^(hallmark/(consensus|netstack/peer)|github\.com/quic-go/)`, ""),
	category("HTTP API and metrics", `^(net/http\.|github\.com/prometheus/)`, ""),
	category("Go scheduler and runtime", `^runtime\.`, ""),
}

const otherCategory = "other"

// costBreakdown is CPU time by category in one or more CPU profiles.
type costBreakdown struct {
	Nanos    map[string]int64
	Total    int64
	Profiles int
}

func newCostBreakdown() *costBreakdown {
	return &costBreakdown{Nanos: make(map[string]int64)}
}

// categoryOf returns the category of a sample with the given stack of
// function names (any order).
func categoryOf(funcs []string) string {
	for i := range costCategories {
		c := &costCategories[i]
		for _, f := range funcs {
			if c.takes(f) {
				return c.Name
			}
		}
	}
	return otherCategory
}

// add charges every sample of a CPU profile to its category.
func (b *costBreakdown) add(p *profile.Profile) error {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("not a CPU profile (sample types %v)", p.SampleType)
	}
	var funcs []string
	for _, s := range p.Sample {
		funcs = funcs[:0]
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function != nil {
					funcs = append(funcs, line.Function.Name)
				}
			}
		}
		v := s.Value[idx]
		b.Nanos[categoryOf(funcs)] += v
		b.Total += v
	}
	b.Profiles++
	return nil
}

func (b *costBreakdown) addFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := b.add(p); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// perTx returns a category's CPU in microseconds per transaction per
// profile (per node, when there is one profile per node).
func (b *costBreakdown) perTx(name string, txs int) float64 {
	if txs <= 0 || b.Profiles == 0 {
		return 0
	}
	return float64(b.Nanos[name]) / 1e3 / float64(txs) / float64(b.Profiles)
}

// lines formats the breakdown for the log: every category with CPU, in
// the order of costCategories, then the total. txs is the number of
// transactions committed while the profiles ran.
func (b *costBreakdown) lines(txs int) []string {
	if b.Total == 0 || txs <= 0 {
		return nil
	}
	var out []string
	row := func(name string, nanos int64) {
		out = append(out, fmt.Sprintf("%-32s %7.1f µs  %5.1f %%", name, float64(nanos)/1e3/float64(txs)/float64(b.Profiles), 100*float64(nanos)/float64(b.Total)))
	}
	for _, c := range costCategories {
		if n := b.Nanos[c.Name]; n > 0 {
			row(c.Name, n)
		}
	}
	if n := b.Nanos[otherCategory]; n > 0 {
		row(otherCategory, n)
	}
	row("total", b.Total)
	return out
}

// summary is the breakdown as one machine-readable line: category keys
// (lower case, words joined by underscores) = µs per tx per node.
func (b *costBreakdown) summary(txs int) string {
	names := make([]string, 0, len(costCategories)+1)
	for _, c := range costCategories {
		names = append(names, c.Name)
	}
	var parts []string
	for _, name := range append(names, otherCategory) {
		if b.Nanos[name] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.1f", categoryKey(name), b.perTx(name, txs)))
		}
	}
	parts = append(parts, fmt.Sprintf("total=%.1f", float64(b.Total)/1e3/float64(max(txs, 1))/float64(max(b.Profiles, 1))))
	return strings.Join(parts, " ")
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func categoryKey(name string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(name), "_"), "_")
}
