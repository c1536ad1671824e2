package gm

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjsm3 "github.com/tjfoc/gmsm/sm3"
	tjsm4 "github.com/tjfoc/gmsm/sm4"
	tjx509 "github.com/tjfoc/gmsm/x509"
)

// Interoperability with github.com/tjfoc/gmsm v1.4.1, the SM library many
// deployed SDKs sign with. It is a test-only dependency: nothing outside
// this file imports it. Every check runs in both directions.

func toTjfocPublic(p *PublicKey) *tjsm2.PublicKey {
	xy := p.Bytes()
	return &tjsm2.PublicKey{
		Curve: tjsm2.P256Sm2(),
		X:     new(big.Int).SetBytes(xy[:32]),
		Y:     new(big.Int).SetBytes(xy[32:]),
	}
}

func toTjfocPrivate(k *PrivateKey) *tjsm2.PrivateKey {
	return &tjsm2.PrivateKey{
		PublicKey: *toTjfocPublic(k.PublicKey()),
		D:         new(big.Int).SetBytes(k.Bytes()),
	}
}

// fromTjfocPoint parses a tjfoc (or certificate) public key through gm's
// strict 64-byte parser.
func fromTjfocPoint(t testing.TB, x, y *big.Int) *PublicKey {
	t.Helper()
	xy := make([]byte, PublicKeySize)
	x.FillBytes(xy[:32])
	y.FillBytes(xy[32:])
	p, err := ParsePublicKey(xy)
	if err != nil {
		t.Fatalf("tjfoc public key rejected by gm: %v", err)
	}
	return p
}

