package gm

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// marshalDERIntegers writes SEQUENCE { r INTEGER, s INTEGER }.
func marshalDERIntegers(r, s *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
}

// The byte-level encoder must give what the big.Int encoder gives, for
// every shape of integer: leading zero bytes, the top bit set (a 0x00 is
// prepended), the smallest and largest scalars; and both must refuse 0
// and values of n or more.
func TestSignatureDERMatchesBigIntEncoding(t *testing.T) {
	n := sm2.P256().Params().N
	if !bytes.Equal(n.FillBytes(make([]byte, coordinateSize)), curveOrder[:]) {
		t.Fatalf("curveOrder is not the SM2 order %x", n)
	}
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	values := []*big.Int{
		big.NewInt(1), big.NewInt(0x7F), big.NewInt(0x80), big.NewInt(0xFF), big.NewInt(0x100),
		new(big.Int).Lsh(big.NewInt(1), 255), new(big.Int).Lsh(big.NewInt(1), 247), nMinus1,
	}
	for range 200 {
		v, _ := rand.Int(rand.Reader, nMinus1)
		values = append(values, v.Add(v, big.NewInt(1)))
	}
	for i, r := range values {
		s := values[(i*7+3)%len(values)]
		var sig Signature
		r.FillBytes(sig[:coordinateSize])
		s.FillBytes(sig[coordinateSize:])
		got, err := sig.DER()
		if err != nil {
			t.Fatalf("r=%x s=%x: %v", r, s, err)
		}
		if want := marshalDERIntegers(r, s); !bytes.Equal(got, want) {
			t.Fatalf("r=%x s=%x: DER %x, want %x", r, s, got, want)
		}
		back, err := ParseDERSignature(got)
		if err != nil || back != sig {
			t.Fatalf("r=%x s=%x: round trip gives %x, %v", r, s, back, err)
		}
	}
	for name, bad := range map[string]*big.Int{"zero": big.NewInt(0), "n": n, "n+1": new(big.Int).Add(n, big.NewInt(1)), "2^256-1": new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))} {
		for _, first := range []bool{true, false} {
			var sig Signature
			one := big.NewInt(1)
			if first {
				bad.FillBytes(sig[:coordinateSize])
				one.FillBytes(sig[coordinateSize:])
			} else {
				one.FillBytes(sig[:coordinateSize])
				bad.FillBytes(sig[coordinateSize:])
			}
			if _, err := sig.DER(); !errors.Is(err, ErrSignature) {
				t.Errorf("%s as r=%v: DER error %v, want ErrSignature", name, first, err)
			}
		}
	}
}

// Digest with the remembered Z_A must equal gmsm's digest computed from
// scratch, on first and later use.
func TestDigestRemembersZA(t *testing.T) {
	for range 5 {
		k, err := GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ParsePublicKey(k.PublicKey().Bytes()) // a fresh key, no Z_A yet
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range [][]byte{nil, []byte("m"), bytes.Repeat([]byte{7}, 200)} {
			e, err := sm2.CalculateSM2Hash(pub.ECDSA(), msg, []byte(DefaultUID))
			if err != nil {
				t.Fatal(err)
			}
			want := Digest(e)
			for range 2 {
				if got := pub.Digest(msg); got != want {
					t.Fatalf("Digest %x, want %x", got, want)
				}
			}
			if other, _ := pub.DigestWithUID([]byte("another user id"), msg); other == want {
				t.Fatal("the user id does not change the digest")
			}
		}
	}
}
