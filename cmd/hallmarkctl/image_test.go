package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/firmware/boot"
	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("hallmarkctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestImageCommands(t *testing.T) {
	dir := t.TempDir()
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, imagetest.FakeKernel("6.1.0-test", 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	modules := imagetest.FakeModules(t, "6.1.0-test")

	// Three officer keys, a trust file with all of them; threshold 2.
	var trust []byte
	var keyFiles []string
	for i, k := range imagetest.Keys(t, 3) {
		priv, err := k.MarshalPKCS8PEM()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "officer"+string(rune('1'+i))+".pem")
		if err := os.WriteFile(p, priv, 0o600); err != nil {
			t.Fatal(err)
		}
		keyFiles = append(keyFiles, p)
		pub, err := k.PublicKey().MarshalPKIXPEM()
		if err != nil {
			t.Fatal(err)
		}
		trust = append(trust, pub...)
	}
	trustFile := filepath.Join(dir, "release-keys.pem")
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		t.Fatal(err)
	}

	baseArgs := func(version, sv string) []string {
		return []string{"image", "build", "--version", version, "--security-version", sv, "--hardware", "hm-test",
			"--kernel", kernel, "--modules-dir", modules, "--modules", "a", "--init", init, "--node", init,
			"--slot-size", "4", "--data-size", "2", "--out", dir, "--name", "rel-" + version}
	}
	buildArgs := func(version, sv string) []string {
		return append(baseArgs(version, sv), "--update-listen", ":7409", "--trust", trustFile, "--threshold", "2")
	}
	if _, err := run(t, append(baseArgs("0.9.0", "1"), "--update-listen", ":7409")...); err == nil || !strings.Contains(err.Error(), "--update-listen needs --trust") {
		t.Fatalf("build with an update service but no release keys: %v", err)
	}
	if _, err := run(t, append(buildArgs("0.9.0", "1"), "--node-key", "../x")...); err == nil || !strings.Contains(err.Error(), "--node-key") {
		t.Fatalf("build with a node key name no file can carry: %v", err)
	}
	build := func(version, sv string) string {
		out := mustRun(t, buildArgs(version, sv)...)
		if !strings.Contains(out, "PCR 15") {
			t.Fatalf("build output lacks the PCR prediction:\n%s", out)
		}
		return filepath.Join(dir, "rel-"+version)
	}
	v1 := build("1.0.0", "1")
	v2 := build("2.0.0", "2")

	// Unsigned: verify refuses, flash refuses.
	if out, err := run(t, "image", "verify", v1+".manifest", "--trust", trustFile, "--threshold", "2"); !errors.Is(err, images.ErrThreshold) {
		t.Fatalf("verify of an unsigned manifest: %v\n%s", err, out)
	}
	mustRun(t, "image", "sign", v1+".manifest", "--key", keyFiles[0])
	if _, err := run(t, "image", "verify", v1+".manifest", "--trust", trustFile, "--threshold", "2"); !errors.Is(err, images.ErrThreshold) {
		t.Fatalf("verify with one of two signatures: %v", err)
	}
	mustRun(t, "image", "sign", v1+".manifest", "--key", keyFiles[2])
	out := mustRun(t, "image", "verify", v1+".manifest", "--trust", trustFile, "--threshold", "2", "--image", v1+".img", "--slot", v1+".slot")
	if !strings.Contains(out, "2 of 2 required") || strings.Count(out, "matches the manifest") != 2 {
		t.Fatalf("verify output:\n%s", out)
	}
	mustRun(t, "image", "sign", v2+".manifest", "--key", keyFiles[1], "--key", keyFiles[2])
	if out := mustRun(t, "image", "show", v1+".manifest"); !strings.Contains(out, `"securityVersion": 1`) {
		t.Fatalf("show output:\n%s", out)
	}

	// A device file somewhat larger than the image.
	dev := filepath.Join(dir, "device")
	img, _ := os.Stat(v1 + ".img")
	if err := os.WriteFile(dev, make([]byte, img.Size()+(1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "flash", v1+".img", dev, "--trust", trustFile, "--threshold", "2", "--rollback-floor", "0"); err == nil || !strings.Contains(err.Error(), "--hardware") {
		t.Fatalf("flash of a blank device without --hardware: %v", err)
	}
	if _, err := run(t, "flash", v1+".img", dev, "--trust", trustFile, "--threshold", "2", "--hardware", "hm-test"); err == nil || !strings.Contains(err.Error(), "anti-rollback floor is needed") {
		t.Fatalf("flash without a floor: %v", err)
	}
	if _, err := run(t, "flash", v1+".img", dev, "--trust", trustFile, "--threshold", "2", "--hardware", "hm-test", "--rollback-floor", "2"); !errors.Is(err, flash.ErrRollback) {
		t.Fatalf("flash below the floor: %v", err)
	}
	out = mustRun(t, "flash", v1+".img", dev, "--trust", trustFile, "--threshold", "2", "--hardware", "hm-test", "--rollback-floor", "1")
	if !strings.Contains(out, "read back and verified") || !strings.Contains(out, "signed by 2 trusted keys") {
		t.Fatalf("flash output:\n%s", out)
	}
	// Progress went somewhere (the buffer is not a terminal: lines).
	if !strings.Contains(out, "write: ") || !strings.Contains(out, "read back: ") {
		t.Fatalf("no progress lines:\n%s", out)
	}

	out = mustRun(t, "update", v2+".slot", dev, "--trust", trustFile, "--threshold", "2", "--rollback-floor", "1", "--booted-slot", "A")
	if !strings.Contains(out, "slot B") {
		t.Fatalf("update output:\n%s", out)
	}
	out = mustRun(t, "image", "status", dev)
	if !strings.Contains(out, "slot B on trial (1 tries left)") || !strings.Contains(out, "slot B: trial 2.0.0") {
		t.Fatalf("status output:\n%s", out)
	}
	bootDir := filepath.Join(dir, "boot")
	out = mustRun(t, "image", "boot-files", dev, bootDir)
	if !strings.Contains(out, "boot slot B (2.0.0), trial boot") {
		t.Fatalf("boot-files output:\n%s", out)
	}
	if cmdline, _ := os.ReadFile(filepath.Join(bootDir, "cmdline")); !strings.Contains(string(cmdline), "hallmark.slot=B") {
		t.Fatalf("cmdline %q", cmdline)
	}

	// A tampered payload is refused and nothing is written.
	payload, _ := os.ReadFile(v2 + ".slot")
	payload[100] ^= 1
	bad := filepath.Join(dir, "bad.slot")
	if err := os.WriteFile(bad, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(dev)
	_, err := run(t, "update", bad, dev, "--manifest", v2+".manifest", "--trust", trustFile, "--threshold", "2", "--rollback-floor", "1", "--booted-slot", "A")
	var refused *flash.RefusedError
	if !errors.Is(err, images.ErrTampered) || !errors.As(err, &refused) {
		t.Fatalf("tampered update: %v", err)
	}
	if after, _ := os.ReadFile(dev); gm.SM3(after) != gm.SM3(before) {
		t.Fatal("a refused update changed the device")
	}
}

// update with a URL checks the manifest here and sends it with the slot
// payload, in the form the appliance's update service reads
// (firmware/boot.InstallPath: multipart parts manifest, then slot).
func TestUpdateToRunningAppliance(t *testing.T) {
	dir := t.TempDir()
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	keys := imagetest.Keys(t, 2)
	var trust []byte
	for _, k := range keys {
		pub, err := k.PublicKey().MarshalPKIXPEM()
		if err != nil {
			t.Fatal(err)
		}
		trust = append(trust, pub...)
	}
	trustFile := filepath.Join(dir, "release-keys.pem")
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		t.Fatal(err)
	}
	b := imagetest.Build(t, imagetest.SmallSpec(t, init))
	imagetest.Sign(t, b.Manifest, keys[0])
	enc, err := b.Manifest.Encode()
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "rel.manifest")
	if err := os.WriteFile(manifest, enc, 0o644); err != nil {
		t.Fatal(err)
	}

	var received struct {
		manifest *images.Manifest
		slot     gm.Digest
		size     int
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != boot.InstallPath {
			http.NotFound(w, r)
			return
		}
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, want := range []string{"manifest", "slot"} {
			part, err := mr.NextPart()
			if err != nil || part.FormName() != want {
				http.Error(w, "want part "+want, http.StatusBadRequest)
				return
			}
			data, _ := io.ReadAll(part)
			if want == "manifest" {
				received.manifest, _ = images.DecodeManifest(data)
			} else {
				received.slot, received.size = gm.SM3(data), len(data)
			}
		}
		fw := received.manifest.Body.Firmware
		_ = json.NewEncoder(w).Encode(boot.Installed{Version: fw.Version, SecurityVersion: fw.SecurityVersion, Slot: "B", Written: int64(received.size)})
	}))
	defer srv.Close()

	if _, err := run(t, "update", b.Slot, srv.URL, "--manifest", manifest, "--trust", trustFile, "--threshold", "2"); !errors.Is(err, images.ErrThreshold) {
		t.Fatalf("update of a release below the threshold: %v", err)
	}
	if received.manifest != nil {
		t.Fatal("a release below the threshold was sent")
	}
	out := mustRun(t, "update", b.Slot, srv.URL, "--manifest", manifest, "--trust", trustFile, "--threshold", "1")
	if !strings.Contains(out, "installed 1.0.0 (security version 1) into slot B") {
		t.Fatalf("update output:\n%s", out)
	}
	if received.manifest == nil || received.slot != b.Manifest.Body.Firmware.SlotDigest || received.size != int(b.Manifest.Body.Firmware.SlotSize) {
		t.Fatalf("the appliance received %+v", received)
	}
}
