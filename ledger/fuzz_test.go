package ledger_test

import (
	"bytes"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
)

// Every decoder must either reject its input or return an object whose
// canonical encoding is exactly that input; none may panic.

func FuzzDecodeTx(f *testing.F) {
	key := ledgertest.Key(f)
	for i, o := range []ledgertest.TxOptions{
		{}, {Data: []byte("data"), Memo: "memo"}, {Payload: []byte("payload")}, {Type: ledger.TxAssetTransfer, Nonce: 1 << 40},
	} {
		o.Nonce += uint64(i)
		tx := ledgertest.Tx(f, key, o)
		enc, _ := ledger.EncodeTx(&tx)
		f.Add(enc)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xf6})
	f.Fuzz(func(t *testing.T, data []byte) {
		tx, err := ledger.DecodeTx(data)
		if err != nil {
			return
		}
		again, err := ledger.EncodeTx(tx)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input is not canonical: %v", err)
		}
		_ = tx.VerifySignatures()
	})
}

func FuzzDecodeBlock(f *testing.F) {
	key := ledgertest.Key(f)
	for n := 0; n < 3; n++ {
		b := ledgertest.Block(f, uint64(n+1), gm.SM3([]byte{byte(n)}), ledgertest.Txs(f, key, n, 16))
		enc, _ := ledger.EncodeBlock(b)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return
		}
		again, err := ledger.EncodeBlock(b)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input is not canonical: %v", err)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	b := ledgertest.Block(f, 7, gm.SM3([]byte("p")), nil)
	enc, _ := ledger.EncodeHeader(&b.Header)
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ledger.DecodeHeader(data)
		if err != nil {
			return
		}
		again, _ := ledger.EncodeHeader(h)
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input is not canonical")
		}
	})
}

func FuzzDecodeBody(f *testing.F) {
	key := ledgertest.Key(f)
	body, _ := ledger.EncodeBody(ledgertest.Txs(f, key, 3, 8))
	f.Add(body)
	f.Fuzz(func(t *testing.T, data []byte) {
		txs, err := ledger.DecodeBody(data)
		if err != nil {
			return
		}
		again, _ := ledger.EncodeBody(txs)
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input is not canonical")
		}
	})
}

func FuzzDecodeAccount(f *testing.F) {
	key := ledgertest.Key(f)
	a := ledger.Account{Address: ledger.AddressOf(key.PublicKey()), PublicKey: ledger.KeyBytes(key.PublicKey()), Institution: "海关", Roles: ledger.RoleKiosk}
	enc, _ := ledger.EncodeAccount(&a)
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		acc, err := ledger.DecodeAccount(data)
		if err != nil {
			return
		}
		again, _ := ledger.EncodeAccount(acc)
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input is not canonical")
		}
	})
}

func FuzzMerkleProof(f *testing.F) {
	f.Add(uint64(3), uint64(7), []byte("leaf"), []byte{})
	f.Add(uint64(0), uint64(1), []byte("x"), make([]byte, 64))
	f.Fuzz(func(t *testing.T, index, size uint64, leaf, path []byte) {
		p := ledger.MerkleProof{Index: index, Size: size}
		for len(path) >= 32 {
			var d gm.Digest
			copy(d[:], path)
			p.Path = append(p.Path, d)
			path = path[32:]
		}
		_ = p.Verify(gm.SM3(leaf), leaf) // must not panic
	})
}
