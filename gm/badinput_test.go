package gm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"
)

// Bad input returns an error (or false from a Verify), never a panic. The
// fuzz targets in fuzz_test.go explore the same parsers at random; these
// tests pin the cases that matter by name.

// curveN returns the order n of the SM2 curve, read from a key's curve.
func curveN(t testing.TB) *big.Int {
	return mustKey(t).PublicKey().ECDSA().Curve.Params().N
}

// scalarBytes renders x as 32 big-endian bytes.
func scalarBytes(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }

func sigFrom(r, s *big.Int) Signature {
	var sig Signature
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

func TestBadRawSignatures(t *testing.T) {
	n := curveN(t)
	one, nMinus1 := big.NewInt(1), new(big.Int).Sub(n, big.NewInt(1))
	nPlus1 := new(big.Int).Add(n, big.NewInt(1))
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

	for _, size := range []int{0, 1, 32, 63, 65, 72} {
		if _, err := ParseSignature(make([]byte, size)); !errors.Is(err, ErrSignature) {
			t.Errorf("ParseSignature(%d bytes): err = %v, want ErrSignature", size, err)
		}
	}
	cases := []struct {
		name string
		r, s *big.Int
	}{
		{"r zero", new(big.Int), one},
		{"s zero", one, new(big.Int)},
		{"both zero", new(big.Int), new(big.Int)},
		{"r = n", n, one},
		{"s = n", one, n},
		{"r = n+1", nPlus1, one},
		{"s = n+1", one, nPlus1},
		{"all ones", max, max},
	}
	k := mustKey(t)
	msg := []byte("m")
	for _, c := range cases {
		sig := sigFrom(c.r, c.s)
		if _, err := ParseSignature(sig[:]); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: ParseSignature err = %v, want ErrSignature", c.name, err)
		}
		if _, err := sig.DER(); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: DER err = %v, want ErrSignature", c.name, err)
		}
		if k.PublicKey().Verify(msg, sig) || k.PublicKey().VerifyDigest(Digest{}, sig) ||
			k.PublicKey().VerifyWithUID([]byte("u"), msg, sig) {
			t.Errorf("%s: Verify accepted it", c.name)
		}
	}
	// The range boundaries themselves are well-formed.
	for _, sig := range []Signature{sigFrom(one, one), sigFrom(nMinus1, nMinus1)} {
		if _, err := ParseSignature(sig[:]); err != nil {
			t.Errorf("ParseSignature(%x): %v", sig, err)
		}
		der, err := sig.DER()
		if err != nil {
			t.Errorf("DER(%x): %v", sig, err)
		}
		if back, err := ParseDERSignature(der); err != nil || back != sig {
			t.Errorf("DER round trip of %x: %v", sig, err)
		}
	}
}

