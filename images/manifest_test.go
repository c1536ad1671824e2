package images

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"testing"

	"hallmark/gm"
)

func testBody() Body {
	return Body{
		Version: ManifestVersion,
		Firmware: Firmware{
			Version:         "1.0.0",
			SecurityVersion: 3,
			Hardware:        "hallmark-test-x86",
			SlotSize:        4 << 20,
			SlotDigest:      gm.SM3([]byte("slot")),
		},
		ImageSize: 8 << 20,
		Parts: []Part{
			{Name: "head", Offset: 0, Size: 1 << 20, Digest: gm.SM3([]byte("h"))},
			{Name: "slot", Offset: 1 << 20, Size: 4 << 20, Digest: gm.SM3([]byte("s"))},
			{Name: "tail", Offset: 5 << 20, Size: 3 << 20, Digest: gm.SM3([]byte("t"))},
		},
		Inputs: []Input{
			{Name: "init", Size: 10, Digest: gm.SM3([]byte("i"))},
			{Name: "kernel", Size: 20, Digest: gm.SM3([]byte("k"))},
		},
		BuildEpoch: 1700000000,
	}
}

func keys(t testing.TB, n int) []*gm.PrivateKey {
	t.Helper()
	out := make([]*gm.PrivateKey, n)
	for i := range out {
		k, err := gm.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = k
	}
	return out
}

func policyOf(threshold int, ks ...*gm.PrivateKey) Policy {
	p := Policy{Threshold: threshold}
	for _, k := range ks {
		p.Keys = append(p.Keys, k.PublicKey())
	}
	return p
}

func signed(t testing.TB, ks ...*gm.PrivateKey) *Manifest {
	t.Helper()
	m := &Manifest{Body: testBody()}
	for _, k := range ks {
		if err := m.Sign(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestManifestThreshold(t *testing.T) {
	ks := keys(t, 4)
	officers := ks[:3]
	outsider := ks[3]
	p := policyOf(2, officers...)

	cases := []struct {
		name    string
		signers []*gm.PrivateKey
		want    error
		trusted int
	}{
		{"none", nil, ErrThreshold, 0},
		{"one of three", officers[:1], ErrThreshold, 1},
		{"two of three", officers[1:], nil, 2},
		{"all three", officers, nil, 3},
		{"one officer and an outsider", []*gm.PrivateKey{officers[0], outsider}, ErrThreshold, 1},
		{"same officer twice", []*gm.PrivateKey{officers[0], officers[0]}, ErrThreshold, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := signed(t, c.signers...)
			v, err := m.Verify(p)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
			if len(v.Trusted) != c.trusted {
				t.Fatalf("trusted signatures = %d, want %d", len(v.Trusted), c.trusted)
			}
		})
	}
}

func TestManifestTamperAfterSigning(t *testing.T) {
	ks := keys(t, 2)
	p := policyOf(2, ks...)
	mutations := map[string]func(b *Body){
		"version":          func(b *Body) { b.Firmware.Version = "1.0.1" },
		"security version": func(b *Body) { b.Firmware.SecurityVersion++ },
		"hardware":         func(b *Body) { b.Firmware.Hardware = "other" },
		"slot digest":      func(b *Body) { b.Firmware.SlotDigest[0] ^= 1 },
		"part digest":      func(b *Body) { b.Parts[2].Digest[31] ^= 0x80 },
		"input":            func(b *Body) { b.Inputs[0].Size++ },
		"epoch":            func(b *Body) { b.BuildEpoch++ },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			m := signed(t, ks...)
			if _, err := m.Verify(p); err != nil {
				t.Fatal(err)
			}
			mutate(&m.Body)
			if _, err := m.Verify(p); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify after changing %s = %v, want ErrBadSignature", name, err)
			}
		})
	}
}

func TestManifestSignatureByteFlipped(t *testing.T) {
	ks := keys(t, 2)
	m := signed(t, ks...)
	m.Signatures[1].Signature[5] ^= 1
	if _, err := m.Verify(policyOf(1, ks...)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify = %v, want ErrBadSignature even though one good signature meets the threshold", err)
	}
}

