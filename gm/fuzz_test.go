package gm

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"testing"
	"time"
)

// Fuzz targets for every parser that takes bytes from outside. Each must
// not panic, and what it accepts must be consistent: it re-encodes to the
// same bytes (fixed-format encodings) or to an equal value (ASN.1
// structures, where a re-encoding may legitimately differ in form).
//
// `go test` runs the seeds below as ordinary tests; `make fuzz` explores.

// fuzzFixtures holds valid encodings to seed the corpora with.
type fuzzFixtures struct {
	key     *PrivateKey
	sigDER  []byte
	pkix    []byte
	pkcs8   []byte
	cert    []byte
	csr     []byte
	ct      []byte
	foreign foreignMaterial
}

func newFuzzFixtures(f *testing.F) fuzzFixtures {
	f.Helper()
	ctx := context.Background()
	k := exampleKey(f)
	var fx fuzzFixtures
	fx.key = k
	var err error
	sig, err := k.Sign(ctx, []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	if fx.sigDER, err = sig.DER(); err != nil {
		f.Fatal(err)
	}
	if fx.pkix, err = k.PublicKey().MarshalPKIX(); err != nil {
		f.Fatal(err)
	}
	if fx.pkcs8, err = k.MarshalPKCS8(); err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	cert, err := CreateCertificate(ctx, &CertificateTemplate{
		Subject: pkix.Name{CommonName: "seed"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, MaxPathLen: -1, DNSNames: []string{"seed.hallmark"},
	}, k.PublicKey(), nil, k)
	if err != nil {
		f.Fatal(err)
	}
	fx.cert = cert.Raw()
	if fx.csr, err = CreateCertificateRequest(ctx, pkix.Name{CommonName: "seed"}, nil, k); err != nil {
		f.Fatal(err)
	}
	if fx.ct, err = k.PublicKey().Encrypt(nil, []byte("seed plaintext")); err != nil {
		f.Fatal(err)
	}
	fx.foreign = newForeignMaterial(f)
	return fx
}

func FuzzParsePublicKey(f *testing.F) {
	k := exampleKey(f)
	f.Add(k.PublicKey().Bytes())
	f.Add(k.PublicKey().Uncompressed())
	f.Add(mustKey(f).PublicKey().Uncompressed())
	f.Add(make([]byte, 64))
	f.Add(append([]byte{0x02}, k.PublicKey().Bytes()...))
	f.Add([]byte{0x04})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePublicKey(b)
		if err != nil {
			if p != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		switch len(b) {
		case PublicKeySize:
			if !bytes.Equal(p.Bytes(), b) {
				t.Fatalf("64-byte key re-encodes as %x", p.Bytes())
			}
		case UncompressedSize:
			if !bytes.Equal(p.Uncompressed(), b) {
				t.Fatalf("65-byte key re-encodes as %x", p.Uncompressed())
			}
		default:
			t.Fatalf("accepted a %d-byte key", len(b))
		}
		if p.ID() != KeyID(SM3(p.Bytes())) {
			t.Fatal("key id is not SM3 of the 64-byte form")
		}
		again, err := ParsePublicKey(p.Uncompressed())
		if err != nil || !again.Equal(p) {
			t.Fatalf("re-parse: %v", err)
		}
		der, err := p.MarshalPKIX()
		if err != nil {
			t.Fatal(err)
		}
		if viaPKIX, err := ParsePKIX(der); err != nil || !viaPKIX.Equal(p) {
			t.Fatalf("PKIX round trip: %v", err)
		}
	})
}

func FuzzParseDERSignature(f *testing.F) {
	fx := newFuzzFixtures(f)
	f.Add(fx.sigDER)
	example, _ := exampleSignature(f).DER()
	f.Add(example)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01})
	f.Add(fx.sigDER[:len(fx.sigDER)-1])
	f.Add(append(bytes.Clone(fx.sigDER), 0))
	pub := fx.key.PublicKey()
	f.Fuzz(func(t *testing.T, der []byte) {
		sig, err := ParseDERSignature(der)
		if err != nil {
			if sig != (Signature{}) {
				t.Fatal("non-zero signature returned with an error")
			}
			return
		}
		again, err := sig.DER()
		if err != nil {
			t.Fatalf("parsed signature does not re-encode: %v", err)
		}
		if !bytes.Equal(again, der) {
			t.Fatalf("accepted non-canonical DER %x (canonical %x)", der, again)
		}
		if raw, err := ParseSignature(sig[:]); err != nil || raw != sig {
			t.Fatalf("raw form not accepted: %v", err)
		}
		// Verification of an arbitrary well-formed signature must simply
		// answer; "seed" is what the fixture signed.
		_ = pub.Verify([]byte("seed"), sig)
	})
}

