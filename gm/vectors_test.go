package gm

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// Known-answer tests from the published standards. Each vector names the
// document and the part of it the values come from; the values themselves
// are public test data, cross-checked against several independent
// implementations' test suites.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

// GB/T 32905-2016 (SM3), Annex A: example 1 hashes "abc"; example 2 hashes
// the 64-byte message "abcd" repeated 16 times (two blocks after padding).
var sm3Vectors = []struct {
	name, msg, digest string
}{
	{"GB/T 32905 A.1 abc", "abc",
		"66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0"},
	{"GB/T 32905 A.2 abcd*16", strings.Repeat("abcd", 16),
		"debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732"},
}

func TestSM3Vectors(t *testing.T) {
	for _, v := range sm3Vectors {
		t.Run(v.name, func(t *testing.T) {
			want := unhex(t, v.digest)
			if got := SM3([]byte(v.msg)); !bytes.Equal(got[:], want) {
				t.Fatalf("SM3 one-shot = %x, want %x", got, want)
			}
			if got := SM3Concat([]byte(v.msg[:1]), nil, []byte(v.msg[1:])); !bytes.Equal(got[:], want) {
				t.Fatalf("SM3Concat = %x, want %x", got, want)
			}
			// Streaming in every split of the message, and byte by byte.
			for split := 0; split <= len(v.msg); split++ {
				h := NewSM3()
				h.Write([]byte(v.msg[:split]))
				h.Write([]byte(v.msg[split:]))
				if got := h.Sum(nil); !bytes.Equal(got, want) {
					t.Fatalf("streaming split at %d = %x, want %x", split, got, want)
				}
			}
			h := NewSM3()
			for i := range len(v.msg) {
				h.Write([]byte{v.msg[i]})
			}
			if got := h.Sum(nil); !bytes.Equal(got, want) {
				t.Fatalf("byte-by-byte = %x, want %x", got, want)
			}
			// Sum must not disturb the running state.
			h.Write([]byte("x"))
			if got, other := h.Sum(nil), SM3([]byte(v.msg+"x")); !bytes.Equal(got, other[:]) {
				t.Fatal("writing after Sum does not continue the stream")
			}
		})
	}
}

func TestSM3StreamingLong(t *testing.T) {
	// A message crossing many block boundaries, written in uneven pieces.
	msg := bytes.Repeat([]byte("hallmark-sm3-streaming-"), 1000)
	want := SM3(msg)
	h := NewSM3()
	for rest, n := msg, 1; len(rest) > 0; n = n*7%127 + 1 {
		n = min(n, len(rest))
		h.Write(rest[:n])
		rest = rest[n:]
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("streaming = %x, one-shot = %x", got, want)
	}
	if h.Size() != DigestSize || h.BlockSize() != 64 {
		t.Fatalf("Size %d BlockSize %d", h.Size(), h.BlockSize())
	}
}

// GB/T 32907-2016 (SM4), Annex A: example 1 encrypts one block with
// key = plaintext = 0123456789abcdeffedcba9876543210; example 2 encrypts the
// same block 1,000,000 times in a row under the same key.
const (
	sm4ExampleKey     = "0123456789abcdeffedcba9876543210"
	sm4ExampleOnce    = "681edf34d206965e86b3e94f536e4246"
	sm4ExampleMillion = "595298c7c6fd271f0402f804c33d3f66"
)

func TestSM4BlockVector(t *testing.T) {
	key := unhex(t, sm4ExampleKey)
	block, err := newSM4Block(key)
	if err != nil {
		t.Fatal(err)
	}
	buf := unhex(t, sm4ExampleKey) // the plaintext equals the key
	block.Encrypt(buf, buf)
	if want := unhex(t, sm4ExampleOnce); !bytes.Equal(buf, want) {
		t.Fatalf("SM4 encrypt = %x, want %x", buf, want)
	}
	block.Decrypt(buf, buf)
	if !bytes.Equal(buf, key) {
		t.Fatalf("SM4 decrypt = %x, want %x", buf, key)
	}
}

// The million-iteration example takes about 0.2 s here (2 s under -race),
// so it always runs.
func TestSM4MillionIterationsVector(t *testing.T) {
	block, err := newSM4Block(unhex(t, sm4ExampleKey))
	if err != nil {
		t.Fatal(err)
	}
	buf := unhex(t, sm4ExampleKey)
	for range 1_000_000 {
		block.Encrypt(buf, buf)
	}
	if want := unhex(t, sm4ExampleMillion); !bytes.Equal(buf, want) {
		t.Fatalf("SM4 x1e6 = %x, want %x", buf, want)
	}
}

