package main

import (
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// cpuProfile builds a CPU profile whose samples have the given stacks
// (innermost function first) and nanosecond values.
func cpuProfile(stacks [][]string, nanos []int64) *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
	}
	funcs := map[string]*profile.Function{}
	for i, st := range stacks {
		s := &profile.Sample{Value: []int64{1, nanos[i]}}
		for _, name := range st {
			f := funcs[name]
			if f == nil {
				f = &profile.Function{ID: uint64(len(funcs) + 1), Name: name}
				funcs[name] = f
				p.Function = append(p.Function, f)
			}
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: f}}}
			p.Location = append(p.Location, loc)
			s.Location = append(s.Location, loc)
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

func TestCostBreakdownCategories(t *testing.T) {
	p := cpuProfile([][]string{
		// A verification inside the kiosk ingress is verification.
		{"github.com/emmansun/gmsm/internal/sm2.Verify", "hallmark/gm.(*PublicKey).Verify", "hallmark/ledger.(*Transaction).VerifySignatures", "hallmark/netstack/ingress.(*Server).handle"},
		// A GC assist inside a verification is garbage collection.
		{"runtime.gcAssistAlloc", "runtime.mallocgc", "hallmark/gm.(*PublicKey).Verify", "hallmark/ledger.(*Transaction).VerifySignatures"},
		// A vote's verification is not a transaction's.
		{"hallmark/gm.(*PublicKey).Verify", "hallmark/consensus.(*Core).onVote"},
		{"syscall.Fdatasync", "go.etcd.io/bbolt.(*Tx).Commit", "go.etcd.io/bbolt.(*DB).Update", "hallmark/storage.(*Store).CommitBlocks"},
		{"go.etcd.io/bbolt.(*Cursor).seek", "hallmark/ledger/app.(*Executor).ExecuteBlock", "go.etcd.io/bbolt.(*DB).View"},
		// bbolt's View only wraps the execution inside it.
		{"hallmark/ledger/app.(*blockEnv).runTx", "hallmark/ledger/app.(*Executor).ExecuteBlock", "go.etcd.io/bbolt.(*DB).View"},
		{"hallmark/ledger/app.(*blockEnv).runTx", "hallmark/ledger/app.(*Executor).ExecuteBlock"},
		{"runtime.futex", "runtime.findRunnable", "runtime.schedule"},
		{"main.somethingElse"},
	}, []int64{100e3, 10e3, 20e3, 300e3, 40e3, 25e3, 25e3, 7e3, 3e3})
	b := newCostBreakdown()
	if err := b.add(p); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"SM2 verify: transactions":      100e3,
		"garbage collection":            10e3,
		"SM2 verify: votes, QCs, peers": 20e3,
		"storage: block commit":         300e3,
		"storage: reads":                40e3,
		"execution":                     50e3,
		"Go scheduler and runtime":      7e3,
		otherCategory:                   3e3,
	}
	for name, n := range want {
		if b.Nanos[name] != n {
			t.Errorf("%s: %d ns, want %d (all: %v)", name, b.Nanos[name], n, b.Nanos)
		}
	}
	if b.Total != 530e3 {
		t.Errorf("total %d, want 530000", b.Total)
	}
	// Two profiles (nodes) and 10 transactions: µs per tx per node.
	if err := b.add(p); err != nil {
		t.Fatal(err)
	}
	if got := b.perTx("storage: block commit", 10); got != 30 {
		t.Errorf("perTx = %v µs, want 30", got)
	}
	s := b.summary(10)
	for _, w := range []string{"storage_block_commit=30.0", "sm2_verify_transactions=10.0", "garbage_collection=1.0", "other=0.3", "total=53.0"} {
		if !strings.Contains(s, w) {
			t.Errorf("summary %q lacks %q", s, w)
		}
	}
}

func TestCostBreakdownRejectsNonCPUProfile(t *testing.T) {
	p := cpuProfile(nil, nil)
	p.SampleType = []*profile.ValueType{{Type: "inuse_space", Unit: "bytes"}}
	if err := newCostBreakdown().add(p); err == nil {
		t.Fatal("a heap profile was accepted as a CPU profile")
	}
}
