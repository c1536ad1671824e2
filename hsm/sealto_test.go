package hsm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"hallmark/hsm"
	"hallmark/hsm/audit"
	"hallmark/hsm/tpm"
)

// A key sealed to a release's predicted measurement opens only once that
// release is measured; resealed to the next release, the same key opens
// under that one and not under the first.
func TestSealToPredictedReleaseAndReseal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: e.sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := e.opts()
	opts.TPMConn = c
	v1 := sha256.Sum256([]byte("slot of release 1"))
	v2 := sha256.Sum256([]byte("slot of release 2"))
	predict := func(m [32]byte) hsm.PCRValues {
		return hsm.PCRValues{hsm.FirmwarePCR: tpm.PredictPCR(crypto.SHA256, m[:])}
	}
	ref1 := "tpm-sealed:" + e.path("node-v1.sealed")
	ref2 := "tpm-sealed:" + e.path("node-v2.sealed")

	info, err := hsm.GenerateSealedTo(ctx, ref1, predict(v1), opts)
	if err != nil {
		t.Fatal(err)
	}
	if info.Ref != ref1 || info.Custody != hsm.KindTPMSealed || info.Detail["pcrs"] != "[15]" {
		t.Fatalf("GenerateSealedTo described %+v", info)
	}
	if _, err := hsm.GenerateSealedTo(ctx, ref1, predict(v1), opts); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("second GenerateSealedTo at the same path: %v", err)
	}
	if _, err := hsm.Open(ctx, ref1, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("open before release 1 is measured: %v, want ErrPCRState", err)
	}
	// Resealing needs the key open, so it too fails before the measurement,
	// and it writes nothing.
	if _, err := hsm.ResealTo(ctx, ref1, ref2, predict(v2), opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("reseal before release 1 is measured: %v", err)
	}

	// Release 1 boots.
	if err := tpm.ExtendPCR(ctx, c, hsm.FirmwarePCR, v1[:]); err != nil {
		t.Fatal(err)
	}
	s, err := hsm.Open(ctx, ref1, opts)
	if err != nil {
		t.Fatalf("open under release 1: %v", err)
	}
	if s.KeyID() != info.KeyID {
		t.Fatalf("opened key %s, generated %s", s.KeyID(), info.KeyID)
	}
	checkSigns(t, s)
	s.Close()
	// It reseals its key for release 2 before updating.
	info2, err := hsm.ResealTo(ctx, ref1, ref2, predict(v2), opts)
	if err != nil {
		t.Fatal(err)
	}
	if info2.KeyID != info.KeyID {
		t.Fatalf("resealed key %s is not the original %s", info2.KeyID, info.KeyID)
	}
	if _, err := hsm.Open(ctx, ref2, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("release 2's copy opened under release 1: %v", err)
	}

	// Release 2 boots.
	e.sim.Restart()
	if err := tpm.ExtendPCR(ctx, c, hsm.FirmwarePCR, v2[:]); err != nil {
		t.Fatal(err)
	}
	s, err = hsm.Open(ctx, ref2, opts)
	if err != nil {
		t.Fatalf("open release 2's copy under release 2: %v", err)
	}
	if s.KeyID() != info.KeyID {
		t.Fatalf("release 2 opened key %s, want %s", s.KeyID(), info.KeyID)
	}
	checkSigns(t, s)
	s.Close()
	if _, err := hsm.Open(ctx, ref1, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("release 1's copy opened under release 2: %v", err)
	}

	// Refusals.
	for name, bad := range map[string]func() error{
		"not tpm-sealed": func() error {
			_, err := hsm.GenerateSealedTo(ctx, "dev:"+e.path("x.dev"), predict(v1), opts)
			return err
		},
		"ref names other PCRs": func() error {
			_, err := hsm.GenerateSealedTo(ctx, "tpm-sealed:"+e.path("x.sealed")+"?pcrs=7", predict(v1), opts)
			return err
		},
		"no values": func() error {
			_, err := hsm.GenerateSealedTo(ctx, "tpm-sealed:"+e.path("x.sealed"), nil, opts)
			return err
		},
		"short value": func() error {
			_, err := hsm.GenerateSealedTo(ctx, "tpm-sealed:"+e.path("x.sealed"), hsm.PCRValues{15: []byte{1}}, opts)
			return err
		},
		"reseal over an existing file": func() error {
			_, err := hsm.ResealTo(ctx, ref2, ref1, predict(v1), opts)
			return err
		},
	} {
		if err := bad(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	entries, _, err := audit.VerifyFile(e.audit.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var reseals, generates int
	for _, en := range entries {
		switch {
		case en.Op == "reseal" && en.Outcome == "ok":
			reseals++
		case en.Op == "generate" && en.Outcome == "ok":
			generates++
		}
	}
	if reseals != 1 || generates != 1 {
		t.Fatalf("audit log has %d successful reseals and %d generates, want 1 and 1", reseals, generates)
	}
}
