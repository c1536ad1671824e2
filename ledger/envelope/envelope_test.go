package envelope_test

import (
	"bytes"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/envelope"
)

func reader(t testing.TB, name string) (*gm.PrivateKey, envelope.Reader) {
	t.Helper()
	d := gm.SM3([]byte(name))
	k, err := gm.NewPrivateKey(d[:])
	if err != nil {
		t.Fatal(err)
	}
	return k, envelope.Reader{Address: ledger.AddressOf(k.PublicKey()), Key: k.PublicKey()}
}

func TestSealOpen(t *testing.T) {
	k1, r1 := reader(t, "one")
	k2, r2 := reader(t, "two")
	k3, _ := reader(t, "three")
	doc := bytes.Repeat([]byte("营业执照 "), 100)
	sealed, err := envelope.Seal(nil, doc, []envelope.Reader{r2, r1})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, doc[:12]) {
		t.Fatal("plaintext visible in the envelope")
	}
	for _, k := range []*gm.PrivateKey{k1, k2} {
		got, err := envelope.Open(sealed, k)
		if err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("open: %v", err)
		}
	}
	if _, err := envelope.Open(sealed, k3); !errors.Is(err, envelope.ErrNotReader) {
		t.Fatalf("a stranger: %v", err)
	}
	env, _ := envelope.Decode(sealed)
	rs := env.Readers()
	if len(rs) != 2 || bytes.Compare(rs[0][:], rs[1][:]) >= 0 {
		t.Fatal("readers not sorted")
	}

	// Removing a recipient breaks the envelope for everyone (the list is
	// in the AAD).
	env.Recipients = env.Recipients[:1]
	cut, _ := ledger.Marshal(env)
	for _, k := range []*gm.PrivateKey{k1, k2} {
		if _, err := envelope.Open(cut, k); err == nil {
			t.Fatal("an envelope with an altered recipient list opened")
		}
	}
	// A flipped ciphertext bit fails authentication.
	env2, _ := envelope.Decode(sealed)
	env2.Ciphertext[20] ^= 1
	flipped, _ := ledger.Marshal(env2)
	if _, err := envelope.Open(flipped, k1); err == nil {
		t.Fatal("tampered ciphertext opened")
	}
}

func TestSealRefuses(t *testing.T) {
	_, r1 := reader(t, "one")
	if _, err := envelope.Seal(nil, []byte("x"), nil); err == nil {
		t.Fatal("no readers accepted")
	}
	if _, err := envelope.Seal(nil, []byte("x"), []envelope.Reader{r1, r1}); err == nil {
		t.Fatal("a reader twice accepted")
	}
	if _, err := envelope.Seal(nil, []byte("x"), []envelope.Reader{{Address: r1.Address}}); err == nil {
		t.Fatal("a reader without key accepted")
	}
}

func FuzzDecode(f *testing.F) {
	_, r1 := reader(f, "one")
	_, r2 := reader(f, "two")
	sealed, _ := envelope.Seal(nil, []byte("document"), []envelope.Reader{r1, r2})
	f.Add(sealed)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := envelope.Decode(data)
		if err != nil {
			return
		}
		again, err := ledger.Marshal(env)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input: %v", err)
		}
		_ = env.Readers()
	})
}
