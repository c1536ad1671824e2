package kiosk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/ledger/ledgertest"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Nonce: 7, Data: []byte("record"), Memo: "hall 3"})
	dg, err := Encode(&tx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dg) > MaxDatagramSize {
		t.Fatalf("datagram of %d bytes", len(dg))
	}
	h, d, err := Decode(dg)
	if err != nil {
		t.Fatal(err)
	}
	if h.TxID != tx.ID() || d.Tx.ID() != tx.ID() {
		t.Fatalf("id: header %s, decoded %s, want %s", h.TxID, d.Tx.ID(), tx.ID())
	}
	if h.KeyID != ShortKeyID(key.PublicKey().ID().Short()) || d.SenderKeyID() != key.PublicKey().ID() {
		t.Fatalf("key id %s", h.KeyID)
	}
	if h.Timestamp != uint64(tx.Body.Timestamp) || int(h.Length) != len(dg) {
		t.Fatalf("header %+v", h)
	}
	if err := d.Tx.VerifySignatures(); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Data: make([]byte, MaxDatagramSize)})
	if _, err := Encode(&tx); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// TestDecodeRejects mutates one header field at a time and checks that
// Decode names the mismatch with the right reason code.
func TestDecodeRejects(t *testing.T) {
	key := ledgertest.Key(t)
	tx := ledgertest.Tx(t, key, ledgertest.TxOptions{Nonce: 1})
	good, err := Encode(&tx)
	if err != nil {
		t.Fatal(err)
	}
	other := ledgertest.Tx(t, ledgertest.Key(t), ledgertest.TxOptions{Nonce: 1})
	otherDG, err := Encode(&other)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		err    error
		reason Reason
	}{
		{"short", func(b []byte) []byte { return b[:HeaderSize-1] }, ErrHeader, ReasonBadBody},
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, ErrHeader, ReasonBadBody},
		{"version", func(b []byte) []byte { b[offVersion] = 2; return b }, ErrVersion, ReasonVersion},
		{"flags", func(b []byte) []byte { b[offFlags] = 1; return b }, ErrHeader, ReasonBadBody},
		{"length field", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[offLength:], uint16(len(b)+1))
			return b
		}, ErrLength, ReasonLength},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrLength, ReasonLength},
		{"header only", func(b []byte) []byte {
			b = b[:HeaderSize]
			binary.BigEndian.PutUint16(b[offLength:], HeaderSize)
			return b
		}, ErrLength, ReasonLength},
		{"tx id", func(b []byte) []byte { b[offTxID] ^= 0x80; return b }, ErrTxIDMismatch, ReasonTxIDMismatch},
		{"key id", func(b []byte) []byte { b[offKeyID] ^= 0x80; return b }, ErrKeyIDMismatch, ReasonKeyIDMismatch},
		{"timestamp", func(b []byte) []byte { b[offTimestamp+7]++; return b }, ErrTimestampMismatch, ReasonTimestampMismatch},
		{"body byte", func(b []byte) []byte { b[HeaderSize] ^= 0xff; return b }, ErrBody, ReasonBadBody},
		{"other body", func(b []byte) []byte {
			return append(b[:HeaderSize:HeaderSize], otherDG[HeaderSize:]...)
		}, ErrTxIDMismatch, ReasonTxIDMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dg := c.mutate(bytes.Clone(good))
			_, d, err := Decode(dg)
			if !errors.Is(err, c.err) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			if d != nil {
				t.Fatal("datagram returned with an error")
			}
			if r := ReasonOf(err); r != c.reason {
				t.Fatalf("reason %s, want %s", r, c.reason)
			}
		})
	}
}

func TestReceiptSignVerify(t *testing.T) {
	node := ledgertest.Key(t)
	r := Receipt{
		TxID:           gm.SM3([]byte("tx")),
		DatagramDigest: gm.SM3([]byte("datagram")),
		Status:         StatusRejected,
		Reason:         AppReason(42),
		Timestamp:      1_700_000_000_123,
	}
	b, err := SignReceipt(context.Background(), node, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ReceiptSize {
		t.Fatalf("receipt of %d bytes", len(b))
	}
	got, err := VerifyReceipt(b, node.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r.NodeKeyID = ShortKeyID(node.PublicKey().ID().Short())
	if got != r {
		t.Fatalf("got %+v, want %+v", got, r)
	}
	if code, ok := got.Reason.IsApp(); !ok || code != 42 {
		t.Fatalf("app reason %d %v", code, ok)
	}
	if _, err := VerifyReceipt(b, ledgertest.Key(t).PublicKey()); !errors.Is(err, ErrReceipt) {
		t.Fatalf("other key: %v", err)
	}
	for i := range receiptSigned {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := VerifyReceipt(bad, node.PublicKey()); err == nil {
			t.Fatalf("flipping byte %d still verifies", i)
		}
	}
	if !got.Answers(r.TxID, r.DatagramDigest) || got.Answers(r.TxID, gm.SM3([]byte("other"))) {
		t.Fatal("a rejection must answer exactly the datagram it names")
	}
	acc := Receipt{TxID: r.TxID, Status: StatusAccepted}
	if !acc.Answers(r.TxID, gm.SM3([]byte("other"))) {
		t.Fatal("an acceptance answers any copy of the transaction")
	}
}

func TestReceiptRejectsInconsistentStatus(t *testing.T) {
	node := ledgertest.Key(t)
	for _, r := range []Receipt{
		{Status: StatusAccepted, Reason: ReasonBusy},
		{Status: StatusRejected},
		{Status: 9},
	} {
		if _, err := SignReceipt(context.Background(), node, r); !errors.Is(err, ErrReceipt) {
			t.Fatalf("%+v: got %v", r, err)
		}
	}
}

func TestAppReasonRange(t *testing.T) {
	if AppReason(0x7fff) != 0xffff || AppReason(0x9000) != 0xffff || AppReason(0) != ReasonAppBase {
		t.Fatal("application reasons must stay in 0x8000..0xFFFF")
	}
	if _, ok := ReasonBusy.IsApp(); ok {
		t.Fatal("ingress reason classed as application")
	}
}

func FuzzDecode(f *testing.F) {
	key, err := gm.NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	tx, err := ledgertest.NewTx(key, ledgertest.TxOptions{Data: []byte("x")})
	if err != nil {
		f.Fatal(err)
	}
	dg, err := Encode(&tx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(dg)
	f.Add(dg[:HeaderSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, d, err := Decode(b)
		if err != nil {
			if d != nil {
				t.Fatal("datagram with error")
			}
			_ = ReasonOf(err)
			return
		}
		if d.Tx.ID() != h.TxID || int(h.Length) != len(b) {
			t.Fatal("accepted a datagram whose header does not match")
		}
		again, err := Encode(d.Tx)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

func FuzzParseReceipt(f *testing.F) {
	node, err := gm.NewPrivateKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		f.Fatal(err)
	}
	b, err := SignReceipt(context.Background(), node, Receipt{Status: StatusAccepted})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, sig, err := ParseReceipt(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AssembleReceipt(r, sig), b) {
			t.Fatal("parse/assemble is not the identity")
		}
	})
}
