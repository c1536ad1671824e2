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

// BenchmarkCodecBatch measures what a node does to the transactions of a
// gossiped batch or a proposal, per transaction: decode them with one
// TxDecoder (signers shared), encode a block body, and decode a block and
// check its body as a voter does.
func BenchmarkCodecBatch(b *testing.B) {
	key, _ := gm.GenerateKey(nil)
	const n = 300
	txs := make([]ledger.Transaction, n)
	encs := make([][]byte, n)
	for i := range txs {
		txs[i], _ = ledgertest.NewTx(key, ledgertest.TxOptions{Data: make([]byte, 120), Nonce: uint64(i)})
		encs[i], _ = ledger.EncodeTx(&txs[i])
	}
	blk := &ledger.Block{Header: ledger.Header{Version: ledger.HeaderVersion, ChainID: ledgertest.ChainID, Height: 5, PrevHash: gm.Digest{1}}, Txs: txs}
	if _, err := blk.Seal(); err != nil {
		b.Fatal(err)
	}
	blkEnc, _ := ledger.EncodeBlock(blk)
	perTx := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/tx")
	}
	b.Run("decode-batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var dec ledger.TxDecoder
			for _, e := range encs {
				if _, err := dec.Decode(e); err != nil {
					b.Fatal(err)
				}
			}
		}
		perTx(b)
	})
	b.Run("encode-body", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ledger.EncodeBody(txs); err != nil {
				b.Fatal(err)
			}
		}
		perTx(b)
	})
	b.Run("encode-block", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ledger.Marshal(blk); err != nil {
				b.Fatal(err)
			}
		}
		perTx(b)
	})
	b.Run("decode-block", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got ledger.Block
			if err := ledger.Unmarshal(blkEnc, &got); err != nil {
				b.Fatal(err)
			}
			ledger.RememberIDs(got.Txs)
			if _, err := got.CheckBodyEncoding(); err != nil {
				b.Fatal(err)
			}
		}
		perTx(b)
	})
}

// BenchmarkStateRoot: the state root over a block's canonical write set
// (3,000 writes, as 1,000 record puts make), which execution computes and
// storage checks again.
func BenchmarkStateRoot(b *testing.B) {
	writes := make([]ledger.Write, 3000)
	for i := range writes {
		k := gm.SM3([]byte{byte(i), byte(i >> 8)})
		writes[i] = ledger.Write{Key: append([]byte("r/"), k[:]...), Value: make([]byte, 180)}
	}
	set, err := ledger.CanonicalWriteSet(writes)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ledger.NextStateRoot(gm.Digest{}, set); err != nil {
			b.Fatal(err)
		}
	}
}