func TestSM4KeySize(t *testing.T) {
	for _, n := range []int{0, 15, 17, 32} {
		if _, err := newSM4Block(make([]byte, n)); err == nil {
			t.Errorf("SM4 key of %d bytes accepted", n)
		}
		if _, err := NewSM4GCM(make([]byte, n)); err == nil {
			t.Errorf("SM4-GCM key of %d bytes accepted", n)
		}
	}
}

// RFC 8998 (ShangMi cipher suites for TLS 1.3), Appendix A.1: SM4-GCM with
// a 12-byte IV, 20 bytes of associated data and four blocks of plaintext.
var sm4GCMVector = struct {
	key, iv, aad, plaintext, ciphertext, tag string
}{
	key: "0123456789ABCDEFFEDCBA9876543210",
	iv:  "00001234567800000000ABCD",
	aad: "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2",
	plaintext: "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD" +
		"EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFF EEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
	ciphertext: "17F399F08C67D5EE19D0DC9969C4BB7D 5FD46FD3756489069157B282BB200735" +
		"D82710CA5C22F0CCFA7CBF93D496AC15 A56834CBCF98C397B4024A2691233B8D",
	tag: "83DE3541E4C2B58177E065A9BF7B62EC",
}

func TestSM4GCMVector(t *testing.T) {
	v := sm4GCMVector
	key, iv, aad := unhex(t, v.key), unhex(t, v.iv), unhex(t, v.aad)
	pt, ct, tag := unhex(t, v.plaintext), unhex(t, v.ciphertext), unhex(t, v.tag)

	// SealSM4GCM takes its nonce from the reader: feed it the RFC's IV.
	sealed, err := SealSM4GCM(bytes.NewReader(iv), key, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, iv...), ct...), tag...)
	if !bytes.Equal(sealed, want) {
		t.Fatalf("SealSM4GCM =\n%x\nwant\n%x", sealed, want)
	}
	got, err := OpenSM4GCM(key, want, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("OpenSM4GCM = %x, %v", got, err)
	}
	// Each part is authenticated: flip one bit anywhere and Open fails.
	for i := range len(want) * 8 {
		bad := bytes.Clone(want)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := OpenSM4GCM(key, bad, aad); err != ErrOpen {
			t.Fatalf("bit %d flipped: err = %v, want ErrOpen", i, err)
		}
	}
	badAAD := bytes.Clone(aad)
	badAAD[0] ^= 0x80
	if _, err := OpenSM4GCM(key, want, badAAD); err != ErrOpen {
		t.Fatalf("wrong AAD: err = %v", err)
	}
	if _, err := OpenSM4GCM(key, want, nil); err != ErrOpen {
		t.Fatalf("missing AAD: err = %v", err)
	}
}

// SM2 examples on the recommended curve (the curve Hallmark uses).
//
// GB/T 32918.2-2016 Annex A (like GM/T 0003.2-2012) computes its examples on
// a 256-bit example curve with a different p, a, b, G and n, so its numbers
// cannot be reproduced with the recommended curve and are not used here.
// GB/T 32918.5-2017 (= GM/T 0003.5-2012, "parameter definition") gives
// examples on the recommended curve: Annex A a digital signature, Annex C a
// public-key encryption, both with the key below and the same ephemeral k.
var sm2Example = struct {
	d, x, y  string
	uid, msg string
	za, e    string
	k, r, s  string
	encMsg   string
	c1x, c1y string
	c3, c2   string
}{
	d:   "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8",
	x:   "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020",
	y:   "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13",
	uid: DefaultUID,
	msg: "message digest",
	za:  "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3",
	e:   "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640",
	k:   "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21",
	r:   "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3",
	s:   "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",

	encMsg: "encryption standard",
	c1x:    "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73",
	c1y:    "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0",
	c3:     "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766",
	c2:     "21886CA989CA9C7D58087307CA93092D651EFA",
}

func exampleKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := NewPrivateKey(unhex(t, sm2Example.d))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func exampleSignature(t testing.TB) Signature {
	t.Helper()
	sig, err := ParseSignature(append(unhex(t, sm2Example.r), unhex(t, sm2Example.s)...))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestSM2SignatureVector(t *testing.T) {
	v := sm2Example
	key := exampleKey(t)
	pub := key.PublicKey()

	// The public key derives from the private key.
	wantXY := append(unhex(t, v.x), unhex(t, v.y)...)
	if !bytes.Equal(pub.Bytes(), wantXY) {
		t.Fatalf("public key = %x, want %x", pub.Bytes(), wantXY)
	}
	parsed, err := ParsePublicKey(append([]byte{0x04}, wantXY...))
	if err != nil || !parsed.Equal(pub) {
		t.Fatalf("published public key does not parse to the derived one: %v", err)
	}

	// e = SM3(Z_A ‖ M), with Z_A from the default uid.
	za := SM3Concat(zaPreimage(t, []byte(v.uid), pub))
	if !bytes.Equal(za[:], unhex(t, v.za)) {
		t.Fatalf("Z_A = %x, want %s", za, v.za)
	}
	e := pub.Digest([]byte(v.msg))
	if !bytes.Equal(e[:], unhex(t, v.e)) {
		t.Fatalf("e = %x, want %s", e, v.e)
	}
	if e2, err := pub.DigestWithUID([]byte(v.uid), []byte(v.msg)); err != nil || e2 != e {
		t.Fatalf("DigestWithUID with the explicit default uid differs: %x %v", e2, err)
	}
	if e3 := SM3Concat(za[:], []byte(v.msg)); e3 != e {
		t.Fatalf("SM3(Z_A ‖ M) = %x, Digest = %x", e3, e)
	}

	// The published (r, s) verifies, by message and by digest, raw and DER.
	sig := exampleSignature(t)
	if !pub.Verify([]byte(v.msg), sig) {
		t.Fatal("published signature does not verify")
	}
	if !pub.VerifyDigest(e, sig) {
		t.Fatal("published signature does not verify against e")
	}
	if !pub.VerifyWithUID([]byte(v.uid), []byte(v.msg), sig) {
		t.Fatal("published signature does not verify with the explicit uid")
	}
	der, err := sig.DER()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDERSignature(der)
	if err != nil || back != sig {
		t.Fatalf("DER round trip: %v", err)
	}
	if pub.Verify([]byte("message digesT"), sig) || pub.VerifyWithUID([]byte("ALICE123@YAHOO.COM"), []byte(v.msg), sig) {
		t.Fatal("published signature verifies for another message or uid")
	}

	// Our own signatures with the example key verify too (the signer is
	// hedged, so (r, s) itself is not reproducible from k).
	mine, err := key.SignWithUID(nil, []byte(v.uid), []byte(v.msg))
	if err != nil || !pub.Verify([]byte(v.msg), mine) {
		t.Fatalf("own signature with the example key: %v", err)
	}
}

// zaPreimage builds ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A
// (GB/T 32918.2 section 5.5) independently of the library, so the Z_A check
// above tests the library's computation rather than repeating it.
func zaPreimage(t testing.TB, uid []byte, pub *PublicKey) []byte {
	t.Helper()
	// Recommended curve parameters, GB/T 32918.5 section 3.
	a := unhex(t, "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
	b := unhex(t, "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
	gx := unhex(t, "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
	gy := unhex(t, "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
	bits := len(uid) * 8
	out := []byte{byte(bits >> 8), byte(bits)}
	for _, part := range [][]byte{uid, a, b, gx, gy, pub.Bytes()} {
		out = append(out, part...)
	}
	return out
}

func TestSM2EncryptionVector(t *testing.T) {
	v := sm2Example
	key := exampleKey(t)
	want := append([]byte{0x04}, unhex(t, v.c1x+v.c1y+v.c3+v.c2)...)

	// Decrypting the published C1 ‖ C3 ‖ C2 gives the published message.
	pt, err := key.Decrypt(want)
	if err != nil || string(pt) != v.encMsg {
		t.Fatalf("Decrypt(published) = %q, %v", pt, err)
	}

	// Encrypting with the published k (read as the 32 random bytes the
	// encryptor draws) reproduces the published ciphertext exactly.
	ct, err := key.PublicKey().Encrypt(bytes.NewReader(unhex(t, v.k)), []byte(v.encMsg))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ct, want) {
		t.Fatalf("Encrypt with published k =\n%x\nwant\n%x", ct, want)
	}

	// A wrong C3 (integrity hash) is refused.
	bad := bytes.Clone(want)
	bad[1+64] ^= 1
	if _, err := key.Decrypt(bad); err == nil {
		t.Fatal("ciphertext with a corrupted C3 decrypted")
	}
}
