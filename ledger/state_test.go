package ledger

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"hallmark/gm"
)

func randomWrites(r *rand.Rand) []Write {
	out := make([]Write, r.IntN(40))
	for i := range out {
		w := &out[i]
		switch r.IntN(10) {
		case 0: // empty key: refused
		case 1:
			w.Key = []byte{}
		default:
			w.Key = []byte{byte('a' + r.IntN(4)), byte(r.IntN(3))}[:1+r.IntN(2)]
		}
		switch r.IntN(5) {
		case 0:
			w.Value = []byte{}
		case 1, 2:
			w.Value = bytes.Repeat([]byte{byte(r.Uint32())}, []int{1, 23, 24, 300, 3000}[r.IntN(5)])
		}
		w.Delete = r.IntN(4) == 0
		if w.Delete && r.IntN(2) == 0 {
			w.Value = nil
		}
	}
	return out
}

// referenceStateRoot is NextStateRoot as it was written before the fast
// paths: CanonicalWriteSet's map and sort, then the generic encoder.
func referenceStateRoot(prev gm.Digest, writes []Write) (gm.Digest, []Write, error) {
	last := make(map[string]int, len(writes))
	for i, w := range writes {
		if len(w.Key) == 0 || (w.Delete && w.Value != nil) {
			return gm.Digest{}, nil, ErrMalformed
		}
		last[string(w.Key)] = i
	}
	set := make([]Write, 0, len(last))
	for _, i := range last {
		set = append(set, writes[i])
	}
	slices.SortFunc(set, func(a, b Write) int { return bytes.Compare(a.Key, b.Key) })
	enc, err := canonical.enc.Marshal(set)
	if err != nil {
		return gm.Digest{}, nil, err
	}
	ws := gm.SM3(enc)
	return gm.SM3Concat([]byte(stateDomain), prev[:], ws[:]), set, nil
}

// TestStateRootMatchesReference: NextStateRoot and CanonicalWriteSet give
// what the generic encoder and the map-and-sort give, for raw write lists
// and for lists that are already canonical.
func TestStateRootMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	prev := gm.SM3([]byte("prev"))
	for range 500 {
		writes := randomWrites(r)
		want, wantSet, wantErr := referenceStateRoot(prev, writes)
		set, err := CanonicalWriteSet(writes)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("CanonicalWriteSet error %v, reference %v", err, wantErr)
		}
		got, err := NextStateRoot(prev, writes)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("NextStateRoot error %v, reference %v", err, wantErr)
		}
		if wantErr != nil {
			continue
		}
		if got != want {
			t.Fatalf("state root %s, reference %s for %v", got, want, writes)
		}
		if !slices.EqualFunc(set, wantSet, func(a, b Write) bool {
			return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Delete == b.Delete
		}) {
			t.Fatalf("canonical set %v, reference %v", set, wantSet)
		}
		// The canonical set itself takes the fast path.
		if !isCanonicalWriteSet(set) {
			t.Fatalf("canonical set %v not recognised as canonical", set)
		}
		if again, _ := NextStateRoot(prev, set); again != want {
			t.Fatal("the root over the canonical set differs")
		}
		enc, err := canonical.enc.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		if fast := appendWriteSet(nil, set); !bytes.Equal(fast, enc) {
			t.Fatalf("write set encoding\n got %.200x\nwant %.200x", fast, enc)
		}
	}
	if enc, _ := canonical.enc.Marshal([]Write(nil)); !bytes.Equal(appendWriteSet(nil, nil), enc) {
		t.Fatal("empty write set encoding differs")
	}
}
