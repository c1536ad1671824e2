package kiosk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/netstack/kiosk"
)

func TestDelegation(t *testing.T) {
	ctx := context.Background()
	node, _ := gm.GenerateKey(nil)
	other, _ := gm.GenerateKey(nil)
	receipt, _ := gm.GenerateKey(nil)
	now := time.UnixMilli(1767225600000)
	d, err := kiosk.SignDelegation(ctx, node, "hallmark-example", receipt.PublicKey(), now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := kiosk.ParseDelegation(enc)
	if err != nil {
		t.Fatal(err)
	}
	key, err := parsed.Verify(node.PublicKey(), "hallmark-example", now)
	if err != nil {
		t.Fatal(err)
	}
	if key.ID() != receipt.PublicKey().ID() {
		t.Fatal("delegated key differs")
	}

	cases := map[string]func() error{
		"other node":  func() error { _, err := parsed.Verify(other.PublicKey(), "hallmark-example", now); return err },
		"other chain": func() error { _, err := parsed.Verify(node.PublicKey(), "hallmark-other", now); return err },
		"expired": func() error {
			_, err := parsed.Verify(node.PublicKey(), "hallmark-example", now.Add(2*time.Hour))
			return err
		},
		"early": func() error {
			_, err := parsed.Verify(node.PublicKey(), "hallmark-example", now.Add(-time.Hour))
			return err
		},
		"tampered key": func() error {
			c := *parsed
			c.Body.ReceiptKey[5] ^= 1
			_, err := c.Verify(node.PublicKey(), "hallmark-example", now)
			return err
		},
		"forged by another key": func() error {
			f, err := kiosk.SignDelegation(ctx, other, "hallmark-example", receipt.PublicKey(), now.Add(-time.Minute), now.Add(time.Hour))
			if err != nil {
				return nil
			}
			f.Body.Node = parsed.Body.Node
			_, err = f.Verify(node.PublicKey(), "hallmark-example", now)
			return err
		},
	}
	for name, f := range cases {
		if err := f(); !errors.Is(err, kiosk.ErrDelegation) {
			t.Errorf("%s: %v, want ErrDelegation", name, err)
		}
	}
	if _, err := kiosk.ParseDelegation(append(enc, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func FuzzParseDelegation(f *testing.F) {
	node, _ := gm.GenerateKey(nil)
	d, _ := kiosk.SignDelegation(context.Background(), node, "c", node.PublicKey(), time.UnixMilli(1), time.UnixMilli(2))
	enc, _ := d.Encode()
	f.Add(enc)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := kiosk.ParseDelegation(b)
		if err != nil {
			return
		}
		again, err := d.Encode()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs")
		}
		_, _ = d.Verify(node.PublicKey(), "c", time.UnixMilli(1))
	})
}
