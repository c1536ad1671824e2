package hsm_test

import (
	"encoding/hex"
	"errors"
	"testing"

	"hallmark/hsm"
)

var hexDecode = hex.DecodeString

func TestParseRef(t *testing.T) {
	good := map[string]string{
		"tpm:handle=0x81000010":             "tpm:handle=0x81000010",
		"tpm:handle=2164260880":             "tpm:handle=0x81000010",
		"tpm:handle=auto":                   "tpm:handle=auto",
		"tpm:blob=/var/lib/k.tpmkey":        "tpm:blob=/var/lib/k.tpmkey",
		"tpm-sealed:/k.sealed":              "tpm-sealed:/k.sealed",
		"tpm-sealed:/k.sealed?pcrs=11,7,11": "tpm-sealed:/k.sealed?pcrs=7,11",
		"dev:relative/k.dev":                "dev:relative/k.dev",
		"pkcs11:token=hall%20mark;object=node?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN&mechanism=0x80000001": "pkcs11:token=hall%20mark;object=node?mechanism=0x80000001&module-path=%2Fusr%2Flib%2Fsofthsm%2Flibsofthsm2.so&pin-source=env%3APIN",
	}
	for in, want := range good {
		r, err := hsm.ParseRef(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := r.String(); got != want {
			t.Errorf("%s: canonical %s, want %s", in, got, want)
		}
		again, err := hsm.ParseRef(r.String())
		if err != nil || again.String() != r.String() {
			t.Errorf("%s: canonical form does not round-trip: %v", in, err)
		}
	}
	bad := []string{
		"", "tpm", "nope:x", "tpm:handle=0x80000001", "tpm:handle=zz", "tpm:slot=1", "tpm:blob=",
		"tpm-sealed:", "tpm-sealed:/k?pcrs=24", "tpm-sealed:/k?other=1", "dev:",
		"pkcs11:token=t", "pkcs11:object=o?module-path=/m.so", "pkcs11:token=t;object=o",
		"pkcs11:token=t;object=o?module-path=/m.so&pin-source=stdin",
		"pkcs11:token=t;object=o?module-path=/m.so&mechanism=x",
	}
	for _, in := range bad {
		if _, err := hsm.ParseRef(in); !errors.Is(err, hsm.ErrBadRef) {
			t.Errorf("%q: %v, want ErrBadRef", in, err)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add("tpm:handle=0x81000010")
	f.Add("tpm-sealed:/k?pcrs=7,11")
	f.Add("pkcs11:token=t;object=o?module-path=/m.so&mechanism=0x1")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := hsm.ParseRef(s)
		if err != nil {
			return
		}
		again, err := hsm.ParseRef(r.String())
		if err != nil {
			t.Fatalf("%q parsed, its canonical form %q does not: %v", s, r.String(), err)
		}
		if again.String() != r.String() {
			t.Fatalf("canonical form unstable: %q then %q", r.String(), again.String())
		}
	})
}
