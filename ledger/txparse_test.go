package ledger

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"hallmark/gm"
)

// genericStrict is what the strict decoder did for a transaction before
// parseTx: the generic decoder, then the canonical check.
func genericStrict(data []byte) (*Transaction, bool) {
	var f txFields
	if canonical.dec.Unmarshal(data, &f) != nil {
		return nil, false
	}
	tx := Transaction(f)
	enc, err := canonical.enc.Marshal(genericOf(&tx))
	if err != nil || !bytes.Equal(enc, data) {
		return nil, false
	}
	return &tx, true
}

// checkParse: whatever parseTx accepts, the generic strict decoder accepts
// with the same value; whatever it refuses goes to the generic decoder,
// so Unmarshal and DecodeTx agree with the generic decoder on everything.
func checkParse(t *testing.T, data []byte) (parsed bool) {
	t.Helper()
	want, wantOK := genericStrict(data)
	var got Transaction
	end, ok := parseTx(data, &got)
	if ok {
		if !wantOK {
			t.Fatalf("parseTx accepts what the generic decoder refuses: %x", data)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("parseTx value differs from the generic decoder's:\n got %+v\nwant %+v", got, *want)
		}
		if !bytes.Equal(data[txBodyStart:end], appendTxBody(nil, &want.Body)) {
			t.Fatal("parseTx bounds the body wrongly")
		}
	}
	var viaUnmarshal Transaction
	err := Unmarshal(data, &viaUnmarshal)
	if (err == nil) != wantOK {
		t.Fatalf("Unmarshal error %v, generic accepts: %v (%x)", err, wantOK, data)
	}
	if wantOK && !reflect.DeepEqual(&viaUnmarshal, want) {
		t.Fatalf("Unmarshal value differs from the generic decoder's")
	}
	return ok
}

// wellFormedTx is randomTx within the limits parseTx takes on its fast
// path (valid UTF-8, 1 to MaxSigners signers and signatures).
func wellFormedTx(r *rand.Rand) *Transaction {
	tx := randomTx(r)
	for len(tx.Body.Signers) == 0 || len(tx.Body.Signers) > MaxSigners {
		tx.Body.Signers = randomTx(r).Body.Signers
	}
	for len(tx.Signatures) == 0 || len(tx.Signatures) > MaxSigners {
		tx.Signatures = randomTx(r).Signatures
	}
	tx.Body.Version &= 0xff
	tx.Body.ChainID = "chain-" + string(rune('a'+r.IntN(26)))
	if tx.Body.Entity.Memo != "" {
		tx.Body.Entity.Memo = "memo"
	}
	return tx
}

// TestParseTxMatchesGeneric: parseTx reads every well-formed transaction,
// with the generic decoder's value, and its refusals of mutated input
// match the generic decoder's.
func TestParseTxMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 300 {
		tx := wellFormedTx(r)
		enc, err := EncodeTx(tx)
		if err != nil {
			t.Fatal(err)
		}
		if !checkParse(t, enc) {
			t.Fatalf("transaction %d: parseTx refuses a canonical encoding: %+v signers %d sigs %d payload %d", i, tx.Body, len(tx.Body.Signers), len(tx.Signatures), len(tx.Payload))
		}
		// Mutations: a changed byte, a truncation, a longer head.
		m := bytes.Clone(enc)
		m[r.IntN(len(m))] ^= byte(1 + r.IntN(255))
		checkParse(t, m)
		checkParse(t, enc[:r.IntN(len(enc))])
		checkParse(t, append([]byte{0xb8, enc[0] & 0x1f}, enc[1:]...))
	}
	// Text that is not UTF-8 is refused by both.
	tx := wellFormedTx(r)
	tx.Body.ChainID = "\xff\xfe"
	enc, _ := EncodeTx(tx)
	if checkParse(t, enc) {
		t.Fatal("parseTx accepted a chain id that is not UTF-8")
	}
}

// TestBlockDecodeMatchesGeneric: a block decodes to what the generic
// decoder gives, and a transaction inside it that is not canonical still
// makes the block non-canonical.
func TestBlockDecodeMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	blk := &Block{Header: Header{Version: HeaderVersion, ChainID: "c", Height: 3, PrevHash: gm.Digest{1}}}
	for range 20 {
		blk.Txs = append(blk.Txs, *wellFormedTx(r))
	}
	enc, err := EncodeBlock(blk)
	if err != nil {
		t.Fatal(err)
	}
	var got Block
	if err := Unmarshal(enc, &got); err != nil {
		t.Fatal(err)
	}
	type genericBlock struct {
		Header Header     `cbor:"1,keyasint"`
		Txs    []txFields `cbor:"2,keyasint"`
	}
	var want genericBlock
	if err := canonical.dec.Unmarshal(enc, &want); err != nil {
		t.Fatal(err)
	}
	if got.Header != want.Header || len(got.Txs) != len(want.Txs) {
		t.Fatal("block differs from the generic decoding")
	}
	for i := range got.Txs {
		if !reflect.DeepEqual(got.Txs[i], Transaction(want.Txs[i])) {
			t.Fatalf("transaction %d differs from the generic decoding", i)
		}
	}
	// A non-shortest head inside the first transaction's nonce: the
	// transaction still decodes (generically), the block is refused as
	// non-canonical, as before.
	tx := blk.Txs[0]
	tx.Body.Nonce = 5
	one := &Block{Header: blk.Header, Txs: []Transaction{tx}}
	enc, _ = EncodeBlock(one)
	i := bytes.Index(enc, []byte{0x05, 0x05, 0x06})
	if i < 0 {
		t.Fatal("nonce not found")
	}
	bad := append(append(bytes.Clone(enc[:i+1]), 0x18, 0x05), enc[i+2:]...)
	if err := Unmarshal(bad, &got); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("block with a non-canonical transaction: %v", err)
	}
}

// FuzzParseTx: on any input, parseTx accepts only what the generic strict
// decoder accepts, with the same value, and Unmarshal agrees with it.
func FuzzParseTx(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 20 {
		enc, _ := EncodeTx(wellFormedTx(r))
		f.Add(enc)
	}
	f.Add([]byte{0xa2, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		checkParse(t, data)
	})
}
