//go:build pkcs11 && cgo

package pkcs11_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"hallmark/gm"
	"hallmark/hsm/pkcs11"
)

const (
	module = "/usr/lib/softhsm/libsofthsm2.so"
	label  = "hallmark-test"
	pin    = "1234"
)

// A PKCS#11 module reads its configuration once per process (C_Initialize),
// so every test in this binary shares one SoftHSM2 token directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if _, err := os.Stat(module); err != nil {
			println("skipping: SoftHSM2 not installed (Debian package softhsm2):", err.Error())
			return 0
		}
		conf := filepath.Join(dir, "softhsm2.conf")
		tokens := filepath.Join(dir, "tokens")
		os.Mkdir(tokens, 0o700)
		os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		os.Setenv("SOFTHSM2_CONF", conf)
		out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678").CombinedOutput()
		if err != nil {
			println("softhsm2-util --init-token:", err.Error(), string(out))
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func open(t *testing.T) *pkcs11.Session {
	t.Helper()
	s, err := pkcs11.Open(pkcs11.Config{Module: module, Token: label, PIN: []byte(pin)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenErrors(t *testing.T) {
	if _, err := pkcs11.Open(pkcs11.Config{Module: "/nonexistent/libp11.so", Token: label}); !errors.Is(err, pkcs11.ErrModule) {
		t.Fatalf("missing module: %v", err)
	}
	if _, err := pkcs11.Open(pkcs11.Config{Module: module, Token: "no-such-token", PIN: []byte(pin)}); !errors.Is(err, pkcs11.ErrTokenNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := pkcs11.Open(pkcs11.Config{Module: module, Token: label, PIN: []byte("0000")}); !errors.Is(err, pkcs11.ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
}

func TestKeyLifecycleOnSoftHSM(t *testing.T) {
	s := open(t)
	if _, err := s.FindKey("node"); !errors.Is(err, pkcs11.ErrKeyNotFound) {
		t.Fatalf("lookup before generate: %v", err)
	}
	k, err := s.Generate("node", 0)
	if err != nil {
		t.Fatalf("generate on the SM2 curve: %v", err)
	}
	if _, err := s.Generate("node", 0); !errors.Is(err, pkcs11.ErrKeyExists) {
		t.Fatalf("second generate with the same label: %v", err)
	}
	// A second session finds the key by label, with the same public key.
	s2 := open(t)
	k2, err := s2.FindKey("node")
	if err != nil {
		t.Fatal(err)
	}
	if !k2.PubKey.Equal(k.PubKey) {
		t.Fatal("lookup by label found another key")
	}
	e := k.PubKey.Digest([]byte("message"))
	// SoftHSM2 has no SM2 mechanism. A made-up vendor mechanism is
	// refused by the token...
	if _, err := s.SignDigest(k, p11.CKM_VENDOR_DEFINED|0x5432, e); !errors.Is(err, pkcs11.ErrMechanism) {
		t.Fatalf("unknown mechanism: %v", err)
	}
	// ...and CKM_ECDSA on an SM2-curve key computes ECDSA, which the
	// signer refuses to pass off as SM2.
	if _, err := s.SignDigest(k, p11.CKM_ECDSA, e); !errors.Is(err, pkcs11.ErrNotSM2Sig) {
		t.Fatalf("ECDSA output accepted as SM2: %v", err)
	}
	pub, err := s.Destroy("node")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(k.PubKey) {
		t.Fatal("destroyed another key")
	}
	if _, err := s2.FindKey("node"); !errors.Is(err, pkcs11.ErrKeyNotFound) {
		t.Fatalf("lookup after destroy: %v", err)
	}
}

func TestParseSignature(t *testing.T) {
	k, _ := gm.GenerateKey(nil)
	sig, _ := k.SignDigest(nil, gm.SM3([]byte("x")))
	raw, err := pkcs11.ParseSignature(sig[:])
	if err != nil || raw != sig {
		t.Fatalf("r||s: %v", err)
	}
	der, _ := sig.DER()
	if got, err := pkcs11.ParseSignature(der); err != nil || got != sig {
		t.Fatalf("DER: %v", err)
	}
	if _, err := pkcs11.ParseSignature([]byte{1, 2, 3}); err == nil {
		t.Fatal("garbage accepted")
	}
}
