package txs

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

func randomRecordPut(r *rand.Rand) *RecordPut {
	b := &RecordPut{RecordType: []string{"customs.declaration", "x", "", "tax-2024.q1"}[r.IntN(4)]}
	if r.IntN(8) == 0 {
		b.RecordType = "\xff\xfe" // not UTF-8
	}
	b.Subject[r.IntN(32)] = byte(r.Uint32())
	b.Kind = PayloadKind([]uint64{0, 1, 2, 3, 255}[r.IntN(5)])
	if r.IntN(2) == 0 {
		d := gm.SM3([]byte{byte(r.Uint32())})
		b.Digest = &d
	}
	b.Size = []uint64{0, 1, 23, 24, 70000, math.MaxUint64}[r.IntN(6)]
	switch r.IntN(3) {
	case 0:
	case 1:
		b.Readers = []ledger.Address{}
	default:
		b.Readers = make([]ledger.Address, 1+r.IntN(40))
		for i := range b.Readers {
			b.Readers[i][0] = byte(i + 1)
		}
	}
	return b
}

// genericRecordPut is the generic strict decoder's reading of data.
func genericRecordPut(data []byte) (*RecordPut, bool) {
	var b RecordPut
	if ledger.Unmarshal(data, &b) != nil {
		return nil, false
	}
	return &b, true
}

func checkRecordPut(t *testing.T, data []byte) bool {
	t.Helper()
	want, wantOK := genericRecordPut(data)
	got, ok := parseRecordPut(data)
	if ok && (!wantOK || !reflect.DeepEqual(got, want)) {
		t.Fatalf("parseRecordPut accepts %x as %+v; generic decoder: %v %+v", data, got, wantOK, want)
	}
	return ok
}

// TestRecordPutCodecMatchesGeneric: appendRecordPut writes what the
// generic encoder writes; parseRecordPut reads every such encoding within
// its limits with the generic decoder's value, and accepts no mutation the
// generic strict decoder refuses.
func TestRecordPutCodecMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for i := range 3000 {
		b := randomRecordPut(r)
		enc, err := ledger.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecordPut(nil, b); !bytes.Equal(got, enc) {
			t.Fatalf("body %d: appendRecordPut\n got %x\nwant %x", i, got, enc)
		}
		parsed := checkRecordPut(t, enc)
		within := !bytes.Equal([]byte(b.RecordType), []byte("\xff\xfe")) && len(b.Readers) <= MaxReaders
		if within && !parsed {
			t.Fatalf("body %d: parseRecordPut refuses a canonical encoding %+v", i, b)
		}
		m := bytes.Clone(enc)
		m[r.IntN(len(m))] ^= byte(1 + r.IntN(255))
		checkRecordPut(t, m)
		checkRecordPut(t, enc[:r.IntN(len(enc))])
	}
}

// FuzzParseRecordPut: on any input, parseRecordPut accepts only what the
// generic strict decoder accepts, with the same value.
func FuzzParseRecordPut(f *testing.F) {
	r := rand.New(rand.NewPCG(15, 16))
	for range 20 {
		enc, _ := ledger.Marshal(randomRecordPut(r))
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRecordPut(t, data) })
}
