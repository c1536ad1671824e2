package gm

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hallmark record")
	sig, err := k.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey().Verify(msg, sig) {
		t.Fatal("valid signature rejected")
	}
	if k.PublicKey().Verify([]byte("other"), sig) {
		t.Fatal("signature verified for another message")
	}
	bad := sig
	bad[5] ^= 1
	if k.PublicKey().Verify(msg, bad) {
		t.Fatal("corrupted signature accepted")
	}
	if k.PublicKey().VerifyWithUID([]byte("other-uid"), msg, sig) {
		t.Fatal("signature verified under a different user id")
	}
	pub2, err := ParsePublicKey(k.PublicKey().Bytes())
	if err != nil || !pub2.Equal(k.PublicKey()) || pub2.ID() != k.PublicKey().ID() {
		t.Fatalf("64-byte round trip: %v", err)
	}
	pub3, err := ParsePublicKey(k.PublicKey().Uncompressed())
	if err != nil || !pub3.Equal(k.PublicKey()) {
		t.Fatalf("65-byte round trip: %v", err)
	}
	k2, err := NewPrivateKey(k.Bytes())
	if err != nil || !k2.PublicKey().Equal(k.PublicKey()) {
		t.Fatalf("scalar round trip: %v", err)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	k, _ := GenerateKey(nil)
	ct, err := k.PublicKey().Encrypt(nil, []byte("data key 16 byte"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.Decrypt(ct)
	if err != nil || !bytes.Equal(pt, []byte("data key 16 byte")) {
		t.Fatalf("decrypt: %v %q", err, pt)
	}
	other, _ := GenerateKey(nil)
	if _, err := other.Decrypt(ct); err == nil {
		t.Fatal("wrong key decrypted")
	}
}

func TestCertificateChain(t *testing.T) {
	ctx := context.Background()
	rootKey, _ := GenerateKey(nil)
	now := time.Now()
	root, err := CreateCertificate(ctx, &CertificateTemplate{
		Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, MaxPathLen: -1,
	}, rootKey.PublicKey(), nil, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := GenerateKey(nil)
	leaf, err := CreateCertificate(ctx, &CertificateTemplate{
		Subject: pkix.Name{CommonName: "node-1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}, leafKey.PublicKey(), root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := VerifyChain(leaf, nil, []*Certificate{root}, now)
	if err != nil || len(chain) != 2 {
		t.Fatalf("chain: %v (len %d)", err, len(chain))
	}
	if _, err := VerifyChain(leaf, nil, []*Certificate{root}, now.Add(2*time.Hour)); err == nil {
		t.Fatal("expired chain accepted")
	}
	other, _ := GenerateKey(nil)
	otherRoot, _ := CreateCertificate(ctx, &CertificateTemplate{
		Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, MaxPathLen: -1,
	}, other.PublicKey(), nil, other)
	if _, err := VerifyChain(leaf, nil, []*Certificate{otherRoot}, now); err == nil {
		t.Fatal("chain to a different root accepted")
	}
}

func TestWipe(t *testing.T) {
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PublicKey()
	k.Wipe()
	if _, err := k.Sign(context.Background(), []byte("m")); !errors.Is(err, ErrWiped) {
		t.Fatalf("sign after wipe: %v", err)
	}
	if _, err := k.MarshalPKCS8(); !errors.Is(err, ErrWiped) {
		t.Fatalf("marshal after wipe: %v", err)
	}
	if !bytes.Equal(k.Bytes(), make([]byte, PrivateKeySize)) {
		t.Fatal("scalar survives wipe")
	}
	if !k.PublicKey().Equal(pub) {
		t.Fatal("public key lost")
	}
	k.Wipe() // idempotent
}
