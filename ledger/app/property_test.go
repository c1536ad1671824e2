package app_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
)

// TestSameBlocksSameRoots applies the same random blocks in the same
// order to two fresh states and requires identical outputs and roots
// after every block; it also checks the asset invariant (supply equals
// the sum of balances) after every block, and that the mempool check
// agrees with execution on each block's first transaction.
func TestSameBlocksSameRoots(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			kc := keyCache{}
			a := newChain(t, kc, nil)
			g, err := app.Genesis(a.doc)
			if err != nil {
				t.Fatal(err)
			}
			other := app.NewMemStore()
			other.Apply(g.Writes)
			otherRoot := g.StateRoot
			gn := newGen(a, uint64(seed), kc)
			var sent []ledger.Transaction
			codes := map[reason.Code]int{}
			for h := range 25 {
				b := gn.block(1+gn.r.IntN(12), sent)
				sent = append(sent, b.Txs...)

				// The mempool check on the parent state agrees with
				// execution for the block's first transaction.
				checkErr := a.x.CheckTx(a.store, &b.Txs[0], b.Header.Timestamp)
				outA, err := a.x.ExecuteBlock(a.store, a.root, b)
				if err != nil {
					t.Fatalf("block %d: %v", h, err)
				}
				if got, want := reason.Of(checkErr), outA.Results[0].Code; got != want {
					t.Fatalf("block %d: CheckTx says %s (%v), execution says %s (%s)", h, got, checkErr, want, outA.Results[0].Detail)
				}
				outB, err := app.New().ExecuteBlock(other, otherRoot, b)
				if err != nil {
					t.Fatalf("block %d on the second state: %v", h, err)
				}
				if outA.StateRoot != outB.StateRoot || !reflect.DeepEqual(outA.Writes, outB.Writes) ||
					!reflect.DeepEqual(outA.Events, outB.Events) || !reflect.DeepEqual(outA.Reconfig, outB.Reconfig) {
					t.Fatalf("block %d: outputs differ", h)
				}
				for i := range outA.Results {
					if outA.Results[i].ID != outB.Results[i].ID || outA.Results[i].Code != outB.Results[i].Code {
						t.Fatalf("block %d: result %d differs", h, i)
					}
					codes[outA.Results[i].Code]++
				}
				a.store.Apply(outA.Writes)
				other.Apply(outB.Writes)
				a.root, a.height, a.time, a.prev = outA.StateRoot, b.Header.Height, b.Header.Timestamp, b.ID()
				otherRoot = outB.StateRoot
				if err := supplyMatches(a.store); err != nil {
					t.Fatalf("block %d: %v", h, err)
				}
			}
			// The two stores hold the same bytes.
			var ka, kb [][]byte
			a.store.Each(func(k, v []byte) { ka = append(ka, append(append([]byte{}, k...), v...)) })
			other.Each(func(k, v []byte) { kb = append(kb, append(append([]byte{}, k...), v...)) })
			if len(ka) != len(kb) {
				t.Fatalf("stores differ in size: %d vs %d", len(ka), len(kb))
			}
			for i := range ka {
				if !bytes.Equal(ka[i], kb[i]) {
					t.Fatalf("stores differ at entry %d", i)
				}
			}
			t.Logf("codes: %v", codes)
			if codes[reason.OK] == 0 || len(codes) < 8 {
				t.Fatalf("the generator exercised too little: %v", codes)
			}
		})
	}
}

// TestDifferentOrderDifferentRoot: the root commits to the order of
// transactions, not only to the resulting state.
func TestDifferentOrderDifferentRoot(t *testing.T) {
	kc := keyCache{}
	a := newChain(t, kc, nil)
	b := newChain(t, kc, nil)
	t1 := a.tx(simplePut(a, "alice"))
	t2 := a.tx(simplePut(a, "bob"))
	ra := a.run(t1, t2).StateRoot
	rb := b.run(t2, t1).StateRoot
	if ra == rb {
		t.Fatal("reordered block has the same root")
	}
}

func TestCheckerDoesNotWrite(t *testing.T) {
	c := newChain(t, nil, nil)
	before := c.store.Len()
	tx := c.tx(simplePut(c, "alice"))
	if err := c.x.CheckTx(c.store, &tx, c.time+blockStep); err != nil {
		t.Fatal(err)
	}
	if c.store.Len() != before {
		t.Fatal("check wrote to the store")
	}
	c.run(tx)
	var re *reason.Error
	if err := c.x.CheckTx(c.store, &tx, c.time+blockStep); !errors.As(err, &re) || re.Code != reason.Duplicate {
		t.Fatalf("check after execution: %v", err)
	}
}

// TestCheckerConcurrent: one Checker serves several goroutines (the
// mempool verifies in parallel) and gives each the sequential verdict.
func TestCheckerConcurrent(t *testing.T) {
	kc := keyCache{}
	c := newChain(t, kc, nil)
	g := newGen(c, 99, kc)
	list := make([]ledger.Transaction, 40)
	for i := range list {
		list[i] = g.tx()
	}
	at := c.time + blockStep
	checker, err := c.x.NewChecker(c.store, at)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]reason.Code, len(list))
	for i := range list {
		want[i] = reason.Of(checker.Check(&list[i]))
	}
	got := make([]reason.Code, len(list))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(list); i += 4 {
				got[i] = reason.Of(checker.Check(&list[i]))
			}
		})
	}
	wg.Wait()
	if !slices.Equal(got, want) {
		t.Fatalf("concurrent verdicts %v, sequential %v", got, want)
	}
}
