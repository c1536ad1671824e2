package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
)

// releaseFixture builds two small releases (security versions 1 and 2)
// with fake inputs.
type releaseFixture struct {
	dir    string
	v1, v2 string // paths without extension
}

func newReleaseFixture(t *testing.T) *releaseFixture {
	t.Helper()
	dir := t.TempDir()
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, imagetest.FakeKernel("6.1.0-test", 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	modules := imagetest.FakeModules(t, "6.1.0-test")
	build := func(version, sv string) string {
		mustRun(t, "image", "build", "--version", version, "--security-version", sv, "--hardware", "hm-test",
			"--kernel", kernel, "--modules-dir", modules, "--modules", "a", "--init", init, "--node", init,
			"--slot-size", "4", "--data-size", "2", "--out", dir, "--name", "rel-"+version)
		return filepath.Join(dir, "rel-"+version)
	}
	return &releaseFixture{dir: dir, v1: build("1.0.0", "1"), v2: build("2.0.0", "2")}
}

func writeTrust(t *testing.T, path string, keys ...*gm.PublicKey) {
	t.Helper()
	var trust []byte
	for _, k := range keys {
		pem, err := k.MarshalPKIXPEM()
		if err != nil {
			t.Fatal(err)
		}
		trust = append(trust, pem...)
	}
	if err := os.WriteFile(path, trust, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Officers sign releases with keys in custody: one in the TPM, one in the
// development keystore. Flashing with the device's TPM initialises its
// anti-rollback counter, and refuses, before writing, a release the TPM's
// counter history rules out.
func TestSignWithCustodyKeysAndFlashInitialisesTheCounter(t *testing.T) {
	rel := newReleaseFixture(t)
	ctx := context.Background()
	sim := swtpmtest.Start(t)
	opts := hsm.Options{TPM: tpm.Config{Addr: sim.Addr()}, Passphrase: []byte("officer two"), DevKDF: devkeys.Params{Time: 1, MemoryKiB: 64, Threads: 1}}
	var pubs []*gm.PublicKey
	for _, ref := range []string{"tpm:handle=0x81000020", "dev:" + filepath.Join(rel.dir, "officer2.dev")} {
		s, err := hsm.Generate(ctx, ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, s.PublicKey())
		s.Close()
	}
	trust := filepath.Join(rel.dir, "release-keys.pem")
	writeTrust(t, trust, pubs...)
	pass := filepath.Join(rel.dir, "passphrase")
	if err := os.WriteFile(pass, []byte("officer two\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, "image", "sign", rel.v1+".manifest", "--key", "tpm:handle=0x81000020", "--tpm", sim.Addr(),
		"--key", "dev:"+filepath.Join(rel.dir, "officer2.dev"), "--passphrase-file", pass)
	if !strings.Contains(out, "now carries 2 signatures") {
		t.Fatalf("sign output:\n%s", out)
	}
	mustRun(t, "image", "verify", rel.v1+".manifest", "--trust", trust, "--threshold", "2")
	if _, err := run(t, "image", "sign", rel.v2+".manifest", "--key", "dev:"+filepath.Join(rel.dir, "officer2.dev"), "--passphrase-file", trust); !errors.Is(err, hsm.ErrWrongPassphrase) {
		t.Fatalf("sign with a wrong passphrase: %v", err)
	}
	if _, err := run(t, "image", "sign", rel.v2+".manifest", "--key", "tpm:handle=0x81000021", "--tpm", sim.Addr()); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("sign with a missing TPM key: %v", err)
	}

	img, err := os.Stat(rel.v1 + ".img")
	if err != nil {
		t.Fatal(err)
	}
	newDevice := func(name string) string {
		p := filepath.Join(rel.dir, name)
		if err := os.WriteFile(p, make([]byte, img.Size()+(1<<20)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A new TPM: its counter is defined and initialised at 1, the release
	// (security version 1) is flashed.
	dev := newDevice("device")
	out = mustRun(t, "flash", rel.v1+".img", dev, "--trust", trust, "--threshold", "2", "--hardware", "hm-test", "--tpm", sim.Addr())
	if !strings.Contains(out, "it starts at 1\n") || !strings.Contains(out, "read back and verified") {
		t.Fatalf("flash output:\n%s", out)
	}
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := tpm.ReadCounter(ctx, conn, tpm.FirmwareCounterIndex); err != nil || v != 1 {
		t.Fatalf("counter after flashing = %d, %v; want 1", v, err)
	}
	conn.Close()
	// A second flash finds it initialised and leaves it.
	out = mustRun(t, "flash", rel.v1+".img", dev, "--trust", trust, "--threshold", "2", "--hardware", "hm-test", "--tpm", sim.Addr())
	if strings.Contains(out, "initialised") {
		t.Fatalf("second flash initialised the counter again:\n%s", out)
	}

	// A TPM that once held a counter at 5: a counter defined anew starts
	// at 6, so a release with security version 1 could never boot there.
	// It is refused before anything is written.
	old := swtpmtest.Start(t)
	conn, err = tpm.Dial(ctx, tpm.Config{Addr: old.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.DefineCounter(ctx, conn, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Advance(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := tpm.UndefineCounter(ctx, conn, tpm.FirmwareCounterIndex); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	dev2 := newDevice("device2")
	out, err = run(t, "flash", rel.v1+".img", dev2, "--trust", trust, "--threshold", "2", "--hardware", "hm-test", "--tpm", old.Addr())
	var refused *flash.RefusedError
	if !errors.Is(err, flash.ErrRollback) || !errors.As(err, &refused) || !strings.Contains(out, "once held a counter at 5") {
		t.Fatalf("flash onto a TPM whose counter starts at 6: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(dev2); gm.SM3(b) != gm.SM3(make([]byte, len(b))) {
		t.Fatal("a refused flash wrote to the device")
	}
	// An unsigned release never gets to touch the TPM.
	if _, err := run(t, "flash", rel.v2+".img", dev2, "--trust", trust, "--threshold", "2", "--hardware", "hm-test", "--tpm", old.Addr()); !errors.Is(err, images.ErrThreshold) {
		t.Fatalf("flash of an unsigned release: %v", err)
	}
}

// A device key is provisioned sealed to a signed release, opens once that
// release is measured, and is resealed to the next release.
func TestKeySealedToAReleaseAndResealed(t *testing.T) {
	rel := newReleaseFixture(t)
	officers := imagetest.Keys(t, 2)
	trust := filepath.Join(rel.dir, "release-keys.pem")
	writeTrust(t, trust, officers[0].PublicKey(), officers[1].PublicKey())
	var m1, m2 *images.Manifest
	for _, p := range []struct {
		path string
		m    **images.Manifest
	}{{rel.v1, &m1}, {rel.v2, &m2}} {
		m, err := readManifest(p.path + ".manifest")
		if err != nil {
			t.Fatal(err)
		}
		imagetest.Sign(t, m, officers...)
		if err := writeManifest(p.path+".manifest", m); err != nil {
			t.Fatal(err)
		}
		*p.m = m
	}

	c := newCLI(t)
	ref := "tpm-sealed:" + filepath.Join(c.dir, "node-v1.sealed")
	ref2 := "tpm-sealed:" + filepath.Join(c.dir, "node-v2.sealed")
	c.fails("needs --trust", "key", "generate", ref, "--for-manifest", rel.v1+".manifest")
	out := c.ok("key", "generate", ref, "--for-manifest", rel.v1+".manifest", "--trust", trust, "--threshold", "2")
	if !strings.Contains(out, "sealedTo:") || !strings.Contains(out, "pcrs:") {
		t.Fatalf("generate --for-manifest output:\n%s", out)
	}
	id := between(out, "key id:     ", "\n")
	c.fails("wrong PCR state", "key", "show", ref)
	c.fails("wrong PCR state", "key", "reseal", ref, ref2, "--for-manifest", rel.v2+".manifest", "--trust", trust, "--threshold", "2")

	// Release 1 boots and measures its slot.
	ctx := context.Background()
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: c.sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	m := m1.Body.Firmware.Measurement()
	if err := tpm.ExtendPCR(ctx, conn, images.MeasurementPCR, m[:]); err != nil {
		t.Fatal(err)
	}
	conn.Close() // swtpm serves one connection at a time
	if got := between(c.ok("key", "show", ref), "key id:     ", "\n"); got != id {
		t.Fatalf("opened key %s, generated %s", got, id)
	}
	out = c.ok("key", "reseal", ref, ref2, "--for-manifest", rel.v2+".manifest", "--trust", trust, "--threshold", "2")
	if got := between(out, "key id:     ", "\n"); got != id {
		t.Fatalf("resealed key %s, want %s:\n%s", got, id, out)
	}
	c.fails("wrong PCR state", "key", "show", ref2)
	if !strings.Contains(c.ok("key", "audit", "verify"), "chain intact") {
		t.Fatal("audit log broken")
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
