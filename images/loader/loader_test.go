package loader_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/images/bootctl"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
	"hallmark/images/loader"
)

func TestSelectFollowsBootControl(t *testing.T) {
	keys := imagetest.Keys(t, 1)
	policy := imagetest.Policy(1, keys...)
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	build := func(version string) imagetest.Built {
		spec := imagetest.SmallSpec(t, init)
		spec.Version = version
		b := imagetest.Build(t, spec)
		imagetest.Sign(t, b.Manifest, keys...)
		return b
	}
	v1, v2 := build("1.0.0"), build("2.0.0")

	devPath := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(devPath, make([]byte, v1.Manifest.Body.ImageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := flash.OpenDevice(devPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	img, _ := os.Open(v1.Image)
	defer img.Close()
	if _, err := flash.Flash(context.Background(), img, int64(v1.Manifest.Body.ImageSize), v1.Manifest, policy, dev, flash.Target{Hardware: "hallmark-test"}, nil); err != nil {
		t.Fatal(err)
	}

	spec := imagetest.SmallSpec(t, init)
	kernel, _ := os.ReadFile(spec.Kernel)
	sel, err := loader.Select(dev)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Boot.Slot != bootctl.SlotA || sel.Boot.Trial || !bytes.Equal(sel.Kernel, kernel) || len(sel.Initrd) == 0 {
		t.Fatalf("first selection %+v (kernel %d bytes)", sel.Boot, len(sel.Kernel))
	}
	if sel.Cmdline != "console=ttyS0 hallmark.slot=A" || sel.Firmware.Version != "1.0.0" {
		t.Fatalf("cmdline %q firmware %q", sel.Cmdline, sel.Firmware.Version)
	}

	payload, _ := os.Open(v2.Slot)
	defer payload.Close()
	if _, err := flash.Update(context.Background(), payload, int64(v2.Manifest.Body.Firmware.SlotSize), v2.Manifest, policy, dev, flash.UpdateOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	sel, err = loader.Select(dev)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Boot.Slot != bootctl.SlotB || !sel.Boot.Trial || !strings.HasSuffix(sel.Cmdline, "hallmark.slot=B") || sel.Firmware.Version != "2.0.0" {
		t.Fatalf("selection after update %+v %q", sel.Boot, sel.Cmdline)
	}
	// The spent try is on disk: booting again without a commit falls back.
	sel, err = loader.Select(dev)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Boot.Slot != bootctl.SlotA || sel.Boot.FellBack != bootctl.SlotB {
		t.Fatalf("selection after an uncommitted trial %+v", sel.Boot)
	}
}
