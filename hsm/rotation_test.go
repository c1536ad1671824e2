package hsm_test

import (
	"context"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

func TestRotationStatementRejectsForgery(t *testing.T) {
	ctx := context.Background()
	old, _ := gm.GenerateKey(nil)
	next, _ := gm.GenerateKey(nil)
	st, err := hsm.SignRotation(ctx, "c", "scheduled", 1, old, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	// The message carries the chain's domain tag for rotations.
	msg, _ := st.Statement.SignBytes()
	if string(msg[:len("hallmark/node-key-rotation/v1\x00")]) != "hallmark/node-key-rotation/v1\x00" {
		t.Fatal("signed bytes lack the domain tag")
	}
	enc, err := hsm.EncodeRotation(st)
	if err != nil {
		t.Fatal(err)
	}
	mallory, _ := gm.GenerateKey(nil)
	forged := *st
	forged.Statement.New = ledger.KeyBytes(mallory.PublicKey())
	fenc, _ := txs.Encode(&forged)
	if _, err := hsm.ParseRotation(fenc); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("substituted new key: %v", err)
	}
	swapped := *st
	swapped.OldSignature, swapped.NewSignature = st.NewSignature, st.OldSignature
	senc, _ := txs.Encode(&swapped)
	if _, err := hsm.ParseRotation(senc); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("swapped signatures: %v", err)
	}
	if _, err := hsm.SignRotation(ctx, "c", "", 1, old, old); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("rotation to the same key: %v", err)
	}
	if _, err := hsm.SignRotation(ctx, "", "", 1, old, next); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("rotation without a chain: %v", err)
	}
	if _, err := hsm.ParseRotation(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if got, err := hsm.ParseRotation(enc); err != nil || got.Statement != st.Statement {
		t.Fatalf("round trip: %v", err)
	}
}

func FuzzParseRotation(f *testing.F) {
	old, _ := gm.GenerateKey(nil)
	next, _ := gm.GenerateKey(nil)
	st, _ := hsm.SignRotation(context.Background(), "c", "r", 5, old, next)
	enc, _ := hsm.EncodeRotation(st)
	f.Add(enc)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := hsm.ParseRotation(b)
		if err != nil {
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("parsed statement fails verification: %v", err)
		}
		again, err := hsm.EncodeRotation(st)
		if err != nil || string(again) != string(b) {
			t.Fatal("accepted a statement that does not re-encode to itself")
		}
	})
}
