package app_test

import (
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/app"
)

// BenchmarkCheckRecords runs the mempool's admission check (one Checker,
// as for a gossiped batch) on 1,000 record puts from one kiosk, without
// SM2 verification (the node's cache answers it): the dry run every
// transaction costs each node besides its execution.
func BenchmarkCheckRecords(b *testing.B) {
	c := newChain(b, keyCache{}, nil)
	list := kioskRecordPuts(c, 1000)
	x := app.New(app.WithSignatureCheck(func(*ledger.Transaction) error { return nil }))
	b.ReportAllocs()
	for b.Loop() {
		chk, err := x.NewChecker(c.store, c.time+1000)
		if err != nil {
			b.Fatal(err)
		}
		for i := range list {
			if err := chk.Check(&list[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(list)*b.N)/b.Elapsed().Seconds(), "tx/s")
}
