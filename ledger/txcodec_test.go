package ledger

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"hallmark/gm"
)

// The generic encoder's view of the transaction types: the same fields
// and tags, walked by canonical.enc through reflection.
type (
	genericBody TxBody
	genericTx   struct {
		Body       genericBody    `cbor:"1,keyasint"`
		Signatures []gm.Signature `cbor:"2,keyasint"`
		Payload    []byte         `cbor:"3,keyasint,omitempty"`
	}
	genericBlockBody struct {
		Txs []genericTx `cbor:"1,keyasint"`
	}
)

func genericOf(tx *Transaction) genericTx {
	return genericTx{Body: genericBody(tx.Body), Signatures: tx.Signatures, Payload: tx.Payload}
}

func genericMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := canonical.enc.Marshal(v)
	if err != nil {
		t.Fatalf("generic encoder: %v", err)
	}
	return b
}

// randomTx fills every field from r, covering empty and nil lists, absent
// and present optional fields, every head length (0, 1, 2, 4 and 8 byte
// arguments), negative timestamps and text that is not UTF-8.
func randomTx(r *rand.Rand) *Transaction {
	num := func() uint64 {
		switch r.IntN(6) {
		case 0:
			return r.Uint64N(24)
		case 1:
			return 24 + r.Uint64N(232)
		case 2:
			return 256 + r.Uint64N(65536-256)
		case 3:
			return 65536 + r.Uint64N(1<<32-65536)
		case 4:
			return 1<<32 + r.Uint64N(math.MaxUint64-1<<32)
		}
		return []uint64{0, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxUint64}[r.IntN(10)]
	}
	bytesOf := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	size := func() int { return []int{0, 1, 23, 24, 255, 256, 300, 70000}[r.IntN(8)] }
	text := func() string {
		b := bytesOf(size() % 1000)
		if r.IntN(2) == 0 {
			for i := range b {
				b[i] = 'a' + b[i]%26
			}
		}
		return string(b)
	}
	tx := &Transaction{Body: TxBody{
		Version:   uint16(num()),
		ChainID:   text(),
		Type:      TxType(num()),
		Timestamp: int64(num()),
		Nonce:     num(),
	}}
	if r.IntN(2) == 0 {
		tx.Body.Timestamp = -tx.Body.Timestamp - 1
	}
	switch r.IntN(3) {
	case 0: // nil
	case 1:
		tx.Body.Signers = []PublicKeyBytes{}
	default:
		tx.Body.Signers = make([]PublicKeyBytes, 1+r.IntN(30))
		for i := range tx.Body.Signers {
			copy(tx.Body.Signers[i][:], bytesOf(gm.PublicKeySize))
		}
	}
	copy(tx.Body.Entity.Sender[:], bytesOf(32))
	if r.IntN(2) == 0 {
		var a Address
		copy(a[:], bytesOf(32))
		tx.Body.Entity.Recipient = &a
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		tx.Body.Entity.Data = []byte{}
	default:
		tx.Body.Entity.Data = bytesOf(size())
	}
	if r.IntN(2) == 0 {
		tx.Body.Entity.Memo = text()
	}
	if r.IntN(2) == 0 {
		d := gm.Digest(bytesOf(32))
		tx.Body.PayloadDigest = &d
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		tx.Signatures = []gm.Signature{}
	default:
		tx.Signatures = make([]gm.Signature, 1+r.IntN(30))
		for i := range tx.Signatures {
			copy(tx.Signatures[i][:], bytesOf(gm.SignatureSize))
		}
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		tx.Payload = []byte{}
	default:
		tx.Payload = bytesOf(size())
	}
	return tx
}

func checkSameEncoding(t *testing.T, tx *Transaction) {
	t.Helper()
	g := genericOf(tx)
	want := genericMarshal(t, &g)
	for name, got := range map[string][]byte{
		"EncodeTx":       must(EncodeTx(tx)),
		"appendTx":       appendTx(nil, tx, true),
		"appendTxBounds": func() []byte { b, _ := appendTxBounds(nil, tx); return b }(),
	} {
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the generic encoder:\n got %.200x\nwant %.200x", name, got, want)
		}
	}
	wantBody := genericMarshal(t, &g.Body)
	if _, end := appendTxBounds(nil, tx); !bytes.Equal(want[txBodyStart:end], wantBody) {
		t.Fatal("appendTxBounds does not bound the body's encoding")
	}
	if got := appendTxBody(nil, &tx.Body); !bytes.Equal(got, wantBody) {
		t.Fatalf("body encoding differs:\n got %.200x\nwant %.200x", got, wantBody)
	}
	if tx.Body.ID() != gm.SM3(wantBody) {
		t.Fatal("TxBody.ID is not SM3 of the generic encoding")
	}
	bare := g
	bare.Payload = nil
	wantStored := genericMarshal(t, genericBlockBody{Txs: []genericTx{bare, bare}})
	if got := must(EncodeBody([]Transaction{*tx, *tx})); !bytes.Equal(got, wantStored) {
		t.Fatalf("EncodeBody differs:\n got %.200x\nwant %.200x", got, wantStored)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestTxEncodingMatchesGeneric: the fast encoder writes the generic
// encoder's bytes for random transactions of every shape.
func TestTxEncodingMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 800 {
		checkSameEncoding(t, randomTx(r))
	}
	checkSameEncoding(t, &Transaction{})
	if got := must(EncodeBody(nil)); !bytes.Equal(got, genericMarshal(t, genericBlockBody{})) {
		t.Fatalf("empty body %x", got)
	}
}