func newTjfocKey(t testing.TB) *tjsm2.PrivateKey {
	t.Helper()
	k, err := tjsm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leadingZero reports whether r or s has a zero first byte, the case where
// DER integer lengths and fixed-width encodings differ.
func leadingZero(sig Signature) bool { return sig[0] == 0 || sig[32] == 0 }

func TestTjfocVerifiesGMSignatures(t *testing.T) {
	ctx := context.Background()
	uid := []byte("kiosk-0042@hallmark")
	for i := range 8 {
		k, err := GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := toTjfocPublic(k.PublicKey())
		msg := []byte("record " + string(rune('a'+i)))

		sig, err := k.Sign(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := sig.DER()
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Verify(msg, der) {
			t.Fatalf("tjfoc rejects gm's DER signature (default uid)")
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !tjsm2.Sm2Verify(pub, msg, nil, r, s) {
			t.Fatalf("tjfoc Sm2Verify rejects gm's signature (default uid)")
		}
		if tjsm2.Sm2Verify(pub, append(msg, '!'), nil, r, s) {
			t.Fatalf("tjfoc accepts gm's signature for another message")
		}

		custom, err := k.SignWithUID(nil, uid, msg)
		if err != nil {
			t.Fatal(err)
		}
		r, s = new(big.Int).SetBytes(custom[:32]), new(big.Int).SetBytes(custom[32:])
		if !tjsm2.Sm2Verify(pub, msg, uid, r, s) {
			t.Fatalf("tjfoc rejects gm's signature with a custom uid")
		}
		if tjsm2.Sm2Verify(pub, msg, nil, r, s) {
			t.Fatalf("tjfoc accepts a custom-uid signature under the default uid")
		}

		// Both libraries compute the same e = SM3(Z_A ‖ M).
		for _, u := range [][]byte{nil, uid} {
			theirs, err := pub.Sm3Digest(msg, u)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := k.PublicKey().DigestWithUID(u, msg)
			if err != nil {
				t.Fatal(err)
			}
			// tjfoc trims leading zeros (big.Int.Bytes); compare as numbers.
			if new(big.Int).SetBytes(theirs).Cmp(new(big.Int).SetBytes(ours[:])) != 0 {
				t.Fatalf("e differs for uid %q: tjfoc %x, gm %x", u, theirs, ours)
			}
		}
	}

	// A signature whose r or s starts with a zero byte: its DER integers are
	// shorter than 32 bytes. Sign until one turns up (1 in 128 on average).
	k, _ := GenerateKey(nil)
	pub := toTjfocPublic(k.PublicKey())
	msg := []byte("short integer")
	for range 5000 {
		sig, err := k.Sign(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !leadingZero(sig) {
			continue
		}
		der, _ := sig.DER()
		if !pub.Verify(msg, der) {
			t.Fatalf("tjfoc rejects gm's signature with a short integer: %x", der)
		}
		return
	}
	t.Fatal("no signature with a leading zero byte in 5000 tries")
}

func TestGMVerifiesTjfocSignatures(t *testing.T) {
	uid := []byte("kiosk-0042@hallmark")
	sawShort := false
	for i := 0; i < 8 || (!sawShort && i < 3000); i++ {
		tk := newTjfocKey(t)
		pub := fromTjfocPoint(t, tk.X, tk.Y)
		msg := []byte("tjfoc record")

		der, err := tk.Sign(rand.Reader, msg, nil) // default uid, DER
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ParseDERSignature(der)
		if err != nil {
			t.Fatalf("gm cannot parse tjfoc's DER signature %x: %v", der, err)
		}
		if again, _ := sig.DER(); !bytes.Equal(again, der) {
			t.Fatalf("DER re-encoding differs: tjfoc %x, gm %x", der, again)
		}
		sawShort = sawShort || leadingZero(sig)
		if i >= 8 {
			// Extra rounds only hunt for a short integer; verifying them
			// all would add nothing.
			if leadingZero(sig) && !pub.Verify(msg, sig) {
				t.Fatalf("gm rejects tjfoc's signature with a short integer: %x", der)
			}
			continue
		}
		if !pub.Verify(msg, sig) {
			t.Fatal("gm rejects tjfoc's signature (default uid)")
		}
		if pub.Verify([]byte("tjfoc recorD"), sig) {
			t.Fatal("gm accepts tjfoc's signature for another message")
		}

		r, s, err := tjsm2.Sm2Sign(tk, msg, uid, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var custom Signature
		r.FillBytes(custom[:32])
		s.FillBytes(custom[32:])
		if !pub.VerifyWithUID(uid, msg, custom) {
			t.Fatal("gm rejects tjfoc's signature with a custom uid")
		}
		if pub.Verify(msg, custom) {
			t.Fatal("gm accepts a custom-uid signature under the default uid")
		}
	}
	if !sawShort {
		t.Fatal("no tjfoc signature with a leading zero byte turned up")
	}
}

// tjfoc draws its nonce as k = (b mod (n-1)) + 1 from 40 random bytes b, so
// feeding it b = k-1 reproduces the GB/T 32918.5 examples exactly: proof
// that the reference library and the published numbers agree, which is what
// makes the interop checks above meaningful.
func tjfocNonceReader(t testing.TB, k string) *bytes.Reader {
	kb := new(big.Int).SetBytes(unhex(t, k))
	b := make([]byte, 40)
	kb.Sub(kb, big.NewInt(1)).FillBytes(b)
	return bytes.NewReader(b)
}

func TestTjfocReproducesPublishedExamples(t *testing.T) {
	v := sm2Example
	tk := toTjfocPrivate(exampleKey(t))

	r, s, err := tjsm2.Sm2Sign(tk, []byte(v.msg), []byte(v.uid), tjfocNonceReader(t, v.k))
	if err != nil {
		t.Fatal(err)
	}
	var sig Signature
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	if sig != exampleSignature(t) {
		t.Fatalf("tjfoc signature with the published k = %x, want r=%s s=%s", sig, v.r, v.s)
	}

	ct, err := tjsm2.Encrypt(&tk.PublicKey, []byte(v.encMsg), tjfocNonceReader(t, v.k), tjsm2.C1C3C2)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x04}, unhex(t, v.c1x+v.c1y+v.c3+v.c2)...)
	if !bytes.Equal(ct, want) {
		t.Fatalf("tjfoc ciphertext with the published k =\n%x\nwant\n%x", ct, want)
	}
}

func TestTjfocPublicKeys(t *testing.T) {
	k, _ := GenerateKey(nil)
	pub := k.PublicKey()

	// 65-byte uncompressed, gm → tjfoc → gm.
	tp, err := tjx509.ReadPublicKeyFromHex(hex.EncodeToString(pub.Uncompressed()))
	if err != nil {
		t.Fatal(err)
	}
	if !fromTjfocPoint(t, tp.X, tp.Y).Equal(pub) {
		t.Fatal("65-byte key changed on the way to tjfoc")
	}
	back, err := ParsePublicKey(unhex(t, tjx509.WritePublicKeyToHex(tp)))
	if err != nil || !back.Equal(pub) {
		t.Fatalf("tjfoc's 65-byte encoding does not parse back: %v", err)
	}

	// PKIX SubjectPublicKeyInfo, both ways, and the bytes agree.
	ours, err := pub.MarshalPKIX()
	if err != nil {
		t.Fatal(err)
	}
	tp2, err := tjx509.ParseSm2PublicKey(ours)
	if err != nil {
		t.Fatalf("tjfoc cannot parse gm's PKIX: %v", err)
	}
	if !fromTjfocPoint(t, tp2.X, tp2.Y).Equal(pub) {
		t.Fatal("PKIX key changed on the way to tjfoc")
	}
	theirs, err := tjx509.MarshalSm2PublicKey(toTjfocPublic(pub))
	if err != nil {
		t.Fatal(err)
	}
	back, err = ParsePKIX(theirs)
	if err != nil || !back.Equal(pub) {
		t.Fatalf("gm cannot parse tjfoc's PKIX: %v", err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Fatalf("PKIX encodings differ:\ngm    %x\ntjfoc %x", ours, theirs)
	}

	// PEM.
	tpem, err := tjx509.WritePublicKeyToPem(toTjfocPublic(pub))
	if err != nil {
		t.Fatal(err)
	}
	if back, err = ParsePKIXPEM(tpem); err != nil || !back.Equal(pub) {
		t.Fatalf("gm cannot parse tjfoc's public PEM: %v", err)
	}
	gpem, _ := pub.MarshalPKIXPEM()
	if tp3, err := tjx509.ReadPublicKeyFromPem(gpem); err != nil || !fromTjfocPoint(t, tp3.X, tp3.Y).Equal(pub) {
		t.Fatalf("tjfoc cannot parse gm's public PEM: %v", err)
	}
}

// Unencrypted PKCS#8 works both ways. (emmansun's encrypted PKCS#8 is not
// readable by tjfoc; gm does not offer encrypted PKCS#8, so that is not
// tested here.)
func TestTjfocPKCS8(t *testing.T) {
	k, _ := GenerateKey(nil)
	der, err := k.MarshalPKCS8()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tjx509.ParsePKCS8UnecryptedPrivateKey(der)
	if err != nil {
		t.Fatalf("tjfoc cannot parse gm's PKCS#8: %v", err)
	}
	if tk.D.Cmp(new(big.Int).SetBytes(k.Bytes())) != 0 || !fromTjfocPoint(t, tk.X, tk.Y).Equal(k.PublicKey()) {
		t.Fatal("PKCS#8 key changed on the way to tjfoc")
	}

	tk2 := newTjfocKey(t)
	tpem, err := tjx509.WritePrivateKeyToPem(tk2, nil)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePKCS8PEM(tpem)
	if err != nil {
		t.Fatalf("gm cannot parse tjfoc's PKCS#8 PEM: %v", err)
	}
	if new(big.Int).SetBytes(k2.Bytes()).Cmp(tk2.D) != 0 || !k2.PublicKey().Equal(fromTjfocPoint(t, tk2.X, tk2.Y)) {
		t.Fatal("PKCS#8 key changed on the way from tjfoc")
	}
}

func TestTjfocCiphertexts(t *testing.T) {
	k, _ := GenerateKey(nil)
	tk := toTjfocPrivate(k)
	for _, n := range []int{1, 16, 32, 33, 100, 1000} {
		msg := make([]byte, n)
		rand.Read(msg)

		ct, err := k.PublicKey().Encrypt(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := tjsm2.Decrypt(tk, ct, tjsm2.C1C3C2)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("%d bytes: tjfoc cannot decrypt gm's C1C3C2: %v", n, err)
		}

		tct, err := tjsm2.Encrypt(&tk.PublicKey, msg, rand.Reader, tjsm2.C1C3C2)
		if err != nil {
			t.Fatal(err)
		}
		pt, err = k.Decrypt(tct)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("%d bytes: gm cannot decrypt tjfoc's C1C3C2: %v", n, err)
		}

		// The other splicing order must not be mistaken for C1C3C2.
		c123, err := tjsm2.Encrypt(&tk.PublicKey, msg, rand.Reader, tjsm2.C1C2C3)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := k.Decrypt(c123); err == nil {
			t.Fatalf("%d bytes: gm decrypted a C1C2C3 ciphertext as C1C3C2 (%x)", n, pt)
		}
	}
	// tjfoc's ASN.1 form is refused rather than guessed at: gm speaks C1C3C2.
	asn1ct, err := tjsm2.EncryptAsn1(&tk.PublicKey, []byte("data key 16 byte"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decrypt(asn1ct); err == nil {
		t.Fatal("gm accepted an ASN.1 ciphertext")
	}
}

func TestTjfocSM3(t *testing.T) {
	data := make([]byte, 4096)
	rand.Read(data)
	for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4096} {
		want := tjsm3.Sm3Sum(data[:n])
		if got := SM3(data[:n]); !bytes.Equal(got[:], want) {
			t.Fatalf("%d bytes: gm %x, tjfoc %x", n, got, want)
		}
		theirs, ours := tjsm3.New(), NewSM3()
		for _, part := range [][]byte{data[:n/3], data[n/3 : n/2], data[n/2 : n]} {
			theirs.Write(part)
			ours.Write(part)
		}
		if a, b := ours.Sum(nil), theirs.Sum(nil); !bytes.Equal(a, want) || !bytes.Equal(b, want) {
			t.Fatalf("%d bytes streaming: gm %x, tjfoc %x, want %x", n, a, b, want)
		}
	}
}

func TestTjfocSM4Block(t *testing.T) {
	key := make([]byte, SM4KeySize)
	for range 16 {
		rand.Read(key)
		ours, err := newSM4Block(key)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := tjsm4.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		src := make([]byte, 16)
		rand.Read(src)
		a, b := make([]byte, 16), make([]byte, 16)
		ours.Encrypt(a, src)
		theirs.Encrypt(b, src)
		if !bytes.Equal(a, b) {
			t.Fatalf("SM4 encrypt differs: gm %x, tjfoc %x", a, b)
		}
		theirs.Decrypt(b, a)
		if !bytes.Equal(b, src) {
			t.Fatal("tjfoc cannot decrypt gm's SM4 block")
		}
	}
}

// Standard GCM built from tjfoc's SM4 block interoperates with gm's
// SM4-GCM: a tjfoc user who wants SM4-GCM should wrap the block this way
// (see the next test for why not tjfoc's own Sm4GCM).
func TestTjfocBlockInStandardGCM(t *testing.T) {
	key, _ := NewSM4Key(nil)
	block, err := tjsm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	msg, aad := []byte("payload confidential to two readers"), []byte("tx-id")
	sealed, err := SealSM4GCM(nil, key, msg, aad)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := theirs.Open(nil, sealed[:GCMNonceSize], sealed[GCMNonceSize:], aad)
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("tjfoc block + cipher.NewGCM cannot open gm's SM4-GCM: %v", err)
	}
	nonce := make([]byte, GCMNonceSize)
	rand.Read(nonce)
	theirSealed := theirs.Seal(bytes.Clone(nonce), nonce, msg, aad)
	if pt, err := OpenSM4GCM(key, theirSealed, aad); err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("gm cannot open SM4-GCM made with tjfoc's block: %v", err)
	}
}

// KNOWN INCOMPATIBILITY, documented rather than worked around: tjfoc's
// Sm4GCM is not standard GCM. On the RFC 8998 vector it produces a tag that
// differs from the published one, so data sealed with it cannot be opened by
// gm (or any standard implementation). This test fails if that ever stops
// being true, so the note in PLATFORM-NOTES can be corrected.
func TestTjfocSm4GCMIsNotStandardGCM(t *testing.T) {
	v := sm4GCMVector
	key, iv, aad := unhex(t, v.key), unhex(t, v.iv), unhex(t, v.aad)
	pt, ct, tag := unhex(t, v.plaintext), unhex(t, v.ciphertext), unhex(t, v.tag)
	gotCT, gotTag, err := tjsm4.Sm4GCM(key, iv, pt, aad, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tjfoc Sm4GCM on RFC 8998 A.1: ciphertext matches: %v, tag matches: %v",
		bytes.Equal(gotCT, ct), bytes.Equal(gotTag, tag))
	if bytes.Equal(gotCT, ct) && bytes.Equal(gotTag, tag) {
		t.Fatal("tjfoc Sm4GCM now matches RFC 8998: update PLATFORM-NOTES and test interop instead")
	}
}

func TestTjfocCertificates(t *testing.T) {
	now := time.Now()
	t.Run("tjfoc issues, gm verifies", func(t *testing.T) {
		rootKey, leafKey := newTjfocKey(t), newTjfocKey(t)
		rootTmpl := &tjx509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "tjfoc root", Organization: []string{"interop"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			KeyUsage:              tjx509.KeyUsageCertSign | tjx509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			SignatureAlgorithm:    tjx509.SM2WithSM3,
		}
		rootDER, err := tjx509.CreateCertificate(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		tjRoot, err := tjx509.ParseCertificate(rootDER)
		if err != nil {
			t.Fatal(err)
		}
		leafTmpl := &tjx509.Certificate{
			SerialNumber:          big.NewInt(2),
			Subject:               pkix.Name{CommonName: "tjfoc leaf"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(12 * time.Hour),
			KeyUsage:              tjx509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []tjx509.ExtKeyUsage{tjx509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			DNSNames:              []string{"kiosk.example"},
			SignatureAlgorithm:    tjx509.SM2WithSM3,
		}
		leafDER, err := tjx509.CreateCertificate(leafTmpl, tjRoot, &leafKey.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}

		root, err := ParseCertificate(rootDER)
		if err != nil {
			t.Fatalf("gm cannot parse tjfoc's root: %v", err)
		}
		leaf, err := ParseCertificate(leafDER)
		if err != nil {
			t.Fatalf("gm cannot parse tjfoc's leaf: %v", err)
		}
		if !root.IsCA() || leaf.IsCA() || leaf.Subject().CommonName != "tjfoc leaf" {
			t.Fatal("certificate fields lost")
		}
		if !leaf.PublicKey().Equal(fromTjfocPoint(t, leafKey.X, leafKey.Y)) {
			t.Fatal("leaf key differs")
		}
		if err := leaf.CheckSignatureFrom(root); err != nil {
			t.Fatal(err)
		}
		chain, err := VerifyChain(leaf, nil, []*Certificate{root}, now)
		if err != nil || len(chain) != 2 {
			t.Fatalf("gm cannot verify tjfoc's chain: %v", err)
		}
		// A leaf signed by another key does not chain.
		other := newTjfocKey(t)
		forged, err := tjx509.CreateCertificate(leafTmpl, tjRoot, &leafKey.PublicKey, other)
		if err != nil {
			t.Fatal(err)
		}
		fc, err := ParseCertificate(forged)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyChain(fc, nil, []*Certificate{root}, now); err == nil {
			t.Fatal("gm verified a leaf signed by the wrong key")
		}
	})

	t.Run("gm issues, tjfoc verifies", func(t *testing.T) {
		ctx := context.Background()
		rootKey, interKey, leafKey := mustKey(t), mustKey(t), mustKey(t)
		root, err := CreateCertificate(ctx, &CertificateTemplate{
			Subject: pkix.Name{CommonName: "gm root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign,
		}, rootKey.PublicKey(), nil, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		inter, err := CreateCertificate(ctx, &CertificateTemplate{
			Subject: pkix.Name{CommonName: "gm intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, MaxPathLen: 0, KeyUsage: x509.KeyUsageCertSign,
		}, interKey.PublicKey(), root, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := CreateCertificate(ctx, &CertificateTemplate{
			Subject: pkix.Name{CommonName: "gm leaf"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: []string{"node-1.hallmark"},
		}, leafKey.PublicKey(), inter, interKey)
		if err != nil {
			t.Fatal(err)
		}

		parse := func(c *Certificate) *tjx509.Certificate {
			tc, err := tjx509.ParseCertificate(c.Raw())
			if err != nil {
				t.Fatalf("tjfoc cannot parse gm's %q: %v", c.Subject().CommonName, err)
			}
			if tc.SignatureAlgorithm != tjx509.SM2WithSM3 {
				t.Fatalf("tjfoc sees signature algorithm %v", tc.SignatureAlgorithm)
			}
			return tc
		}
		tRoot, tInter, tLeaf := parse(root), parse(inter), parse(leaf)
		if err := tInter.CheckSignatureFrom(tRoot); err != nil {
			t.Fatalf("tjfoc: intermediate not signed by root: %v", err)
		}
		if err := tLeaf.CheckSignatureFrom(tInter); err != nil {
			t.Fatalf("tjfoc: leaf not signed by intermediate: %v", err)
		}
		if err := tLeaf.CheckSignatureFrom(tRoot); err == nil {
			t.Fatal("tjfoc: leaf verified against the wrong issuer")
		}
		ek, ok := tLeaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || !fromTjfocPoint(t, ek.X, ek.Y).Equal(leafKey.PublicKey()) {
			t.Fatalf("tjfoc sees leaf key %T", tLeaf.PublicKey)
		}

		roots, inters := tjx509.NewCertPool(), tjx509.NewCertPool()
		roots.AddCert(tRoot)
		inters.AddCert(tInter)
		chains, err := tLeaf.Verify(tjx509.VerifyOptions{
			DNSName: "node-1.hallmark", Roots: roots, Intermediates: inters, CurrentTime: now,
			KeyUsages: []tjx509.ExtKeyUsage{tjx509.ExtKeyUsageAny},
		})
		if err != nil || len(chains) != 1 || len(chains[0]) != 3 {
			t.Fatalf("tjfoc cannot verify gm's chain: %v (%d chains)", err, len(chains))
		}
		if _, err := tLeaf.Verify(tjx509.VerifyOptions{
			Roots: roots, Intermediates: inters, CurrentTime: now.Add(2 * time.Hour),
			KeyUsages: []tjx509.ExtKeyUsage{tjx509.ExtKeyUsageAny},
		}); err == nil {
			t.Fatal("tjfoc verified an expired leaf")
		}
	})

	t.Run("certificate requests", func(t *testing.T) {
		// tjfoc requests, gm parses and checks the signature.
		tk := newTjfocKey(t)
		der, err := tjx509.CreateCertificateRequest(rand.Reader, &tjx509.CertificateRequest{
			Subject:            pkix.Name{CommonName: "tjfoc kiosk"},
			SignatureAlgorithm: tjx509.SM2WithSM3,
		}, tk)
		if err != nil {
			t.Fatal(err)
		}
		req, err := ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("gm cannot parse tjfoc's request: %v", err)
		}
		if req.Subject.CommonName != "tjfoc kiosk" || !req.PublicKey.Equal(fromTjfocPoint(t, tk.X, tk.Y)) {
			t.Fatal("request fields lost")
		}

		// gm requests (with an extension), tjfoc parses and checks it.
		k := mustKey(t)
		ext := pkix.Extension{Id: []int{1, 3, 6, 1, 4, 1, 99999, 1}, Value: []byte{0x04, 0x02, 0xbe, 0xef}}
		der, err = CreateCertificateRequest(context.Background(), pkix.Name{CommonName: "gm node"}, []pkix.Extension{ext}, k)
		if err != nil {
			t.Fatal(err)
		}
		treq, err := tjx509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("tjfoc cannot parse gm's request: %v", err)
		}
		if err := treq.CheckSignature(); err != nil {
			t.Fatalf("tjfoc rejects gm's request signature: %v", err)
		}
		found := false
		for _, e := range treq.Extensions {
			found = found || (e.Id.Equal(ext.Id) && bytes.Equal(e.Value, ext.Value))
		}
		if !found {
			t.Fatal("tjfoc does not see the request extension")
		}
	})
}

func mustKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
