package devkeys_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/hsm/devkeys"
	"hallmark/ledger"
)

// cheap keeps the tests fast; production files use DefaultParams.
var cheap = devkeys.Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestRoundTrip(t *testing.T) {
	key, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	file, err := devkeys.Encrypt(nil, key, []byte("correct horse"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	got, err := devkeys.Decrypt(file, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), key.Bytes()) {
		t.Fatal("decrypted a different key")
	}
	sig, err := got.Sign(context.Background(), []byte("m"))
	if err != nil || !key.PublicKey().Verify([]byte("m"), sig) {
		t.Fatalf("decrypted key does not sign: %v", err)
	}
	f, err := devkeys.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	if pub, err := f.Public(); err != nil || !pub.Equal(key.PublicKey()) {
		t.Fatalf("recorded public key: %v", err)
	}
}

func TestWrongPassphraseAndTampering(t *testing.T) {
	key, _ := gm.GenerateKey(nil)
	file, err := devkeys.Encrypt(nil, key, []byte("pass"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devkeys.Decrypt(file, []byte("wrong")); !errors.Is(err, devkeys.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := devkeys.Decrypt(file, nil); !errors.Is(err, devkeys.ErrEmptyPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	// Lowering the KDF cost in the file breaks authentication.
	f, _ := devkeys.Parse(file)
	f.Time = 2
	weaker, err := ledger.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devkeys.Decrypt(weaker, []byte("pass")); !errors.Is(err, devkeys.ErrWrongPassphrase) {
		t.Fatalf("altered parameters: %v", err)
	}
	// Swapping the recorded public key also breaks it.
	other, _ := gm.GenerateKey(nil)
	f, _ = devkeys.Parse(file)
	f.PublicKey = ledger.KeyBytes(other.PublicKey())
	swapped, _ := ledger.Marshal(f)
	if _, err := devkeys.Decrypt(swapped, []byte("pass")); !errors.Is(err, devkeys.ErrWrongPassphrase) {
		t.Fatalf("swapped public key: %v", err)
	}
	if _, err := devkeys.Decrypt([]byte("not cbor"), []byte("pass")); !errors.Is(err, devkeys.ErrFormat) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestRejectsHostileParameters(t *testing.T) {
	key, _ := gm.GenerateKey(nil)
	if _, err := devkeys.Encrypt(nil, key, []byte("p"), devkeys.Params{Time: 1, MemoryKiB: 2 << 20, Threads: 1}); err == nil {
		t.Fatal("accepted 2 GiB of KDF memory")
	}
	file, _ := devkeys.Encrypt(nil, key, []byte("p"), cheap)
	f, _ := devkeys.Parse(file)
	f.MemoryKiB = 1 << 30
	hostile, _ := ledger.Marshal(f)
	if _, err := devkeys.Parse(hostile); !errors.Is(err, devkeys.ErrFormat) {
		t.Fatalf("hostile memory parameter: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	key, _ := gm.GenerateKey(nil)
	file, _ := devkeys.Encrypt(nil, key, []byte("p"), cheap)
	f.Add(file)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if pf, err := devkeys.Parse(b); err == nil {
			if _, err := pf.Public(); err != nil {
				t.Fatalf("parsed file has a bad public key: %v", err)
			}
		}
	})
}

// BenchmarkDecrypt measures opening a dev key with the default Argon2id
// cost: what a developer waits for at start.
func BenchmarkDecrypt(b *testing.B) {
	key, _ := gm.GenerateKey(nil)
	file, err := devkeys.Encrypt(nil, key, []byte("pass"), devkeys.DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		k, err := devkeys.Decrypt(file, []byte("pass"))
		if err != nil {
			b.Fatal(err)
		}
		k.Wipe()
	}
}
