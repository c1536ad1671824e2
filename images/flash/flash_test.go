package flash_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
)

type fixture struct {
	officers []*gm.PrivateKey
	outsider *gm.PrivateKey
	policy   images.Policy
	init     string
}

func newFixture(t *testing.T) *fixture {
	ks := imagetest.Keys(t, 4)
	return &fixture{
		officers: ks[:3],
		outsider: ks[3],
		policy:   imagetest.Policy(2, ks[:3]...),
		init:     imagetest.BuildStatic(t, "", imagetest.HelloInit),
	}
}

func (f *fixture) build(t *testing.T, mutate func(*builder.Spec)) imagetest.Built {
	spec := imagetest.SmallSpec(t, f.init)
	if mutate != nil {
		mutate(&spec)
	}
	b := imagetest.Build(t, spec)
	imagetest.Sign(t, b.Manifest, f.officers[:2]...)
	return b
}

// newDevice makes a file standing in for a device of size bytes, filled
// with a pattern so that any write shows.
func newDevice(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "device")
	pattern := bytes.Repeat([]byte("HALLMARK-DEVICE!"), int(size/16))
	if err := os.WriteFile(p, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func digestFile(t *testing.T, p string) gm.Digest {
	t.Helper()
	f, size := open(t, p)
	d, err := images.DigestRange(context.Background(), f, 0, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func open(t *testing.T, p string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, fi.Size()
}

func openDevice(t *testing.T, p string) *flash.Device {
	t.Helper()
	d, err := flash.OpenDevice(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestFlash(t *testing.T) {
	fx := newFixture(t)
	v1 := fx.build(t, nil)
	imgSize := int64(v1.Manifest.Body.ImageSize)
	target := flash.Target{Hardware: "hallmark-test", RollbackFloor: 1}

	t.Run("writes, reads back and records the manifest", func(t *testing.T) {
		devPath := newDevice(t, imgSize+(4<<20))
		dev := openDevice(t, devPath)
		img, size := open(t, v1.Image)
		var phases []flash.Phase
		rep, err := flash.Flash(context.Background(), img, size, v1.Manifest, fx.policy, dev, target, func(p flash.Phase, done, total int64) {
			if len(phases) == 0 || phases[len(phases)-1] != p {
				phases = append(phases, p)
			}
			if done > total {
				t.Errorf("%s progress %d of %d", p, done, total)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Written != size || len(rep.Signers) != 2 || rep.Firmware != v1.Manifest.Body.Firmware {
			t.Fatalf("report %+v", rep)
		}
		if want := []flash.Phase{flash.PhaseVerify, flash.PhaseWrite, flash.PhaseReadBack}; !equalPhases(phases, want) {
			t.Fatalf("phases %v, want %v", phases, want)
		}
		// The device now holds the image and, in the boot control
		// partition, the signed manifest.
		st, parts, err := flash.DeviceState(dev)
		if err != nil {
			t.Fatal(err)
		}
		if st.Active != bootctl.SlotA || st.A.Firmware != v1.Manifest.Body.Firmware {
			t.Fatalf("device state %+v", st)
		}
		stored, err := bootctl.NewStore(dev, parts.Bootctl.Offset).ReadManifest(bootctl.SlotA)
		if err != nil {
			t.Fatal(err)
		}
		m, err := images.DecodeManifest(stored)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(fx.policy); err != nil {
			t.Fatalf("stored manifest: %v", err)
		}
		// Bytes past the image are untouched.
		tail := make([]byte, 16)
		if _, err := dev.ReadAt(tail, dev.Size()-16); err != nil || string(tail) != "HALLMARK-DEVICE!" {
			t.Fatalf("bytes past the image changed: %q %v", tail, err)
		}
	})

	// Every refusal leaves the device exactly as it was.
	refuse := func(t *testing.T, image string, m *images.Manifest, policy images.Policy, devSize int64, target flash.Target, want error) {
		t.Helper()
		devPath := newDevice(t, devSize)
		before := digestFile(t, devPath)
		dev := openDevice(t, devPath)
		img, size := open(t, image)
		_, err := flash.Flash(context.Background(), img, size, m, policy, dev, target, nil)
		if !errors.Is(err, want) {
			t.Fatalf("Flash = %v, want %v", err, want)
		}
		var r *flash.RefusedError
		if !errors.As(err, &r) {
			t.Fatalf("refusal %v is not a RefusedError", err)
		}
		if digestFile(t, devPath) != before {
			t.Fatal("a refused flash changed the device")
		}
	}
	resign := func(mutate func(*images.Manifest), signers ...*gm.PrivateKey) *images.Manifest {
		enc, _ := v1.Manifest.Encode()
		m, err := images.DecodeManifest(enc)
		if err != nil {
			t.Fatal(err)
		}
		m.Signatures = nil
		if mutate != nil {
			mutate(m)
		}
		imagetest.Sign(t, m, signers...)
		return m
	}
	big := imgSize + (1 << 20)

	t.Run("missing signature", func(t *testing.T) {
		refuse(t, v1.Image, resign(nil), fx.policy, big, target, images.ErrThreshold)
	})
	t.Run("below threshold", func(t *testing.T) {
		refuse(t, v1.Image, resign(nil, fx.officers[0]), fx.policy, big, target, images.ErrThreshold)
	})
	t.Run("outsider signature does not count", func(t *testing.T) {
		refuse(t, v1.Image, resign(nil, fx.officers[0], fx.outsider), fx.policy, big, target, images.ErrThreshold)
	})
	t.Run("manifest changed after signing", func(t *testing.T) {
		m := resign(nil, fx.officers...)
		m.Body.Firmware.SecurityVersion = 99
		refuse(t, v1.Image, m, fx.policy, big, target, images.ErrBadSignature)
	})
	t.Run("wrong hardware", func(t *testing.T) {
		refuse(t, v1.Image, v1.Manifest, fx.policy, big, flash.Target{Hardware: "other-box", RollbackFloor: 1}, flash.ErrWrongHardware)
	})
	t.Run("below anti-rollback floor", func(t *testing.T) {
		refuse(t, v1.Image, v1.Manifest, fx.policy, big, flash.Target{Hardware: "hallmark-test", RollbackFloor: 2}, flash.ErrRollback)
	})
	t.Run("device too small", func(t *testing.T) {
		refuse(t, v1.Image, v1.Manifest, fx.policy, imgSize-images.SectorSize, target, flash.ErrTooSmall)
	})
	t.Run("truncated image", func(t *testing.T) {
		short := filepath.Join(t.TempDir(), "short.img")
		data, _ := os.ReadFile(v1.Image)
		if err := os.WriteFile(short, data[:len(data)-images.SectorSize], 0o600); err != nil {
			t.Fatal(err)
		}
		refuse(t, short, v1.Manifest, fx.policy, big, target, images.ErrTampered)
	})
	// One flipped byte in every part of the image, including the zero
	// filled ones and the GPT regions.
	for _, p := range v1.Manifest.Body.Parts {
		t.Run("tampered byte in "+p.Name, func(t *testing.T) {
			data, err := os.ReadFile(v1.Image)
			if err != nil {
				t.Fatal(err)
			}
			off := p.Offset + p.Size/2 + 13
			data[off] ^= 0x01
			bad := filepath.Join(t.TempDir(), "tampered.img")
			if err := os.WriteFile(bad, data, 0o600); err != nil {
				t.Fatal(err)
			}
			refuse(t, bad, v1.Manifest, fx.policy, big, target, images.ErrTampered)
		})
	}
}

func equalPhases(a, b []flash.Phase) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// flashed returns a device file holding v1.
func flashed(t *testing.T, fx *fixture, v1 imagetest.Built) string {
	t.Helper()
	devPath := newDevice(t, int64(v1.Manifest.Body.ImageSize))
	dev := openDevice(t, devPath)
	img, size := open(t, v1.Image)
	if _, err := flash.Flash(context.Background(), img, size, v1.Manifest, fx.policy, dev, flash.Target{Hardware: "hallmark-test"}, nil); err != nil {
		t.Fatal(err)
	}
	return devPath
}

func update(t *testing.T, devPath string, b imagetest.Built, policy images.Policy, opts flash.UpdateOptions) (flash.Report, error) {
	t.Helper()
	dev := openDevice(t, devPath)
	payload, size := open(t, b.Slot)
	return flash.Update(context.Background(), payload, size, b.Manifest, policy, dev, opts, nil)
}

// boot plays the bootloader: it selects a slot and persists the decision.
func boot(t *testing.T, devPath string) (bootctl.Boot, bootctl.State) {
	t.Helper()
	dev := openDevice(t, devPath)
	st, parts, err := flash.DeviceState(dev)
	if err != nil {
		t.Fatal(err)
	}
	b, next, err := st.Select()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := bootctl.NewStore(dev, parts.Bootctl.Offset).Save(st, next)
	if err != nil {
		t.Fatal(err)
	}
	return b, saved
}

// commit plays the booted firmware after a healthy start.
func commit(t *testing.T, devPath string, slot bootctl.Slot) bootctl.State {
	t.Helper()
	dev := openDevice(t, devPath)
	st, parts, err := flash.DeviceState(dev)
	if err != nil {
		t.Fatal(err)
	}
	next, changed, err := st.Commit(slot)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		return st
	}
	saved, err := bootctl.NewStore(dev, parts.Bootctl.Offset).Save(st, next)
	if err != nil {
		t.Fatal(err)
	}
	return saved
}

func slotBytes(t *testing.T, devPath string, s bootctl.Slot, n int64) []byte {
	t.Helper()
	dev := openDevice(t, devPath)
	parts, err := flash.Locate(dev)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, n)
	if _, err := dev.ReadAt(out, parts.Slot(s).Offset); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUpdateStateMachineOnImage drives updates, commits and a fallback
// through the real on-disk boot control of a flashed image file.
func TestUpdateStateMachineOnImage(t *testing.T) {
	fx := newFixture(t)
	v1 := fx.build(t, nil)
	v2 := fx.build(t, func(s *builder.Spec) { s.Version, s.SecurityVersion = "2.0.0", 2 })
	v3 := fx.build(t, func(s *builder.Spec) { s.Version, s.SecurityVersion = "3.0.0-broken", 3 })
	devPath := flashed(t, fx, v1)

	// v2 goes to B, on trial.
	rep, err := update(t, devPath, v2, fx.policy, flash.UpdateOptions{RollbackFloor: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Slot != bootctl.SlotB {
		t.Fatalf("update went to %s", rep.Slot)
	}
	payload, _ := os.ReadFile(v2.Slot)
	if !bytes.Equal(slotBytes(t, devPath, bootctl.SlotB, int64(len(payload))), payload) {
		t.Fatal("slot B does not hold the v2 payload")
	}
	b, st := boot(t, devPath)
	if b.Slot != bootctl.SlotB || !b.Trial {
		t.Fatalf("boot after update: %+v", b)
	}
	st = commit(t, devPath, bootctl.SlotB)
	if st.Active != bootctl.SlotB || st.B.State != bootctl.Good || st.B.Firmware.Version != "2.0.0" {
		t.Fatalf("after commit: %+v", st)
	}

	// v3 goes to A (the slot not running) and never commits: the next boot
	// falls back to B.
	rep, err = update(t, devPath, v3, fx.policy, flash.UpdateOptions{Booted: bootctl.SlotB, RollbackFloor: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Slot != bootctl.SlotA {
		t.Fatalf("second update went to %s", rep.Slot)
	}
	if b, _ := boot(t, devPath); b.Slot != bootctl.SlotA || !b.Trial {
		t.Fatalf("trial boot of v3: %+v", b)
	}
	b, st = boot(t, devPath) // v3 never committed; the machine rebooted
	if b.Slot != bootctl.SlotB || b.Trial || b.FellBack != bootctl.SlotA {
		t.Fatalf("boot after failed trial: %+v", b)
	}
	if st.A.State != bootctl.Bad || st.Active != bootctl.SlotB {
		t.Fatalf("state after fallback: %+v", st)
	}
	// The stored manifests say what each slot holds.
	dev := openDevice(t, devPath)
	parts, _ := flash.Locate(dev)
	store := bootctl.NewStore(dev, parts.Bootctl.Offset)
	for slot, want := range map[bootctl.Slot]string{bootctl.SlotA: "3.0.0-broken", bootctl.SlotB: "2.0.0"} {
		raw, err := store.ReadManifest(slot)
		if err != nil {
			t.Fatal(err)
		}
		m, err := images.DecodeManifest(raw)
		if err != nil || m.Body.Firmware.Version != want {
			t.Fatalf("manifest of slot %s: %v %v", slot, err, m)
		}
	}
}

func TestUpdateRefusals(t *testing.T) {
	fx := newFixture(t)
	v1 := fx.build(t, nil)
	v2 := fx.build(t, func(s *builder.Spec) { s.Version, s.SecurityVersion = "2.0.0", 2 })
	other := fx.build(t, func(s *builder.Spec) { s.Version, s.Hardware = "2.0.0", "other-box" })
	bigSlot := fx.build(t, func(s *builder.Spec) { s.Version, s.SlotSize = "2.0.0-big", 5<<20 })

	refuse := func(t *testing.T, b imagetest.Built, policy images.Policy, opts flash.UpdateOptions, want error, prep func(devPath string)) {
		t.Helper()
		devPath := flashed(t, fx, v1)
		if prep != nil {
			prep(devPath)
		}
		before := digestFile(t, devPath)
		_, err := update(t, devPath, b, policy, opts)
		if !errors.Is(err, want) {
			t.Fatalf("Update = %v, want %v", err, want)
		}
		var r *flash.RefusedError
		if !errors.As(err, &r) {
			t.Fatalf("refusal %v is not a RefusedError", err)
		}
		if digestFile(t, devPath) != before {
			t.Fatal("a refused update changed the device")
		}
	}
	t.Run("missing signature", func(t *testing.T) {
		unsigned := v2
		unsigned.Manifest = &images.Manifest{Body: v2.Manifest.Body}
		refuse(t, unsigned, fx.policy, flash.UpdateOptions{}, images.ErrThreshold, nil)
	})
	t.Run("wrong hardware", func(t *testing.T) {
		refuse(t, other, fx.policy, flash.UpdateOptions{}, flash.ErrWrongHardware, nil)
	})
	t.Run("below anti-rollback floor", func(t *testing.T) {
		refuse(t, v2, fx.policy, flash.UpdateOptions{RollbackFloor: 3}, flash.ErrRollback, nil)
	})
	t.Run("payload larger than the slot", func(t *testing.T) {
		refuse(t, bigSlot, fx.policy, flash.UpdateOptions{}, flash.ErrTooSmall, nil)
	})
	t.Run("tampered payload", func(t *testing.T) {
		data, _ := os.ReadFile(v2.Slot)
		data[len(data)/3] ^= 0x40
		bad := v2
		bad.Slot = filepath.Join(t.TempDir(), "tampered.slot")
		if err := os.WriteFile(bad.Slot, data, 0o600); err != nil {
			t.Fatal(err)
		}
		refuse(t, bad, fx.policy, flash.UpdateOptions{}, images.ErrTampered, nil)
	})
	t.Run("running an uncommitted trial", func(t *testing.T) {
		refuse(t, v2, fx.policy, flash.UpdateOptions{Booted: bootctl.SlotB}, bootctl.ErrInTrial, func(devPath string) {
			if _, err := update(t, devPath, v2, fx.policy, flash.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			boot(t, devPath)
		})
	})
	t.Run("not a Hallmark device", func(t *testing.T) {
		devPath := newDevice(t, 64<<20)
		dev := openDevice(t, devPath)
		payload, size := open(t, v2.Slot)
		if _, err := flash.Update(context.Background(), payload, size, v2.Manifest, fx.policy, dev, flash.UpdateOptions{}, nil); !errors.Is(err, flash.ErrLayout) {
			t.Fatalf("Update on a blank device = %v", err)
		}
	})
}

func TestOpenDeviceRefusesMissingFile(t *testing.T) {
	if _, err := flash.OpenDevice(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenDevice = %v", err)
	}
	d := openDevice(t, newDevice(t, 1<<20))
	if _, err := d.WriteAt([]byte("x"), d.Size()); err == nil {
		t.Fatal("write past the end of the device accepted")
	}
	var _ io.ReaderAt = d
}
