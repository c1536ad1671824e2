package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
)

func TestTxRoundTripAndID(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: []byte("record"), Memo: "备注", Payload: []byte("scan of a certificate")})
	enc, err := ledger.EncodeTx(&tx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ledger.DecodeTx(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got.ID() != tx.ID() {
		t.Fatal("id changed across encode/decode")
	}
	if err := got.VerifySignatures(); err != nil {
		t.Fatalf("signature: %v", err)
	}
	// The id covers the body only: dropping the payload keeps it.
	stripped := tx.WithoutPayload()
	if stripped.ID() != tx.ID() {
		t.Fatal("payload changed the id")
	}
	// Any change to the body changes the id and breaks the signature.
	other := tx
	other.Body.Nonce++
	if other.ID() == tx.ID() {
		t.Fatal("nonce not covered by id")
	}
	if err := other.VerifySignatures(); !errors.Is(err, ledger.ErrSignature) {
		t.Fatalf("tampered body verified: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: []byte("x")})
	enc, _ := ledger.EncodeTx(&tx)

	t.Run("trailing bytes", func(t *testing.T) {
		if _, err := ledger.DecodeTx(append(append([]byte{}, enc...), 0x00)); err == nil {
			t.Fatal("accepted trailing byte")
		}
	})
	t.Run("non-canonical integer", func(t *testing.T) {
		// Re-encode with a non-shortest nonce: 0x1b (8-byte) for a small value.
		var m map[int]any
		if err := cbor.Unmarshal(enc, &m); err != nil {
			t.Fatal(err)
		}
		body, _ := cbor.Marshal(m[1])
		var bm map[int]cbor.RawMessage
		cbor.Unmarshal(body, &bm)
		bm[5] = cbor.RawMessage{0x1b, 0, 0, 0, 0, 0, 0, 0, 0} // nonce 0, 9 bytes
		m[1] = bm
		em, _ := cbor.CoreDetEncOptions().EncMode()
		bad, _ := em.Marshal(m)
		if _, err := ledger.DecodeTx(bad); !errors.Is(err, ledger.ErrNonCanonical) {
			t.Fatalf("want ErrNonCanonical, got %v", err)
		}
	})
	t.Run("unknown version", func(t *testing.T) {
		v := tx
		v.Body.Version = 2
		b, _ := ledger.EncodeTx(&v)
		if _, err := ledger.DecodeTx(b); !errors.Is(err, ledger.ErrUnknownVersion) {
			t.Fatalf("want ErrUnknownVersion, got %v", err)
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		var m map[int]cbor.RawMessage
		cbor.Unmarshal(enc, &m)
		m[9] = cbor.RawMessage{0x01}
		em, _ := cbor.CoreDetEncOptions().EncMode()
		bad, _ := em.Marshal(m)
		if _, err := ledger.DecodeTx(bad); err == nil {
			t.Fatal("accepted unknown field")
		}
	})
	t.Run("oversize data", func(t *testing.T) {
		v := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: make([]byte, ledger.MaxDataBytes+1)})
		b, _ := ledger.EncodeTx(&v)
		if _, err := ledger.DecodeTx(b); !errors.Is(err, ledger.ErrTooLarge) {
			t.Fatalf("want ErrTooLarge, got %v", err)
		}
	})
	t.Run("payload mismatch", func(t *testing.T) {
		v := ledgertest.Tx(t, key, ledgertest.TxOptions{Payload: []byte("abc")})
		v.Payload = []byte("abd")
		b, _ := ledger.EncodeTx(&v)
		if _, err := ledger.DecodeTx(b); !errors.Is(err, ledger.ErrMalformed) {
			t.Fatalf("want ErrMalformed, got %v", err)
		}
	})
	t.Run("short digest field", func(t *testing.T) {
		h := ledgertest.Block(t, 1, gm.SM3([]byte("p")), nil).Header
		var m map[int]cbor.RawMessage
		hb, _ := ledger.EncodeHeader(&h)
		cbor.Unmarshal(hb, &m)
		m[4] = cbor.RawMessage{0x42, 1, 2} // 2-byte previous hash
		em, _ := cbor.CoreDetEncOptions().EncMode()
		bad, _ := em.Marshal(m)
		if _, err := ledger.DecodeHeader(bad); err == nil {
			t.Fatal("accepted a 2-byte previous hash")
		}
	})
	t.Run("null list", func(t *testing.T) {
		b := ledgertest.Block(t, 1, gm.SM3([]byte("p")), nil)
		enc, _ := ledger.EncodeBlock(b)
		if enc[len(enc)-1] != 0x80 {
			t.Fatalf("empty transaction list not encoded as []: % x", enc[len(enc)-4:])
		}
		bad := append(append([]byte{}, enc[:len(enc)-1]...), 0xf6)
		if _, err := ledger.DecodeBlock(bad); err == nil {
			t.Fatal("accepted null for the transaction list")
		}
	})
}

func TestBlockBodyAndProofs(t *testing.T) {
	key := ledgertest.Key(t)
	txs := ledgertest.Txs(t, key, 13, 64)
	txs[3].Payload = []byte("payload")
	d := gm.SM3(txs[3].Payload)
	txs[3].Body.PayloadDigest = &d
	txs[3].Signatures = nil
	if err := txs[3].Sign(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	b := ledgertest.Block(t, 5, gm.SM3([]byte("parent")), txs)
	if err := b.CheckBody(); err != nil {
		t.Fatal(err)
	}
	enc, err := ledger.EncodeBlock(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ledger.DecodeBlock(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != b.ID() || !bytes.Equal(back.Txs[3].Payload, []byte("payload")) {
		t.Fatal("block changed across encode/decode")
	}
	body, _ := ledger.EncodeBody(b.Txs)
	stored, err := ledger.DecodeBody(body)
	if err != nil {
		t.Fatal(err)
	}
	if stored[3].Payload != nil {
		t.Fatal("stored body kept a payload")
	}
	for i := range b.Txs {
		p, err := b.ProveTx(i)
		if err != nil {
			t.Fatal(err)
		}
		id := b.Txs[i].ID()
		if err := p.Verify(b.Header.TxRoot, id[:]); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		other := b.Txs[(i+1)%len(b.Txs)].ID()
		if err := p.Verify(b.Header.TxRoot, other[:]); err == nil {
			t.Fatalf("proof %d verified another transaction", i)
		}
	}
	// A body that does not match the header is refused.
	b.Txs = b.Txs[:12]
	if err := b.CheckBody(); !errors.Is(err, ledger.ErrBodyMismatch) {
		t.Fatalf("want ErrBodyMismatch, got %v", err)
	}
}

func TestJSONFieldNames(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: []byte("d"), Memo: "m"})
	b := ledgertest.Block(t, 2, gm.SM3([]byte("p")), []ledger.Transaction{tx})
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		`"blockIdentity"`, `"blockHeight"`, `"blockVersion"`, `"previousBlockHash"`, `"merkleTreeRoot"`,
		`"blockTimestamp"`, `"transactionList"`, `"transactionId"`, `"transactionType":"record.put"`,
		`"signer"`, `"timestamp"`, `"sender"`, `"data"`, `"memo"`,
	} {
		if !bytes.Contains(out, []byte(name)) {
			t.Errorf("JSON lacks %s: %s", name, out)
		}
	}
	var back ledger.Block
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID() != b.ID() || back.Txs[0].ID() != tx.ID() {
		t.Fatal("JSON round trip changed ids")
	}
	tampered := bytes.Replace(out, []byte(`"blockHeight":2`), []byte(`"blockHeight":3`), 1)
	if err := json.Unmarshal(tampered, &back); err == nil {
		t.Fatal("JSON with a blockIdentity that does not match was accepted")
	}
}

func TestStateRoot(t *testing.T) {
	g := ledger.GenesisStateRoot("c")
	w1 := []ledger.Write{{Key: []byte("b"), Value: []byte("2")}, {Key: []byte("a"), Value: []byte("1")}}
	w2 := []ledger.Write{{Key: []byte("a"), Value: []byte("0")}, {Key: []byte("b"), Value: []byte("2")}, {Key: []byte("a"), Value: []byte("1")}}
	r1, err := ledger.NextStateRoot(g, w1)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := ledger.NextStateRoot(g, w2)
	if r1 != r2 {
		t.Fatal("same effective writes gave different roots")
	}
	r3, _ := ledger.NextStateRoot(g, []ledger.Write{{Key: []byte("a"), Value: []byte("1")}})
	if r3 == r1 {
		t.Fatal("different writes gave the same root")
	}
	r4, _ := ledger.NextStateRoot(g, []ledger.Write{{Key: []byte("a"), Delete: true}, {Key: []byte("b"), Value: []byte("2")}})
	if r4 == r1 {
		t.Fatal("delete and write gave the same root")
	}
	if _, err := ledger.NextStateRoot(g, []ledger.Write{{Value: []byte("x")}}); err == nil {
		t.Fatal("empty key accepted")
	}
}

// The id is remembered at decode and sign time; changing the body
// afterwards, even through a slice shared with the decoded value, must
// still give the id of the new content.
func TestTxIDFollowsBodyChanges(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: []byte("abc")})
	enc, _ := ledger.EncodeTx(&tx)
	got, err := ledger.DecodeTx(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := got.Body.ID()
	if got.ID() != want {
		t.Fatal("remembered id differs from the body's")
	}
	changes := []func(b *ledger.TxBody){
		func(b *ledger.TxBody) { b.Nonce++ },
		func(b *ledger.TxBody) { b.Entity.Data[0] ^= 1 },
		func(b *ledger.TxBody) { b.Signers[0][3] ^= 1 },
		func(b *ledger.TxBody) { b.Entity.Memo = "m" },
		func(b *ledger.TxBody) { r := ledger.Address{1}; b.Entity.Recipient = &r },
		func(b *ledger.TxBody) { d := gm.SM3(nil); b.PayloadDigest = &d },
	}
	for i, change := range changes {
		c, _ := ledger.DecodeTx(enc)
		change(&c.Body)
		if c.ID() == want || c.ID() != c.Body.ID() {
			t.Errorf("change %d: id did not follow the body", i)
		}
	}
	// A copy made before a change keeps the old id.
	c, _ := ledger.DecodeTx(enc)
	copied := *c
	c.Body.Nonce++
	if copied.ID() != want {
		t.Fatal("copy lost its id")
	}
}

// The signer keys remembered with the id are used only while the body is
// unchanged: a signer replaced after decoding is parsed (and refused if it
// is no point) and verified as it is now.
func TestRememberedSignersFollowTheBody(t *testing.T) {
	key, _ := gm.GenerateKey(nil)
	other, _ := gm.GenerateKey(nil)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: []byte("d")})
	enc, _ := ledger.EncodeTx(&tx)

	c, err := ledger.DecodeTx(enc)
	if err != nil || c.Validate() != nil || c.VerifySignatures() != nil {
		t.Fatalf("decoded transaction: %v, %v, %v", err, c.Validate(), c.VerifySignatures())
	}
	c.Body.Signers[0] = ledger.PublicKeyBytes(other.PublicKey().Array())
	if err := c.VerifySignatures(); err == nil {
		t.Fatal("signature verified under the remembered signer after the body changed")
	}
	c.Body.Signers[0][0] ^= 0xff // most likely no longer a point
	if _, perr := c.Body.Signers[0].Parse(); perr != nil && c.Validate() == nil {
		t.Fatal("a signer that does not parse passed Validate after the body changed")
	}
}

// BenchmarkTxValidate: Validate of a decoded transaction (signers parsed
// once at decode) against one whose signers are parsed on every call.
func BenchmarkTxValidate(b *testing.B) {
	key, _ := gm.GenerateKey(nil)
	tx, _ := ledgertest.NewTx(key, ledgertest.TxOptions{Data: make([]byte, 256)})
	enc, _ := ledger.EncodeTx(&tx)
	decoded, _ := ledger.DecodeTx(enc)
	plain := ledger.Transaction{Body: decoded.Body, Signatures: decoded.Signatures}
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			if err := decoded.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parsed", func(b *testing.B) {
		for b.Loop() {
			if err := plain.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTxID(b *testing.B) {
	key, _ := gm.GenerateKey(nil)
	tx, _ := ledgertest.NewTx(key, ledgertest.TxOptions{Data: make([]byte, 256)})
	enc, _ := ledger.EncodeTx(&tx)
	decoded, _ := ledger.DecodeTx(enc)
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			_ = decoded.ID()
		}
	})
	b.Run("computed", func(b *testing.B) {
		for b.Loop() {
			_ = decoded.Body.ID()
		}
	})
}
