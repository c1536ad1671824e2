package app_test

import (
	"encoding/binary"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
)

// BenchmarkCheckRecords runs the mempool's admission check (one Checker,
// as for a gossiped batch) on 1,000 record puts from one kiosk, without
// SM2 verification (the node's cache answers it): the dry run every
// transaction costs each node besides its execution.
func BenchmarkCheckRecords(b *testing.B) {
	kc := keyCache{}
	c := newChain(b, kc, nil)
	list := make([]ledger.Transaction, 1000)
	for i := range list {
		var subj ledger.Address
		binary.BigEndian.PutUint64(subj[:], uint64(i%97)+1)
		d := gm.SM3(subj[:8])
		list[i] = c.tx(spec{from: "kiosk", body: &txs.RecordPut{
			RecordType: "customs.declaration", Subject: subj, Digest: &d}})
	}
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
