package tpm_test

import (
	"context"
	"testing"
	"time"

	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
)

func dial(t *testing.T, sim *swtpmtest.TPM) *tpm.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPersistentKeySignsAndSurvivesRestart(t *testing.T) {
	sim := swtpmtest.Start(t)
	c := dial(t, sim)
	ctx := context.Background()
	pub, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.OpenPersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey().Equal(pub) {
		t.Fatal("public key differs")
	}
	msg := []byte("hello")
	sig, err := k.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Verify(msg, sig) {
		t.Fatal("signature does not verify")
	}
	sim.Restart()
	sig, err = k.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Verify(msg, sig) {
		t.Fatal("signature does not verify")
	}
}
