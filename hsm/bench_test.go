package hsm_test

import (
	"context"
	"path/filepath"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
)

// BenchmarkSign measures one signature per backend: consensus budgets one
// signature per block per node from these figures. "software" is gm's
// in-memory key, the floor every backend is compared with.
func BenchmarkSign(b *testing.B) {
	sim := swtpmtest.Start(b)
	ctx := context.Background()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	dir := b.TempDir()
	opts := hsm.Options{TPMConn: c, Passphrase: []byte("p"), DevKDF: cheapKDF}
	refs := []struct{ name, ref string }{
		{"tpm", "tpm:handle=auto"},
		{"tpm-blob", "tpm:blob=" + filepath.Join(dir, "k.tpmkey")},
		{"tpm-sealed", "tpm-sealed:" + filepath.Join(dir, "k.sealed")},
		{"dev", "dev:" + filepath.Join(dir, "k.dev")},
	}
	msg := []byte("hallmark/vote/v1\x00 a block id and a round")
	soft, _ := gm.GenerateKey(nil)
	b.Run("software", func(b *testing.B) {
		for b.Loop() {
			if _, err := soft.Sign(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, r := range refs {
		s, err := hsm.Generate(ctx, r.ref, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(r.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Sign(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}

// BenchmarkUnseal measures opening a tpm-sealed key: loading the sealed
// object under a re-derived SRK, a PolicyPCR session and TPM2_Unseal. A
// node pays it once at start, not per signature.
func BenchmarkUnseal(b *testing.B) {
	sim := swtpmtest.Start(b)
	ctx := context.Background()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ref := "tpm-sealed:" + filepath.Join(b.TempDir(), "k.sealed")
	opts := hsm.Options{TPMConn: c}
	s, err := hsm.Generate(ctx, ref, opts)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	b.Run("tpm-sealed", func(b *testing.B) {
		for b.Loop() {
			s, err := hsm.Open(ctx, ref, opts)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}
