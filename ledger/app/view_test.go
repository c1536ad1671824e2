package app_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/app"
)

// TestOverlayMatchesReference applies random puts and deletes to a base
// store and to overlays stacked on it, and compares every Get and prefix
// Scan (full and stopped early) with a plain map.
func TestOverlayMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	keys := []string{"a", "a/1", "a/2", "a/3", "ab", "b", "b/1", "b/2", "c"}
	for round := range 200 {
		ref := map[string]string{}
		base := app.NewMemStore()
		var baseWrites []ledger.Write
		for _, k := range keys {
			if r.IntN(2) == 0 {
				v := fmt.Sprint("base", round, k)
				baseWrites = append(baseWrites, ledger.Write{Key: []byte(k), Value: []byte(v)})
				ref[k] = v
			}
		}
		base.Apply(baseWrites)
		var view app.View = base
		for depth := range 1 + r.IntN(3) {
			o := app.NewOverlay(view)
			for range r.IntN(8) {
				k := keys[r.IntN(len(keys))]
				if r.IntN(3) == 0 {
					o.Delete([]byte(k))
					delete(ref, k)
				} else {
					v := fmt.Sprint("o", depth, r.IntN(100))
					o.Put([]byte(k), []byte(v))
					ref[k] = v
				}
			}
			view = o
		}
		for _, k := range keys {
			got, _ := view.Get([]byte(k))
			if want, ok := ref[k]; (got != nil) != ok || string(got) != want {
				t.Fatalf("round %d: Get(%q) = %q, want %q", round, k, got, want)
			}
		}
		for _, prefix := range []string{"", "a", "a/", "b/", "c", "d"} {
			var matching []string
			for k := range ref {
				if strings.HasPrefix(k, prefix) {
					matching = append(matching, k)
				}
			}
			sort.Strings(matching)
			want := make([]string, len(matching))
			for i, k := range matching {
				want[i] = k + "=" + ref[k]
			}
			var got []string
			if err := view.Scan([]byte(prefix), func(k, v []byte) bool {
				got = append(got, string(k)+"="+string(v))
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d: Scan(%q) = %v, want %v", round, prefix, got, want)
			}
			// Stopping after n entries yields exactly the first n.
			n := r.IntN(len(want) + 1)
			var first []string
			if err := view.Scan([]byte(prefix), func(k, v []byte) bool {
				first = append(first, string(k)+"="+string(v))
				return len(first) < n
			}); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				n = min(1, len(want)) // fn runs once before it can stop
			}
			if !slices.Equal(first, want[:n]) {
				t.Fatalf("round %d: stopped Scan(%q) = %v, want %v", round, prefix, first, want[:n])
			}
		}
	}
}

// failingView reports a read fault, as a broken disk would.
type failingView struct{ app.View }

var errDisk = errors.New("disk read failed")

func (failingView) Get([]byte) ([]byte, error) { return nil, errDisk }

// TestStateFaultAbortsBlock: a state read error is not a transaction
// verdict; the whole block execution fails with it.
func TestStateFaultAbortsBlock(t *testing.T) {
	c := newChain(t, nil, nil)
	b := c.nextBlock(c.tx(simplePut(c, "alice")))
	if _, err := c.x.ExecuteBlock(failingView{c.store}, c.root, b); !errors.Is(err, errDisk) {
		t.Fatalf("error %v, want the disk fault", err)
	}
}