func TestBadDERSignatures(t *testing.T) {
	k := mustKey(t)
	sig, _ := k.Sign(context.Background(), []byte("m"))
	good, _ := sig.DER()
	n := curveN(t)

	// Every proper prefix of a valid encoding is rejected.
	for i := range len(good) {
		if _, err := ParseDERSignature(good[:i]); !errors.Is(err, ErrSignature) {
			t.Fatalf("prefix of %d bytes: err = %v", i, err)
		}
	}
	intBytes := func(x *big.Int) []byte { // DER INTEGER content of a positive x
		b := x.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	seq := func(parts ...[]byte) []byte {
		var body []byte
		for _, p := range parts {
			body = append(body, p...)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	integer := func(content []byte) []byte { return append([]byte{0x02, byte(len(content))}, content...) }
	one := integer([]byte{1})

	cases := map[string][]byte{
		"empty":               nil,
		"trailing byte":       append(bytes.Clone(good), 0),
		"SET not SEQUENCE":    append([]byte{0x31}, good[1:]...),
		"one integer":         seq(one),
		"three integers":      seq(one, one, one),
		"octet string":        seq([]byte{0x04, 1, 1}, one),
		"r zero":              seq(integer([]byte{0}), one),
		"s zero":              seq(one, integer([]byte{0})),
		"r negative":          seq(integer([]byte{0xff}), one),
		"s negative":          seq(one, integer([]byte{0x80})),
		"r not minimal":       seq(integer([]byte{0, 1}), one),
		"s empty integer":     seq(one, []byte{0x02, 0}),
		"r = n":               seq(integer(intBytes(n)), one),
		"s = n":               seq(one, integer(intBytes(n))),
		"s = 2^256":           seq(one, integer(append([]byte{1}, make([]byte, 32)...))),
		"long-form length":    append([]byte{0x30, 0x81, byte(len(good) - 2)}, good[2:]...),
		"indefinite length":   append(append([]byte{0x30, 0x80}, good[2:]...), 0, 0),
		"length too long":     append([]byte{0x30, byte(len(good))}, good[2:]...),
		"raw 64 bytes as DER": sig[:],
	}
	for name, der := range cases {
		got, err := ParseDERSignature(der)
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: ParseDERSignature = %x, %v; want ErrSignature", name, got, err)
		}
	}
	if _, err := ParseDERSignature(seq(one, one)); err != nil {
		t.Errorf("r = s = 1 is well-formed: %v", err)
	}
}

func TestBadPublicKeys(t *testing.T) {
	k := mustKey(t)
	good := k.PublicKey().Uncompressed()

	for _, size := range []int{0, 1, 32, 33, 63, 66, 128} {
		if _, err := ParsePublicKey(make([]byte, size)); !errors.Is(err, ErrPublicKey) {
			t.Errorf("%d bytes: err = %v, want ErrPublicKey", size, err)
		}
	}
	offCurve := bytes.Clone(good)
	offCurve[64] ^= 1
	p256 := elliptic.P256().Params()
	cases := map[string][]byte{
		"infinity, 64 zero bytes":     make([]byte, 64),
		"infinity, 0x04 and zeros":    append([]byte{0x04}, make([]byte, 64)...),
		"infinity, SEC 1 single zero": {0x00},
		"compressed 0x02 prefix":      append([]byte{0x02}, good[1:]...),
		"compressed 0x03 prefix":      append([]byte{0x03}, good[1:]...),
		"hybrid 0x06 prefix":          append([]byte{0x06}, good[1:]...),
		"compressed 33-byte form":     append([]byte{0x02 | good[64]&1}, good[1:33]...),
		"point not on curve":          offCurve,
		"not on curve, 64 bytes":      offCurve[1:],
		"NIST P-256 generator":        append(scalarBytes(p256.Gx), scalarBytes(p256.Gy)...),
		"x = p":                       append(scalarBytes(k.PublicKey().ECDSA().Curve.Params().P), good[33:]...),
		"all 0xff":                    bytes.Repeat([]byte{0xff}, 64),
	}
	for name, b := range cases {
		if p, err := ParsePublicKey(b); !errors.Is(err, ErrPublicKey) {
			t.Errorf("%s: ParsePublicKey = %v, %v; want ErrPublicKey", name, p, err)
		}
	}

	// Keys held in the standard library's type.
	curve := k.PublicKey().ECDSA().Curve
	xy := k.PublicKey().Bytes()
	x, y := new(big.Int).SetBytes(xy[:32]), new(big.Int).SetBytes(xy[32:])
	ecCases := map[string]*ecdsa.PublicKey{
		"nil":             nil,
		"nil coordinates": {Curve: curve},
		"off curve":       {Curve: curve, X: x, Y: new(big.Int).Add(y, big.NewInt(1))},
		"infinity":        {Curve: curve, X: new(big.Int), Y: new(big.Int)},
		"NIST P-256 key":  {Curve: elliptic.P256(), X: p256.Gx, Y: p256.Gy},
	}
	for name, ek := range ecCases {
		if _, err := PublicKeyFromECDSA(ek); !errors.Is(err, ErrPublicKey) {
			t.Errorf("%s: PublicKeyFromECDSA err = %v, want ErrPublicKey", name, err)
		}
	}
	if p, err := PublicKeyFromECDSA(&ecdsa.PublicKey{Curve: curve, X: x, Y: y}); err != nil || !p.Equal(k.PublicKey()) {
		t.Errorf("valid key in ecdsa form: %v", err)
	}

	// A zero or nil PublicKey verifies nothing and does not panic.
	sig, _ := k.Sign(context.Background(), []byte("m"))
	var nilKey *PublicKey
	if nilKey.Verify([]byte("m"), sig) || (&PublicKey{}).Verify([]byte("m"), sig) ||
		nilKey.VerifyDigest(Digest{}, sig) || (&PublicKey{}).VerifyWithUID(nil, []byte("m"), sig) {
		t.Error("nil or zero PublicKey verified a signature")
	}
	if nilKey.Equal(k.PublicKey()) || k.PublicKey().Equal(nil) {
		t.Error("Equal with nil is true")
	}
}

func TestBadPrivateKeys(t *testing.T) {
	n := curveN(t)
	sub := func(d int64) []byte { return scalarBytes(new(big.Int).Sub(n, big.NewInt(d))) }
	for _, size := range []int{0, 1, 31, 33, 64} {
		if _, err := NewPrivateKey(make([]byte, size)); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%d bytes: err = %v, want ErrPrivateKey", size, err)
		}
	}
	cases := map[string][]byte{
		"zero":     make([]byte, 32),
		"n-1":      sub(1), // d = n-1 has no inverse of d+1
		"n":        sub(0),
		"n+1":      scalarBytes(new(big.Int).Add(n, big.NewInt(1))),
		"all 0xff": bytes.Repeat([]byte{0xff}, 32),
	}
	for name, d := range cases {
		if _, err := NewPrivateKey(d); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%s: NewPrivateKey err = %v, want ErrPrivateKey", name, err)
		}
	}
	// The ends of the valid range [1, n-2] work and sign.
	for _, d := range [][]byte{scalarBytes(big.NewInt(1)), sub(2)} {
		k, err := NewPrivateKey(d)
		if err != nil {
			t.Fatalf("d = %x rejected: %v", d, err)
		}
		sig, err := k.Sign(context.Background(), []byte("edge"))
		if err != nil || !k.PublicKey().Verify([]byte("edge"), sig) {
			t.Fatalf("d = %x: sign/verify failed: %v", d, err)
		}
	}
	// A cancelled context stops Sign.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mustKey(t).Sign(ctx, []byte("m")); !errors.Is(err, context.Canceled) {
		t.Errorf("Sign with a cancelled context: err = %v", err)
	}
}