func TestManifestEncodeDecode(t *testing.T) {
	ks := keys(t, 3)
	m := signed(t, ks...)
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifest(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Verify(policyOf(3, ks...)); err != nil {
		t.Fatal(err)
	}
	again, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, again) {
		t.Fatal("re-encoding changed the bytes")
	}
	for i := 1; i < len(got.Signatures); i++ {
		if !lessKey(got.Signatures[i-1].PublicKey, got.Signatures[i].PublicKey) {
			t.Fatal("signatures not sorted")
		}
	}
	if _, err := DecodeManifest(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := DecodeManifest(enc[:len(enc)-1]); err == nil {
		t.Fatal("truncated manifest accepted")
	}
}

func TestManifestDecodeRejectsUnsortedSignatures(t *testing.T) {
	ks := keys(t, 2)
	m := signed(t, ks...)
	m.Signatures[0], m.Signatures[1] = m.Signatures[1], m.Signatures[0]
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeManifest(enc); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeManifest = %v, want ErrMalformed", err)
	}
}

func TestBodyValidate(t *testing.T) {
	bad := map[string]func(b *Body){
		"version":            func(b *Body) { b.Version = 2 },
		"empty fw version":   func(b *Body) { b.Firmware.Version = "" },
		"control char":       func(b *Body) { b.Firmware.Hardware = "a\nb" },
		"odd slot size":      func(b *Body) { b.Firmware.SlotSize = 4<<20 + 1 },
		"gap between parts":  func(b *Body) { b.Parts[1].Offset++ },
		"overlap":            func(b *Body) { b.Parts[1].Size++ },
		"short of the end":   func(b *Body) { b.ImageSize += SectorSize },
		"duplicate part":     func(b *Body) { b.Parts[2].Name = "head" },
		"zero-size part":     func(b *Body) { b.Parts = append(b.Parts, Part{Name: "z", Offset: b.ImageSize}) },
		"inputs unsorted":    func(b *Body) { b.Inputs[0], b.Inputs[1] = b.Inputs[1], b.Inputs[0] },
		"no parts":           func(b *Body) { b.Parts = nil },
		"image size unalign": func(b *Body) { b.ImageSize = 7 },
	}
	good := testBody()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range bad {
		b := testBody()
		mutate(&b)
		if err := b.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Validate = %v, want ErrMalformed", name, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	ks := keys(t, 2)
	for name, p := range map[string]Policy{
		"no keys":        {Threshold: 1},
		"zero threshold": policyOf(0, ks...),
		"threshold > n":  policyOf(3, ks...),
		"duplicate key":  policyOf(1, ks[0], ks[0]),
	} {
		if err := p.Validate(); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: Validate = %v, want ErrPolicy", name, err)
		}
	}
	m := signed(t, ks...)
	if _, err := m.Verify(policyOf(3, ks...)); !errors.Is(err, ErrPolicy) {
		t.Fatalf("Verify with impossible threshold = %v, want ErrPolicy", err)
	}
}

func TestPredictPCR(t *testing.T) {
	m1, m2 := gm.SM3([]byte("one")), gm.SM3([]byte("two"))
	step1 := sha256.Sum256(append(make([]byte, 32), m1[:]...))
	step2 := sha256.Sum256(append(step1[:], m2[:]...))
	if got := PredictPCR(crypto.SHA256, m1, m2); !bytes.Equal(got, step2[:]) {
		t.Fatalf("PredictPCR = %x, want %x", got, step2)
	}
	// A 20-byte bank takes the measurement's SHA-1.
	inner := sha1.Sum(m1[:])
	want1 := sha1.Sum(append(make([]byte, 20), inner[:]...))
	if got := PredictPCR(crypto.SHA1, m1); !bytes.Equal(got, want1[:]) {
		t.Fatalf("SHA-1 bank = %x, want %x", got, want1)
	}
	fw := Firmware{SlotDigest: m1}
	vals := fw.PCRValues()
	if MeasurementPCR != 15 || len(vals) != 1 || !bytes.Equal(vals[15], step1[:]) {
		t.Fatalf("PCRValues = %x for PCR %d, want PCR 15 = %x", vals, MeasurementPCR, step1)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	ks := keys(f, 2)
	m := signed(f, ks...)
	enc, err := m.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeManifest(data)
		if err != nil {
			return
		}
		again, err := got.Encode()
		if err != nil {
			t.Fatalf("decoded manifest does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("decoded manifest re-encodes differently")
		}
	})
}
