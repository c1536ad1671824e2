//go:build pkcs11 && cgo

package hsm_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/hsm"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// TestPKCS11PlumbingOnSoftHSM runs the pkcs11 custody through hsm's entry
// points. SoftHSM2 has no SM2 mechanism, so signing is shown to fail
// cleanly; session, login, key lookup by label, generation and
// destruction are real. It is the only test in this binary that loads the
// module (SoftHSM2 reads SOFTHSM2_CONF once per process).
func TestPKCS11PlumbingOnSoftHSM(t *testing.T) {
	if _, err := os.Stat(softhsmModule); err != nil {
		t.Skipf("SoftHSM2 not installed (Debian package softhsm2): %v", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.Mkdir(tokens, 0o700)
	conf := filepath.Join(dir, "softhsm2.conf")
	os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\n"), 0o600)
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "hallmark", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	t.Setenv("HALLMARK_TEST_PIN", "1234")
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("1234\n"), 0o600)

	ctx := context.Background()
	ref := "pkcs11:token=hallmark;object=node?module-path=" + softhsmModule + "&pin-source=env:HALLMARK_TEST_PIN&mechanism=0x80005432"
	s, err := hsm.Generate(ctx, ref, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Custody() != hsm.KindPKCS11 {
		t.Fatalf("custody %s", s.Custody())
	}
	if _, err := s.Sign(ctx, []byte("m")); err == nil || !strings.Contains(err.Error(), "0x80005432") {
		t.Fatalf("sign with a mechanism SoftHSM2 lacks: %v", err)
	}
	pub := s.PublicKey()
	s.Close()

	// Reopen by label with the PIN from a file.
	byFile := strings.Replace(ref, "env:HALLMARK_TEST_PIN", "file:"+pinFile, 1)
	s, err = hsm.Open(ctx, byFile, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.PublicKey().Equal(pub) {
		t.Fatal("reopened another key")
	}
	s.Close()
	if _, err := hsm.Open(ctx, ref, hsm.Options{PIN: []byte("9999")}); !errors.Is(err, hsm.ErrWrongPassphrase) {
		t.Fatalf("wrong PIN: %v", err)
	}
	missing := strings.Replace(ref, "object=node", "object=other", 1)
	if _, err := hsm.Open(ctx, missing, hsm.Options{}); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing label: %v", err)
	}
	noMech := strings.Replace(ref, "&mechanism=0x80005432", "", 1)
	s, err = hsm.Open(ctx, noMech, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, []byte("m")); err == nil || !strings.Contains(err.Error(), "no SM2 signing mechanism") {
		t.Fatalf("sign without a mechanism: %v", err)
	}
	s.Close()
	if id, err := hsm.Destroy(ctx, ref, hsm.Options{}); err != nil || id != pub.ID() {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := hsm.Open(ctx, ref, hsm.Options{}); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("open after destroy: %v", err)
	}
}
