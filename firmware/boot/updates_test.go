package boot

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
)

// testManifest is a structurally valid manifest of a release whose slot
// content is content, signed by signers.
func testManifest(t *testing.T, version string, securityVersion uint64, hardware, content string, signers ...*gm.PrivateKey) *images.Manifest {
	t.Helper()
	m := &images.Manifest{Body: images.Body{
		Version: images.ManifestVersion,
		Firmware: images.Firmware{Version: version, SecurityVersion: securityVersion, Hardware: hardware,
			SlotSize: 4 << 20, SlotDigest: gm.SM3([]byte(content))},
		ImageSize: 8 << 20,
		Parts: []images.Part{
			{Name: "head", Offset: 0, Size: 4 << 20, Digest: gm.SM3([]byte("head"))},
			{Name: "slot", Offset: 4 << 20, Size: 4 << 20, Digest: gm.SM3([]byte(content))},
		},
		Inputs:     []images.Input{},
		BuildEpoch: 1700000000,
	}}
	imagetest.Sign(t, m, signers...)
	return m
}

func extend(t *testing.T, sim *swtpmtest.TPM, d gm.Digest) {
	t.Helper()
	conn, err := tpm.Dial(context.Background(), tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // swtpm serves one connection at a time
	if err := tpm.ExtendPCR(context.Background(), conn, images.MeasurementPCR, d[:]); err != nil {
		t.Fatal(err)
	}
}

// The update service carries the running release's keys only to a
// release this device may install, and the copy it writes opens under
// that release and no other.
func TestKeyCarrier(t *testing.T) {
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	const hw = "hallmark-test-x86"
	officers := imagetest.Keys(t, 3)
	v1 := testManifest(t, "1.0.0", 1, hw, "release 1", officers[:2]...)
	v1fw := v1.Body.Firmware
	opts := hsm.Options{TPM: tpm.Config{Addr: sim.Addr()}}

	// The device was provisioned with a key for v1, booted v1 (measured)
	// and committed security version 2 at some point.
	dir := t.TempDir()
	node1, _ := SealedKeyPath(dir, "node", "1.0.0")
	info, err := hsm.GenerateSealedTo(ctx, "tpm-sealed:"+node1, v1fw.PCRValues(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node@0.9.0.sealed"), []byte("an older release's copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	extend(t, sim, v1fw.Measurement())
	func() {
		conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c, err := tpm.DefineCounter(ctx, conn, tpm.FirmwareCounterIndex)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Advance(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}()

	var logs bytes.Buffer
	k := &updateService{log: slog.New(slog.NewTextHandler(&logs, nil)), keyDir: dir, tpm: sim.Addr(), counterIndex: tpm.FirmwareCounterIndex,
		policy: imagetest.Policy(2, officers...), release: images.Release{Version: "1.0.0", SecurityVersion: 1, Hardware: hw},
		measurement: v1fw.Measurement()}
	srv := httptest.NewServer(k.handler())
	defer srv.Close()
	post := func(body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+CarryPath, "application/cbor", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	enc := func(m *images.Manifest) []byte {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	node2, _ := SealedKeyPath(dir, "node", "2.0.0")

	refusals := []struct {
		name   string
		body   []byte
		status int
		why    string
	}{
		{"not a manifest", []byte("garbage"), http.StatusBadRequest, "malformed"},
		{"one signature of two", enc(testManifest(t, "2.0.0", 2, hw, "release 2", officers[0])), http.StatusForbidden, "not enough valid release signatures"},
		{"signed by strangers", enc(testManifest(t, "2.0.0", 2, hw, "release 2", imagetest.Keys(t, 2)...)), http.StatusForbidden, "not enough valid release signatures"},
		{"other hardware", enc(testManifest(t, "2.0.0", 2, "other-box", "release 2", officers[1:]...)), http.StatusForbidden, `hardware "other-box"`},
		{"below the floor", enc(testManifest(t, "2.0.0", 1, hw, "release 2", officers[1:]...)), http.StatusForbidden, "below the anti-rollback floor 2"},
		{"the running release", enc(v1), http.StatusForbidden, "running release"},
		{"a version no file can name", enc(testManifest(t, "2.0/evil", 2, hw, "release 2", officers[1:]...)), http.StatusForbidden, "only letters"},
	}
	for _, tc := range refusals {
		status, body := post(tc.body)
		if status != tc.status || !strings.Contains(body, tc.why) {
			t.Errorf("%s: %d %q, want %d and %q", tc.name, status, body, tc.status, tc.why)
		}
		if _, err := os.Stat(node2); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: a refused request wrote %s", tc.name, node2)
		}
	}

	v2 := testManifest(t, "2.0.0", 2, hw, "release 2", officers[0], officers[2])
	status, body := post(enc(v2))
	if status != http.StatusOK {
		t.Fatalf("carry to v2: %d %s", status, body)
	}
	var got struct{ Keys []Resealed }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 1 || got.Keys[0].Name != "node" || got.Keys[0].KeyID != info.KeyID || got.Keys[0].To != node2 {
		t.Fatalf("carried %+v, want node %s to %s", got.Keys, info.KeyID, node2)
	}
	if !strings.Contains(logs.String(), `msg="key carried to the next release" key=node keyId=`+info.KeyID.String()+" to=2.0.0") {
		t.Fatalf("log: %s", logs.String())
	}
	if status, body := post(enc(v2)); status != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Fatalf("carrying twice: %d %s", status, body)
	}

	// After a reboot into v2: v2's copy opens, with the same identity;
	// v1's copy does not.
	sim.Restart()
	extend(t, sim, v2.Body.Firmware.Measurement())
	s, err := hsm.Open(ctx, "tpm-sealed:"+node2, opts)
	if err != nil {
		t.Fatalf("v2's copy under v2: %v", err)
	}
	if s.KeyID() != info.KeyID {
		t.Fatalf("v2's copy is key %s, provisioned %s", s.KeyID(), info.KeyID)
	}
	s.Close()
	if _, err := hsm.Open(ctx, "tpm-sealed:"+node1, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("v1's copy under v2: %v", err)
	}
}

func TestSealedKeyPathRefusesUnsafeNames(t *testing.T) {
	if p, err := SealedKeyPath("/data/keys", "node", "1.4.0-rc.1+b2"); err != nil || p != "/data/keys/node@1.4.0-rc.1+b2.sealed" {
		t.Fatalf("%q, %v", p, err)
	}
	for _, bad := range [][2]string{{"node", "../x"}, {"node", ""}, {"no/de", "1"}, {".node", "1"}, {"node", "1 0"}, {"node", strings.Repeat("9", 65)}} {
		if _, err := SealedKeyPath("/data/keys", bad[0], bad[1]); err == nil {
			t.Errorf("SealedKeyPath(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestUpdatesConfigPolicy(t *testing.T) {
	ks := imagetest.Keys(t, 2)
	var hexKeys []string
	for _, k := range ks {
		pk := k.PublicKey().Bytes()
		hexKeys = append(hexKeys, hex.EncodeToString(pk[:]))
	}
	base := Config{Node: NodeConfig{Command: []string{"/bin/hallmarkd"}}}
	good := base
	good.Updates = UpdatesConfig{Listen: ":7409", ReleaseKeys: hexKeys, Threshold: 2}
	if _, err := WriteConfig(good); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]UpdatesConfig{
		"no keys":           {Listen: ":7409", Threshold: 1},
		"threshold too big": {Listen: ":7409", ReleaseKeys: hexKeys, Threshold: 3},
		"not hex":           {Listen: ":7409", ReleaseKeys: []string{"zz"}, Threshold: 1},
		"same key twice":    {Listen: ":7409", ReleaseKeys: []string{hexKeys[0], hexKeys[0]}, Threshold: 1},
	} {
		c := base
		c.Updates = u
		if _, err := WriteConfig(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The update service installs a signed release into the slot the device
// is not running from, and refuses, before writing anything, while the
// running release is on trial, and a release that is unsigned or below
// the anti-rollback floor.
func TestUpdateServiceInstalls(t *testing.T) {
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	officers := imagetest.Keys(t, 3)
	policy := imagetest.Policy(2, officers...)
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	release := func(version string, sv uint64) imagetest.Built {
		spec := imagetest.SmallSpec(t, init)
		spec.Version, spec.SecurityVersion = version, sv
		b := imagetest.Build(t, spec)
		imagetest.Sign(t, b.Manifest, officers[1:]...)
		return b
	}
	v1, v2, old := release("1.0.0", 2), release("2.0.0", 2), release("0.9.0", 1)
	hw := v1.Manifest.Body.Firmware.Hardware

	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(disk, make([]byte, v1.Manifest.Body.ImageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	flashImage(t, disk, v1, policy, hw)
	func() { // the device committed security version 2
		conn, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c, err := tpm.DefineCounter(ctx, conn, tpm.FirmwareCounterIndex)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Advance(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}()
	state := func() bootctl.State {
		dev, err := flash.OpenDevice(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		st, _, err := flash.DeviceState(dev)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	committed := false
	k := &updateService{log: slog.New(slog.DiscardHandler), keyDir: t.TempDir(), tpm: sim.Addr(), counterIndex: tpm.FirmwareCounterIndex,
		policy: policy, release: images.Release{Version: "1.0.0", SecurityVersion: 2, Hardware: hw},
		measurement: v1.Manifest.Body.Firmware.Measurement(),
		disk:        disk, booted: bootctl.SlotA, committed: func() bool { return committed }, tmpDir: t.TempDir()}
	srv := httptest.NewServer(k.handler())
	defer srv.Close()
	install := func(b imagetest.Built, m *images.Manifest) (int, string) {
		t.Helper()
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		enc, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		fw, _ := mw.CreateFormFile("manifest", "release.manifest")
		fw.Write(enc)
		slot, err := os.ReadFile(b.Slot)
		if err != nil {
			t.Fatal(err)
		}
		fw, _ = mw.CreateFormFile("slot", "release.slot")
		fw.Write(slot)
		mw.Close()
		resp, err := http.Post(srv.URL+InstallPath, mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}

	before := state()
	if status, body := install(v2, v2.Manifest); status != http.StatusConflict || !strings.Contains(body, "has not committed yet") {
		t.Fatalf("install while the running release has not committed: %d %s", status, body)
	}
	committed = true
	unsigned := *v2.Manifest
	unsigned.Signatures = unsigned.Signatures[:1]
	if status, body := install(v2, &unsigned); status != http.StatusForbidden || !strings.Contains(body, "not enough valid release signatures") {
		t.Fatalf("install of a release below the threshold: %d %s", status, body)
	}
	if status, body := install(old, old.Manifest); status != http.StatusForbidden || !strings.Contains(body, "anti-rollback floor") {
		t.Fatalf("install below the anti-rollback floor: %d %s", status, body)
	}
	if status, body := install(v1, v2.Manifest); status != http.StatusForbidden || !strings.Contains(body, "refused, nothing written") {
		t.Fatalf("install of a payload that is not the manifest's: %d %s", status, body)
	}
	if after := state(); after != before {
		t.Fatalf("a refused install changed boot control: %+v", after)
	}

	status, body := install(v2, v2.Manifest)
	if status != http.StatusOK {
		t.Fatalf("install of v2: %d %s", status, body)
	}
	var got Installed
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Slot != "B" || got.Version != "2.0.0" {
		t.Fatalf("install answer %s (%v)", body, err)
	}
	st := state()
	if st.Trial != bootctl.SlotB || st.B.State != bootctl.Trial || st.B.Firmware != v2.Manifest.Body.Firmware || st.Active != bootctl.SlotA {
		t.Fatalf("boot control after the install: %+v", st)
	}
}

// flashImage flashes a built release onto the disk file, as an installer
// would.
func flashImage(t *testing.T, disk string, b imagetest.Built, policy images.Policy, hardware string) {
	t.Helper()
	dev, err := flash.OpenDevice(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	img, err := os.Open(b.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := flash.Flash(context.Background(), img, int64(b.Manifest.Body.ImageSize), b.Manifest, policy, dev, flash.Target{Hardware: hardware}, nil); err != nil {
		t.Fatal(err)
	}
}