func TestBadUserIDs(t *testing.T) {
	k := mustKey(t)
	long := make([]byte, 8192) // ENTL_A is 16 bits of bit count: 8191 bytes at most
	if _, err := k.PublicKey().DigestWithUID(long, []byte("m")); err == nil {
		t.Error("8192-byte uid accepted")
	}
	if _, err := k.SignWithUID(nil, long, []byte("m")); err == nil {
		t.Error("SignWithUID with an 8192-byte uid succeeded")
	}
	sig, _ := k.Sign(context.Background(), []byte("m"))
	if k.PublicKey().VerifyWithUID(long, []byte("m"), sig) {
		t.Error("VerifyWithUID with an 8192-byte uid is true")
	}
	// An empty uid means the default one.
	if !k.PublicKey().VerifyWithUID(nil, []byte("m"), sig) {
		t.Error("empty uid does not mean the default uid")
	}
}

func TestBadCiphertexts(t *testing.T) {
	k := mustKey(t)
	good, err := k.PublicKey().Encrypt(nil, []byte("sixteen byte key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.PublicKey().Encrypt(nil, nil); err == nil {
		t.Error("Encrypt of an empty message succeeded")
	}
	// Every prefix, including empty and C1 ‖ C3 without C2, is refused.
	for i := range len(good) {
		if pt, err := k.Decrypt(good[:i]); err == nil {
			t.Fatalf("prefix of %d bytes decrypted to %x", i, pt)
		}
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	cases := map[string][]byte{
		"C1 off curve":        flip(64),
		"C1 x changed":        flip(1),
		"C3 changed":          flip(65),
		"C2 changed":          flip(len(good) - 1),
		"compressed C1":       append([]byte{0x02 | good[64]&1}, good[1:33]...),
		"C1 at infinity":      append(append([]byte{0x04}, make([]byte, 64)...), good[65:]...),
		"prefix 0x00":         append([]byte{0x00}, good[1:]...),
		"97 zero bytes + one": make([]byte, 98),
		"random":              randomBytes(t, len(good)),
	}
	for name, ct := range cases {
		if pt, err := k.Decrypt(ct); err == nil {
			t.Errorf("%s: decrypted to %x", name, pt)
		}
	}
	if pt, err := k.Decrypt(good); err != nil || string(pt) != "sixteen byte key" {
		t.Fatalf("the untouched ciphertext no longer decrypts: %v", err)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadSM4GCM(t *testing.T) {
	key, _ := NewSM4Key(nil)
	sealed, err := SealSM4GCM(nil, key, []byte("payload"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range GCMNonceSize + GCMTagSize {
		if _, err := OpenSM4GCM(key, sealed[:i], []byte("aad")); err == nil {
			t.Fatalf("%d-byte input opened", i)
		}
	}
	for i := range len(sealed) {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x40
		if _, err := OpenSM4GCM(key, bad, []byte("aad")); !errors.Is(err, ErrOpen) {
			t.Fatalf("byte %d tampered: err = %v, want ErrOpen", i, err)
		}
	}
	if _, err := OpenSM4GCM(key, sealed[:len(sealed)-1], []byte("aad")); !errors.Is(err, ErrOpen) {
		t.Errorf("truncated tag: err = %v", err)
	}
	if _, err := OpenSM4GCM(key, append(bytes.Clone(sealed), 0), []byte("aad")); !errors.Is(err, ErrOpen) {
		t.Errorf("extended ciphertext: err = %v", err)
	}
	other, _ := NewSM4Key(nil)
	if _, err := OpenSM4GCM(other, sealed, []byte("aad")); !errors.Is(err, ErrOpen) {
		t.Errorf("wrong key: err = %v", err)
	}
	if _, err := OpenSM4GCM(key[:15], sealed, nil); err == nil {
		t.Error("15-byte key accepted by Open")
	}
	if _, err := SealSM4GCM(nil, make([]byte, 32), []byte("x"), nil); err == nil {
		t.Error("32-byte key accepted by Seal")
	}
	if _, err := SealSM4GCM(bytes.NewReader([]byte{1, 2, 3}), key, []byte("x"), nil); err == nil {
		t.Error("Seal succeeded with a nonce source that ran dry")
	}
	// An empty plaintext seals to nonce ‖ tag and opens again.
	empty, err := SealSM4GCM(nil, key, nil, nil)
	if err != nil || len(empty) != GCMNonceSize+GCMTagSize {
		t.Fatalf("sealing nothing: %d bytes, %v", len(empty), err)
	}
	if pt, err := OpenSM4GCM(key, empty, nil); err != nil || len(pt) != 0 {
		t.Fatalf("opening nothing: %x, %v", pt, err)
	}
}

// foreignMaterial returns DER made by the standard library for a NIST P-256
// key: well-formed, but not SM2, so every gm parser must refuse it.
type foreignMaterial struct {
	pkcs8, pkix, cert, csr []byte
}

func newForeignMaterial(t testing.TB) foreignMaterial {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var f foreignMaterial
	if f.pkcs8, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
		t.Fatal(err)
	}
	if f.pkix, err = x509.MarshalPKIXPublicKey(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "p256"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	if f.cert, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key); err != nil {
		t.Fatal(err)
	}
	if f.csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tmpl.Subject}, key); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBadEncodedKeys(t *testing.T) {
	k := mustKey(t)
	pkcs8, _ := k.MarshalPKCS8()
	spki, _ := k.PublicKey().MarshalPKIX()
	foreign := newForeignMaterial(t)

	for i := range len(pkcs8) {
		if _, err := ParsePKCS8(pkcs8[:i]); !errors.Is(err, ErrPrivateKey) {
			t.Fatalf("PKCS#8 prefix of %d bytes: err = %v", i, err)
		}
	}
	for i := range len(spki) {
		if _, err := ParsePKIX(spki[:i]); !errors.Is(err, ErrPublicKey) {
			t.Fatalf("PKIX prefix of %d bytes: err = %v", i, err)
		}
	}
	if _, err := ParsePKCS8(foreign.pkcs8); !errors.Is(err, ErrPrivateKey) {
		t.Errorf("P-256 PKCS#8: err = %v", err)
	}
	if _, err := ParsePKIX(foreign.pkix); !errors.Is(err, ErrPublicKey) {
		t.Errorf("P-256 PKIX: err = %v", err)
	}
	if _, err := ParsePKCS8(append(bytes.Clone(pkcs8), 0)); !errors.Is(err, ErrPrivateKey) {
		t.Errorf("PKCS#8 with a trailing byte: err = %v", err)
	}
	if _, err := ParsePKIX(append(bytes.Clone(spki), 0)); !errors.Is(err, ErrPublicKey) {
		t.Errorf("PKIX with a trailing byte: err = %v", err)
	}
	// A PKIX key whose point is off the curve.
	off := bytes.Clone(spki)
	off[len(off)-1] ^= 1
	if _, err := ParsePKIX(off); !errors.Is(err, ErrPublicKey) {
		t.Errorf("PKIX point off the curve: err = %v", err)
	}

	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	pemCases := map[string][]byte{
		"empty":            nil,
		"not PEM":          []byte("-----BEGIN nonsense"),
		"garbage body":     block("PRIVATE KEY", []byte("garbage")),
		"wrong type":       block("EC PRIVATE KEY", pkcs8),
		"encrypted type":   block("ENCRYPTED PRIVATE KEY", pkcs8),
		"public key block": block("PUBLIC KEY", spki),
		"P-256 key":        block("PRIVATE KEY", foreign.pkcs8),
	}
	for name, data := range pemCases {
		if _, err := ParsePKCS8PEM(data); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("ParsePKCS8PEM(%s): err = %v", name, err)
		}
	}
	pubPEMCases := map[string][]byte{
		"empty":             nil,
		"garbage body":      block("PUBLIC KEY", []byte("garbage")),
		"wrong type":        block("RSA PUBLIC KEY", spki),
		"private key block": block("PRIVATE KEY", pkcs8),
		"P-256 key":         block("PUBLIC KEY", foreign.pkix),
	}
	for name, data := range pubPEMCases {
		if _, err := ParsePKIXPEM(data); !errors.Is(err, ErrPublicKey) {
			t.Errorf("ParsePKIXPEM(%s): err = %v", name, err)
		}
	}
}

func TestBadCertificates(t *testing.T) {
	ctx := context.Background()
	k := mustKey(t)
	now := time.Now()
	tmpl := &CertificateTemplate{Subject: pkix.Name{CommonName: "n"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true}
	cert, err := CreateCertificate(ctx, tmpl, k.PublicKey(), nil, k)
	if err != nil {
		t.Fatal(err)
	}
	raw := cert.Raw()
	foreign := newForeignMaterial(t)

	for i := range len(raw) {
		if _, err := ParseCertificate(raw[:i]); !errors.Is(err, ErrCertificate) {
			t.Fatalf("certificate prefix of %d bytes: err = %v", i, err)
		}
	}
	for name, der := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("not a certificate"),
		"trailing byte":  append(bytes.Clone(raw), 0),
		"P-256 ECDSA":    foreign.cert,
		"a CSR":          foreign.csr,
		"a PKIX key":     foreign.pkix,
		"random 64 byte": randomBytes(t, 64),
	} {
		if _, err := ParseCertificate(der); !errors.Is(err, ErrCertificate) {
			t.Errorf("ParseCertificate(%s): err = %v", name, err)
		}
	}

	// A leaf whose signature was tampered with parses (parsing does not
	// check signatures) but never chains to its issuer. (A root is a trust
	// anchor: x509 does not check a root's self-signature, so tampering
	// with the root itself would prove nothing.)
	leafKey := mustKey(t)
	leaf, err := CreateCertificate(ctx, &CertificateTemplate{
		Subject: pkix.Name{CommonName: "leaf"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}, leafKey.PublicKey(), cert, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(leaf, nil, []*Certificate{cert}, now); err != nil {
		t.Fatalf("untampered leaf: %v", err)
	}
	parsed := 0
	for _, back := range []int{1, 5, 20} {
		bad := leaf.Raw()
		bad[len(bad)-back] ^= 1
		tampered, err := ParseCertificate(bad)
		if err != nil {
			continue // unparseable is a fine outcome too
		}
		parsed++
		if _, err := VerifyChain(tampered, nil, []*Certificate{cert}, now); err == nil {
			t.Errorf("leaf with signature byte -%d flipped verified", back)
		}
		if err := tampered.CheckSignatureFrom(cert); err == nil {
			t.Errorf("CheckSignatureFrom accepted signature byte -%d flipped", back)
		}
	}
	if parsed == 0 {
		t.Error("no tampered leaf parsed, so none was checked against its issuer")
	}

	for name, data := range map[string][]byte{
		"empty":            nil,
		"no PEM":           []byte("garbage"),
		"only other types": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: raw}),
		"garbage block":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}),
		"good then bad":    append(cert.PEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.cert})...),
	} {
		if _, err := ParseCertificatesPEM(data); !errors.Is(err, ErrCertificate) {
			t.Errorf("ParseCertificatesPEM(%s): err = %v", name, err)
		}
	}

	// Templates and arguments that cannot make a certificate.
	if _, err := CreateCertificate(ctx, nil, k.PublicKey(), nil, k); err == nil {
		t.Error("nil template accepted")
	}
	backwards := *tmpl
	backwards.NotAfter = backwards.NotBefore
	if _, err := CreateCertificate(ctx, &backwards, k.PublicKey(), nil, k); err == nil {
		t.Error("NotAfter == NotBefore accepted")
	}
	if _, err := CreateCertificate(ctx, tmpl, mustKey(t).PublicKey(), nil, k); err == nil {
		t.Error("self-signed certificate for another key accepted")
	}
	if _, err := VerifyChain(nil, nil, []*Certificate{cert}, now); err == nil {
		t.Error("VerifyChain with a nil leaf succeeded")
	}
	if _, err := VerifyChain(cert, nil, nil, now); err == nil {
		t.Error("VerifyChain with no roots succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CreateCertificate(cancelled, tmpl, k.PublicKey(), nil, k); err == nil {
		t.Error("CreateCertificate with a cancelled context succeeded")
	}
}

