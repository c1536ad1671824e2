package app

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// TestRecordEncodingMatchesGeneric: appendRecord writes what the generic
// encoder writes, for records of every shape.
func TestRecordEncodingMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	digest := func() *gm.Digest { d := gm.SM3([]byte{byte(r.Uint32()), byte(r.Uint32())}); return &d }
	num := func() uint64 { return []uint64{0, 1, 23, 24, 255, 256, 65536, 1 << 40, math.MaxUint64}[r.IntN(9)] }
	for i := range 3000 {
		rec := &Record{ID: *digest(), Type: []string{"", "customs.declaration", "\xff"}[r.IntN(3)], Kind: txs.PayloadKind(num()), Digest: *digest(),
			Size: num(), Height: num(), Time: int64(num())}
		if r.IntN(2) == 0 {
			rec.Time = -rec.Time - 1
		}
		rec.Subject[r.IntN(32)], rec.Owner[r.IntN(32)] = 1, 2
		switch r.IntN(3) {
		case 1:
			rec.Readers = []ledger.Address{}
		case 2:
			rec.Readers = make([]ledger.Address, 1+r.IntN(30))
			for j := range rec.Readers {
				rec.Readers[j][j] = byte(j)
			}
		}
		if r.IntN(2) == 0 {
			rec.Supersedes = digest()
		}
		if r.IntN(2) == 0 {
			rec.SupersededBy = digest()
		}
		if r.IntN(2) == 0 {
			rec.Masked = &Mask{Time: int64(num()), Height: num(), Reason: []string{"", "court order", "\xfe"}[r.IntN(3)], Tx: *digest()}
			rec.Masked.By[3] = 7
		}
		want, err := ledger.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, rec); !bytes.Equal(got, want) {
			t.Fatalf("record %d: appendRecord\n got %x\nwant %x", i, got, want)
		}
	}
}
