package hsm_test

import (
	"context"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
)

func TestRotationStatementRejectsForgery(t *testing.T) {
	ctx := context.Background()
	old, _ := gm.GenerateKey(nil)
	next, _ := gm.GenerateKey(nil)
	st, err := hsm.SignRotation(ctx, hsm.RotationBody{ChainID: "c", Custody: hsm.KindTPM, Timestamp: 1}, old, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Verify(); err != nil {
		t.Fatal(err)
	}
	// The message carries the domain tag.
	msg, _ := st.Body.SignBytes()
	if string(msg[:len(hsm.RotationDomain)]) != hsm.RotationDomain {
		t.Fatal("signed bytes lack the domain tag")
	}
	mallory, _ := gm.GenerateKey(nil)
	forged := *st
	forged.Body.NewKey = ledger.KeyBytes(mallory.PublicKey())
	if err := forged.Verify(); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("substituted new key: %v", err)
	}
	swapped := *st
	swapped.OldSig, swapped.NewSig = st.NewSig, st.OldSig
	if err := swapped.Verify(); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("swapped signatures: %v", err)
	}
	if _, err := hsm.SignRotation(ctx, hsm.RotationBody{Custody: hsm.KindTPM, Timestamp: 1}, old, old); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("rotation to the same key: %v", err)
	}
	enc, _ := st.Marshal()
	if _, err := hsm.ParseRotation(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func FuzzParseRotation(f *testing.F) {
	old, _ := gm.GenerateKey(nil)
	next, _ := gm.GenerateKey(nil)
	st, _ := hsm.SignRotation(context.Background(), hsm.RotationBody{Custody: hsm.KindDev, Timestamp: 5, Reason: "r"}, old, next)
	enc, _ := st.Marshal()
	f.Add(enc)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := hsm.ParseRotation(b)
		if err != nil {
			return
		}
		if err := st.Verify(); err != nil {
			t.Fatalf("parsed statement fails verification: %v", err)
		}
	})
}