func TestBadCertificateRequests(t *testing.T) {
	k := mustKey(t)
	der, err := CreateCertificateRequest(context.Background(), pkix.Name{CommonName: "r"}, nil, k)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newForeignMaterial(t)
	for i := range len(der) {
		if _, err := ParseCertificateRequest(der[:i]); !errors.Is(err, ErrCertificate) {
			t.Fatalf("request prefix of %d bytes: err = %v", i, err)
		}
	}
	// Flipping a bit anywhere either breaks the encoding or the signature.
	for i := range len(der) {
		bad := bytes.Clone(der)
		bad[i] ^= 0x01
		if _, err := ParseCertificateRequest(bad); !errors.Is(err, ErrCertificate) {
			t.Fatalf("byte %d flipped: err = %v, want ErrCertificate", i, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("garbage"),
		"P-256 CSR":     foreign.csr,
		"a certificate": foreign.cert,
		"trailing byte": append(bytes.Clone(der), 0),
	} {
		if _, err := ParseCertificateRequest(b); !errors.Is(err, ErrCertificate) {
			t.Errorf("ParseCertificateRequest(%s): err = %v", name, err)
		}
	}
}

func TestBadTextEncodings(t *testing.T) {
	var sig Signature
	for _, s := range []string{"", "00", "zz" + string(bytes.Repeat([]byte("0"), 126))} {
		if err := sig.UnmarshalText([]byte(s)); !errors.Is(err, ErrSignature) {
			t.Errorf("Signature.UnmarshalText(%q): err = %v", s, err)
		}
	}
	var d Digest
	for _, s := range []string{"", "00", "zz" + string(bytes.Repeat([]byte("0"), 62))} {
		if err := d.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("Digest.UnmarshalText(%q) succeeded", s)
		}
	}
	var id KeyID
	if err := id.UnmarshalText([]byte("abc")); err == nil {
		t.Error("KeyID.UnmarshalText of 3 characters succeeded")
	}
	if _, err := DigestFromBytes(make([]byte, 31)); !errors.Is(err, ErrDigestLength) {
		t.Errorf("DigestFromBytes(31 bytes): err = %v", err)
	}
}
