package tpm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"hallmark/gm"
)

func TestSignCommandLayout(t *testing.T) {
	var e gm.Digest
	for i := range e {
		e[i] = byte(i)
	}
	got := signCommand(0x81000010, tpm2.TPMAlgSHA256, e)
	want := "8002" + "00000049" + "0000015d" + "81000010" + // header, handle
		"00000009" + "40000009" + "0000" + "00" + "0000" + // password session
		"0020" + hex.EncodeToString(e[:]) + // digest
		"001b" + "000b" + // scheme TPM_ALG_SM2, hash SHA256
		"8024" + "40000007" + "0000" // NULL hash-check ticket
	if hex.EncodeToString(got) != want {
		t.Fatalf("TPM2_Sign command\n got %x\nwant %s", got, want)
	}
}

func signResponse(r, s []byte) []byte {
	params := []byte{0x00, 0x1b, 0x00, 0x0b}
	params = append(params, byte(len(r)>>8), byte(len(r)))
	params = append(params, r...)
	params = append(params, byte(len(s)>>8), byte(len(s)))
	params = append(params, s...)
	b := []byte{0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, 0, 0, 0, byte(len(params)))
	b = append(b, params...)
	b = append(b, 0, 0, 1, 0, 0) // session: empty nonce, attrs, empty hmac
	b[5] = byte(len(b))
	return b
}

func TestParseSignResponse(t *testing.T) {
	r := bytes.Repeat([]byte{1}, 32)
	s := []byte{2, 3} // short components are left-padded
	sig, err := parseSignResponse(signResponse(r, s))
	if err != nil {
		t.Fatal(err)
	}
	var want gm.Signature
	copy(want[:32], r)
	want[62], want[63] = 2, 3
	if sig != want {
		t.Fatalf("got %x", sig)
	}
	// A TPM error code comes back as a TPMRC that errors.Is understands.
	fail := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b}
	if _, err := parseSignResponse(fail); !errors.Is(err, tpm2.TPMRCHandle) {
		t.Fatalf("error response: %v", err)
	}
	bad := signResponse(r, s)
	bad[15] = 0x18 // ECDSA, not SM2
	if _, err := parseSignResponse(bad); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("ECDSA signature accepted: %v", err)
	}
	if _, err := parseSignResponse(signResponse(bytes.Repeat([]byte{1}, 33), s)); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("33-byte r accepted: %v", err)
	}
}

func FuzzParseSignResponse(f *testing.F) {
	f.Add(signResponse(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)))
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseSignResponse(b)
	})
}