func FuzzParsePKIX(f *testing.F) {
	fx := newFuzzFixtures(f)
	f.Add(fx.pkix)
	f.Add(fx.foreign.pkix)
	f.Add(fx.pkix[:len(fx.pkix)/2])
	f.Add(fx.cert)
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := ParsePKIX(der)
		if err != nil {
			return
		}
		again, err := p.MarshalPKIX()
		if err != nil {
			t.Fatalf("parsed key does not marshal: %v", err)
		}
		back, err := ParsePKIX(again)
		if err != nil || !back.Equal(p) {
			t.Fatalf("re-encoding does not parse to the same key: %v", err)
		}
		if viaRaw, err := ParsePublicKey(p.Bytes()); err != nil || !viaRaw.Equal(p) {
			t.Fatalf("accepted a key the raw parser refuses: %v", err)
		}
	})
}

func FuzzParsePKCS8(f *testing.F) {
	fx := newFuzzFixtures(f)
	f.Add(fx.pkcs8)
	f.Add(fx.foreign.pkcs8)
	f.Add(fx.pkcs8[:len(fx.pkcs8)-3])
	f.Add(fx.pkix)
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParsePKCS8(der)
		if err != nil {
			return
		}
		// The key is internally consistent: its public half derives from
		// its scalar, whatever public key the encoding carried.
		fromScalar, err := NewPrivateKey(k.Bytes())
		if err != nil {
			t.Fatalf("accepted a scalar NewPrivateKey refuses: %v", err)
		}
		if !fromScalar.PublicKey().Equal(k.PublicKey()) {
			t.Fatal("public key does not derive from the private scalar")
		}
		again, err := k.MarshalPKCS8()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePKCS8(again)
		if err != nil || !bytes.Equal(back.Bytes(), k.Bytes()) {
			t.Fatalf("re-encoding does not parse to the same key: %v", err)
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	fx := newFuzzFixtures(f)
	f.Add(fx.cert)
	f.Add(fx.foreign.cert)
	f.Add(fx.cert[:len(fx.cert)-10])
	f.Add(fx.csr)
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseCertificate(der)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Raw(), der) {
			t.Fatal("Raw differs from the parsed bytes")
		}
		if c.PublicKey() == nil {
			t.Fatal("certificate without a public key")
		}
		if _, err := ParsePublicKey(c.PublicKey().Bytes()); err != nil {
			t.Fatalf("certificate key refused by the raw parser: %v", err)
		}
		again, err := ParseCertificate(c.Raw())
		if err != nil || again.Fingerprint() != c.Fingerprint() {
			t.Fatalf("re-parse: %v", err)
		}
		// Checking the self-signature and building a chain must answer
		// without panicking, whatever the certificate says.
		_ = c.CheckSignatureFrom(c)
		_, _ = VerifyChain(c, nil, []*Certificate{c}, c.NotBefore())
	})
}

func FuzzParseCertificateRequest(f *testing.F) {
	fx := newFuzzFixtures(f)
	f.Add(fx.csr)
	f.Add(fx.foreign.csr)
	f.Add(fx.csr[:len(fx.csr)-1])
	f.Add(fx.cert)
	f.Fuzz(func(t *testing.T, der []byte) {
		r, err := ParseCertificateRequest(der)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Raw, der) {
			t.Fatal("Raw differs from the parsed bytes")
		}
		again, err := ParseCertificateRequest(r.Raw)
		if err != nil || !again.PublicKey.Equal(r.PublicKey) || again.Subject.String() != r.Subject.String() {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	fx := newFuzzFixtures(f)
	v := sm2Example
	f.Add(append([]byte{0x04}, unhex(f, v.c1x+v.c1y+v.c3+v.c2)...))
	f.Add(fx.ct)
	f.Add(fx.ct[:UncompressedSize+DigestSize])
	f.Add(fx.ct[:UncompressedSize+DigestSize+1])
	f.Add([]byte{})
	key := fx.key // the published example key: both seeds decrypt
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := key.Decrypt(ct)
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		if len(pt) != len(ct)-UncompressedSize-DigestSize {
			t.Fatalf("%d-byte ciphertext decrypted to %d bytes", len(ct), len(pt))
		}
		if ct[0] != 0x04 {
			t.Fatalf("accepted C1 prefix 0x%02x", ct[0])
		}
	})
}

func FuzzOpenSM4GCM(f *testing.F) {
	v := sm4GCMVector
	key, iv, aad := unhex(f, v.key), unhex(f, v.iv), unhex(f, v.aad)
	sealed := append(append(bytes.Clone(iv), unhex(f, v.ciphertext)...), unhex(f, v.tag)...)
	f.Add(key, sealed, aad)
	f.Add(key, sealed[:GCMNonceSize+GCMTagSize], aad)
	f.Add(key, sealed, []byte{})
	f.Add(key[:15], sealed, aad)
	f.Fuzz(func(t *testing.T, key, sealed, aad []byte) {
		pt, err := OpenSM4GCM(key, sealed, aad)
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		if len(key) != SM4KeySize {
			t.Fatalf("opened with a %d-byte key", len(key))
		}
		// Sealing the plaintext again under the same nonce gives the input.
		again, err := SealSM4GCM(bytes.NewReader(sealed[:GCMNonceSize]), key, pt, aad)
		if err != nil || !bytes.Equal(again, sealed) {
			t.Fatalf("re-seal differs: %v", err)
		}
	})
}
