package gm

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	tjsm2 "github.com/tjfoc/gmsm/sm2"
)

// Benchmarks for gm and the references it is measured against. Run them all
// in one `go test -bench` invocation (tools/benchratio does) so the ratios
// compare figures taken on the same machine in the same state.
//
// Every signature benchmark works on the same 64-byte message and includes
// hashing it: SM2 computes e = SM3(Z_A ‖ M) inside Sign and Verify, so the
// ECDSA references hash with SHA-256 inside the loop too.

var benchMsg = []byte("hallmark/tx/v1\x00 0123456789abcdef0123456789abcdef0123456789ab")

func benchKey(b *testing.B) *PrivateKey {
	b.Helper()
	k, err := GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkSM2Sign(b *testing.B) {
	k := benchKey(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := k.Sign(ctx, benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2Verify(b *testing.B) {
	k := benchKey(b)
	sig, _ := k.Sign(context.Background(), benchMsg)
	pub := k.PublicKey()
	for b.Loop() {
		if !pub.Verify(benchMsg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkSM2VerifyParallel uses every core (GOMAXPROCS goroutines): the
// 2-core figure on the target machine.
func BenchmarkSM2VerifyParallel(b *testing.B) {
	k := benchKey(b)
	sig, _ := k.Sign(context.Background(), benchMsg)
	pub := k.PublicKey()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !pub.Verify(benchMsg, sig) {
				b.Error("verify failed")
				return
			}
		}
	})
}

func p256Key(b *testing.B) *ecdsa.PrivateKey {
	b.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkECDSAP256Sign(b *testing.B) {
	k := p256Key(b)
	for b.Loop() {
		h := sha256.Sum256(benchMsg)
		if _, err := ecdsa.SignASN1(rand.Reader, k, h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkECDSAP256Verify(b *testing.B) {
	k := p256Key(b)
	h := sha256.Sum256(benchMsg)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	for b.Loop() {
		h := sha256.Sum256(benchMsg)
		if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkECDSAP256VerifyParallel(b *testing.B) {
	k := p256Key(b)
	h := sha256.Sum256(benchMsg)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h := sha256.Sum256(benchMsg)
			if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
				b.Error("verify failed")
				return
			}
		}
	})
}

// The tjfoc/gmsm figures show what choosing emmansun/gmsm bought.

func BenchmarkTjfocSM2Sign(b *testing.B) {
	k, err := tjsm2.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := tjsm2.Sm2Sign(k, benchMsg, nil, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTjfocSM2Verify(b *testing.B) {
	k, err := tjsm2.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	r, s, err := tjsm2.Sm2Sign(k, benchMsg, nil, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !tjsm2.Sm2Verify(&k.PublicKey, benchMsg, nil, r, s) {
			b.Fatal("verify failed")
		}
	}
}

func benchData(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return data
}

func BenchmarkSM3_1KiB(b *testing.B) {
	data := benchData(1024)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		SM3(data)
	}
}

func BenchmarkSHA256_1KiB(b *testing.B) {
	data := benchData(1024)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// benchAEAD seals 16 KiB per iteration into a reused buffer.
func benchAEAD(b *testing.B, aead cipher.AEAD) {
	data := benchData(16 << 10)
	nonce := make([]byte, aead.NonceSize())
	out := make([]byte, 0, len(data)+aead.Overhead())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		out = aead.Seal(out[:0], nonce, data, nil)
	}
}

func BenchmarkSM4GCM_16KiB(b *testing.B) {
	aead, err := NewSM4GCM(benchData(SM4KeySize))
	if err != nil {
		b.Fatal(err)
	}
	benchAEAD(b, aead)
}

func BenchmarkAESGCM_16KiB(b *testing.B) {
	block, err := aes.NewCipher(benchData(16)) // AES-128: the same key size as SM4
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	benchAEAD(b, aead)
}
