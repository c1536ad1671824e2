package ledger_test

import (
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
)

func BenchmarkCodecTx(b *testing.B) {
	key, _ := gm.GenerateKey(nil)
	tx, _ := ledgertest.NewTx(key, ledgertest.TxOptions{Data: make([]byte, 200)})
	enc, _ := ledger.EncodeTx(&tx)
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := ledger.DecodeTx(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			ledger.EncodeTx(&tx)
		}
	})
	b.Run("sm3", func(b *testing.B) {
		for b.Loop() {
			gm.SM3(enc)
		}
	})
}
