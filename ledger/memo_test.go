package ledger

import (
	"context"
	"testing"

	"hallmark/gm"
)

func memoTxs(t *testing.T, n int) []Transaction {
	t.Helper()
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Transaction, n)
	for i := range out {
		out[i] = Transaction{Body: TxBody{
			Version: TxVersion, ChainID: "memo-test", Type: TxRecordPut, Timestamp: 1, Nonce: uint64(i),
			Signers: []PublicKeyBytes{KeyBytes(k.PublicKey())},
			Entity:  Entity{Sender: AddressOf(k.PublicKey()), Data: []byte{byte(i)}},
		}}
		if err := out[i].Sign(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// A batch's transactions from one signer share one parsed key, and still
// validate and verify.
func TestRememberIDsSharesSignerKeys(t *testing.T) {
	txs := memoTxs(t, 3)
	for i := range txs {
		txs[i].memo = nil
	}
	RememberIDs(txs)
	k0 := txs[0].signerKeys()
	if k0 == nil {
		t.Fatal("no parsed keys remembered")
	}
	for i := range txs {
		if ks := txs[i].signerKeys(); len(ks) != 1 || ks[0] != k0[0] {
			t.Fatalf("tx %d: parsed key not shared", i)
		}
		if err := txs[i].Validate(); err != nil {
			t.Fatal(err)
		}
		if err := txs[i].VerifySignatures(); err != nil {
			t.Fatal(err)
		}
	}
}

// ForgetIDs copies drop the memo but keep the id, and leave the
// originals' memos alone.
func TestForgetIDs(t *testing.T) {
	txs := memoTxs(t, 2)
	ids := []TxID{txs[0].ID(), txs[1].ID()}
	got := ForgetIDs(txs)
	for i := range got {
		if got[i].memo != nil {
			t.Fatalf("copy %d keeps its memo", i)
		}
		if txs[i].memo == nil {
			t.Fatalf("original %d lost its memo", i)
		}
		if got[i].ID() != ids[i] {
			t.Fatalf("copy %d has id %s, want %s", i, got[i].ID(), ids[i])
		}
		if err := got[i].VerifySignatures(); err != nil {
			t.Fatal(err)
		}
	}
}

// A TxDecoder's transactions share one parsed key per signer and decode
// exactly as DecodeTx does.
func TestTxDecoderSharesSignerKeys(t *testing.T) {
	var dec TxDecoder
	var first *gm.PublicKey
	for i, tx := range memoTxs(t, 3) {
		enc, err := EncodeTx(&tx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dec.Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := DecodeTx(enc)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID() != want.ID() || got.ID() != tx.ID() {
			t.Fatalf("tx %d: id %s, DecodeTx gives %s", i, got.ID(), want.ID())
		}
		ks := got.signerKeys()
		if first == nil {
			first = ks[0]
		}
		if len(ks) != 1 || ks[0] != first {
			t.Fatalf("tx %d: parsed key not shared", i)
		}
	}
	enc, _ := EncodeTx(&Transaction{})
	if _, err := dec.Decode(enc); err == nil {
		t.Fatal("an empty transaction decoded")
	}
}