// FuzzTxEncoding: the fast encoder writes the generic encoder's bytes for
// transactions built from fuzzed fields.
func FuzzTxEncoding(f *testing.F) {
	f.Add(uint64(1), uint64(2), []byte("chain"), []byte("memo"), []byte{1, 2, 3}, uint8(0xff))
	f.Add(uint64(0), uint64(math.MaxUint64), []byte{0xff, 0xfe}, []byte{}, []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, seed1, seed2 uint64, chain, memo, data []byte, shape uint8) {
		tx := randomTx(rand.New(rand.NewPCG(seed1, seed2)))
		tx.Body.ChainID, tx.Body.Entity.Memo = string(chain), string(memo)
		tx.Body.Timestamp = int64(seed1 ^ seed2)
		if shape&1 != 0 {
			tx.Body.Entity.Data = data
		}
		if shape&2 != 0 {
			tx.Payload = data
		}
		if shape&4 != 0 {
			tx.Body.Entity.Recipient = nil
		}
		if shape&8 != 0 {
			tx.Body.PayloadDigest = nil
		}
		checkSameEncoding(t, tx)
	})
}

// TestDecodeTxBodyID: the id DecodeTx takes from the input's body bytes
// is the id computed from the decoded body.
func TestDecodeTxBodyID(t *testing.T) {
	key, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		tx := Transaction{Body: TxBody{
			Version: TxVersion, ChainID: "hallmark-test", Type: TxRecordPut, Timestamp: 1_700_000_000_000 + int64(i),
			Nonce: r.Uint64() >> (i % 64), Signers: []PublicKeyBytes{KeyBytes(key.PublicKey())},
			Entity: Entity{Sender: AddressOf(key.PublicKey()), Data: make([]byte, r.IntN(300)), Memo: string(make([]byte, i%3))},
		}}
		if i%2 == 0 {
			tx.Payload = make([]byte, r.IntN(3000))
			d := gm.SM3(tx.Payload)
			tx.Body.PayloadDigest = &d
		}
		if i%3 == 0 {
			a := Address{1}
			tx.Body.Entity.Recipient = &a
		}
		tx.Body.Entity.Memo = ""
		if err := tx.Sign(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		enc, err := EncodeTx(&tx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeTx(enc)
		if err != nil {
			t.Fatalf("decode %d: %v", i, err)
		}
		if got.ID() != got.Body.ID() || got.ID() != tx.Body.ID() {
			t.Fatalf("transaction %d: decoded id %s, body id %s", i, got.ID(), got.Body.ID())
		}
	}
}

// TestSignedDigest: the remembered signed digest is SM3(id ‖ signatures)
// and follows changes to the signatures and the body.
func TestSignedDigest(t *testing.T) {
	key, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tx := Transaction{Body: TxBody{Version: TxVersion, ChainID: "c", Type: TxRecordPut, Timestamp: 1,
		Signers: []PublicKeyBytes{KeyBytes(key.PublicKey())}, Entity: Entity{Sender: AddressOf(key.PublicKey())}}}
	if err := tx.Sign(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	enc, _ := EncodeTx(&tx)
	dec, err := DecodeTx(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := func(x *Transaction) gm.Digest {
		id := x.Body.ID()
		parts := [][]byte{id[:]}
		for i := range x.Signatures {
			parts = append(parts, x.Signatures[i][:])
		}
		return gm.SM3Concat(parts...)
	}
	for range 2 { // computed, then remembered
		if dec.SignedDigest() != want(dec) {
			t.Fatal("signed digest differs from SM3(id ‖ signatures)")
		}
	}
	altered := *dec
	altered.Signatures = []gm.Signature{dec.Signatures[0]}
	altered.Signatures[0][5] ^= 1
	if altered.SignedDigest() != want(&altered) || altered.SignedDigest() == dec.SignedDigest() {
		t.Fatal("an altered signature kept the signed digest")
	}
	if dec.SignedDigest() != want(dec) {
		t.Fatal("the original's signed digest changed after a copy's")
	}
	altered.Body.Nonce++
	if altered.SignedDigest() != want(&altered) {
		t.Fatal("a changed body kept the signed digest")
	}
}
