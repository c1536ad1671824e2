package boot

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
)

// The init's TPM work, against swtpm: the measurement lands in
// images.MeasurementPCR (hsm.FirmwarePCR) with the value the manifest
// predicts, a key sealed to that value opens with hsm.Open afterwards and
// not before, the floor is read, and a commit advances the counter.
func TestMeasureThenOpenSealedKeyAndAdvanceCounter(t *testing.T) {
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	var logs bytes.Buffer
	cfg := Config{Node: NodeConfig{Command: []string{"/bin/node"}}}.withDefaults()
	r := &runner{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil)), slot: bootctl.SlotA,
		release: images.Release{Version: "1.0.0", SecurityVersion: 2}, tpmDevice: sim.Addr()}
	fw := images.Firmware{SlotDigest: gm.SM3([]byte("slot content of release 1"))}
	if images.MeasurementPCR != hsm.FirmwarePCR {
		t.Fatalf("the init measures into PCR %d, tpm-sealed keys are sealed to PCR %d", images.MeasurementPCR, hsm.FirmwarePCR)
	}

	// Provisioning: a key sealed to the release's predicted PCR value.
	ref := "tpm-sealed:" + t.TempDir() + "/node.sealed"
	opts := hsm.Options{TPM: tpm.Config{Addr: sim.Addr()}}
	info, err := hsm.GenerateSealedTo(ctx, ref, fw.PCRValues(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.Open(ctx, ref, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("open before the measurement: %v", err)
	}

	conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	floor, err := r.measure(ctx, conn, fw.Measurement(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pcr, err := tpm.ReadPCRs(ctx, conn, []uint{images.MeasurementPCR})
	conn.Close() // swtpm serves one connection at a time
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pcr[0], images.PredictPCR(crypto.SHA256, fw.Measurement())) {
		t.Fatalf("PCR %d = %x, manifest predicts %x", images.MeasurementPCR, pcr[0], images.PredictPCR(crypto.SHA256, fw.Measurement()))
	}
	if floor != 0 {
		t.Fatalf("floor of a new TPM = %d", floor)
	}
	if !strings.Contains(logs.String(), `msg="measured slot" slot=A digest=`+fw.Measurement().String()+" pcr=15 sha256=") {
		t.Fatalf("log: %s", logs.String())
	}
	s, err := hsm.Open(ctx, ref, opts)
	if err != nil {
		t.Fatalf("open after the measurement: %v", err)
	}
	if s.KeyID() != info.KeyID {
		t.Fatalf("opened %s, provisioned %s", s.KeyID(), info.KeyID)
	}
	s.Close()

	if v, err := r.advanceCounter(ctx); err != nil || v != 2 {
		t.Fatalf("advance to security version 2 = %d, %v", v, err)
	}
	if v, err := r.advanceCounter(ctx); err != nil || v != 2 {
		t.Fatalf("advance again on the next healthy boot = %d, %v", v, err)
	}
	conn, err = tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	floor, err = r.measure(ctx, conn, fw.Measurement(), time.Now())
	conn.Close()
	if err != nil || floor != 2 {
		t.Fatalf("floor after the commit = %d, %v", floor, err)
	}
}

// A device flashed without its TPM meets a counter's first increment at
// its first commit; on a TPM that held a higher counter, that overshoots
// and the init says so.
func TestCommitReportsAnOvershootingCounter(t *testing.T) {
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.DefineCounter(ctx, conn, tpm.FirmwareCounterIndex)
	if err == nil {
		_, err = k.Advance(ctx, 3)
	}
	if err == nil {
		err = tpm.UndefineCounter(ctx, conn, tpm.FirmwareCounterIndex)
	}
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{}.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		release: images.Release{SecurityVersion: 1}, tpmDevice: sim.Addr()}
	v, err := r.advanceCounter(ctx)
	if !errors.Is(err, tpm.ErrOvershoot) || v != 4 {
		t.Fatalf("first commit on a TPM that held a counter at 3 = %d, %v; want 4 and ErrOvershoot", v, err)
	}
}
