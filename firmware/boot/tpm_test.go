package boot

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"testing"

	"hallmark/firmware/boot/internal/swtpm"
	"hallmark/gm"
	"hallmark/images"
)

func TestMeasureSealUnsealOnSWTPM(t *testing.T) {
	if err := swtpm.Available(); err != nil {
		t.Fatalf("swtpm is required (scripts/deps.sh installs it): %v", err)
	}
	dir := swtpm.StateDir(t)
	inst := swtpm.Start(t, dir)
	tpm := inst.Open(t)

	good := gm.SM3([]byte("firmware 1"))
	other := gm.SM3([]byte("firmware 2"))
	predicted := images.PredictPCR(crypto.SHA256, good)

	// Seal before the measurement happens, to the value the manifest predicts.
	blob, err := Seal(tpm, images.MeasurementPCR, predicted, []byte("node key"))
	if err != nil {
		t.Fatal(err)
	}
	u := TPMUnsealer{TPM: tpm}
	if _, err := u.Unseal(context.Background(), blob); !errors.Is(err, ErrWrongMeasurement) {
		t.Fatalf("unseal before measuring = %v, want ErrWrongMeasurement", err)
	}

	if err := ExtendMeasurement(tpm, images.MeasurementPCR, good); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPCR(tpm, images.MeasurementPCR)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, predicted) {
		t.Fatalf("PCR %d = %x, predicted %x", images.MeasurementPCR, got, predicted)
	}
	secret, err := u.Unseal(context.Background(), blob)
	if err != nil || string(secret) != "node key" {
		t.Fatalf("unseal after measuring = %q, %v", secret, err)
	}

	// A key sealed to another firmware does not unseal.
	otherBlob, err := Seal(tpm, images.MeasurementPCR, images.PredictPCR(crypto.SHA256, other), []byte("other key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unseal(context.Background(), otherBlob); !errors.Is(err, ErrWrongMeasurement) {
		t.Fatalf("unseal of a key sealed to another measurement = %v", err)
	}
	// Extending again (as a second, different image would) locks the first key too.
	if err := ExtendMeasurement(tpm, images.MeasurementPCR, other); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unseal(context.Background(), blob); !errors.Is(err, ErrWrongMeasurement) {
		t.Fatalf("unseal after a further extend = %v", err)
	}
	// Garbage is refused cleanly.
	if _, err := u.Unseal(context.Background(), []byte{0xa0}); err == nil {
		t.Fatal("garbage unsealed")
	}
}

func TestTPMCounterOnSWTPM(t *testing.T) {
	if err := swtpm.Available(); err != nil {
		t.Fatalf("swtpm is required (scripts/deps.sh installs it): %v", err)
	}
	dir := swtpm.StateDir(t)
	inst := swtpm.Start(t, dir)
	ctx := context.Background()
	c := TPMCounter{TPM: inst.Open(t), Index: DefaultCounterIndex}
	if v, err := c.Read(ctx); err != nil || v != 0 {
		t.Fatalf("fresh counter = %d, %v", v, err)
	}
	if err := c.Advance(ctx, 3); err != nil {
		t.Fatal(err)
	}
	v, err := c.Read(ctx)
	if err != nil || v < 3 {
		t.Fatalf("after Advance(3) = %d, %v", v, err)
	}
	if err := c.Advance(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Read(ctx); again != v {
		t.Fatalf("Advance to a lower value moved the counter from %d to %d", v, again)
	}
	// The counter survives a TPM restart.
	inst.Stop()
	inst = swtpm.Start(t, dir)
	c.TPM = inst.Open(t)
	if after, err := c.Read(ctx); err != nil || after != v {
		t.Fatalf("after restart = %d, %v, want %d", after, err, v)
	}
}
