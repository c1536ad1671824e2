package builder_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
	"hallmark/images/imagetest"
)

func TestReproducibleBuild(t *testing.T) {
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	spec := imagetest.SmallSpec(t, init)
	first := imagetest.Build(t, spec)
	// FAT records time in 2-second steps: make sure the second build runs
	// at a different wall-clock time, so clock leaks would show.
	time.Sleep(2100 * time.Millisecond)
	second := imagetest.Build(t, spec)

	for _, pair := range [][2]string{{first.Image, second.Image}, {first.Slot, second.Slot}} {
		a, err := os.ReadFile(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s and %s differ at byte %d", filepath.Base(pair[0]), filepath.Base(pair[1]), firstDiff(a, b))
		}
	}
	m1, _ := first.Manifest.Encode()
	m2, _ := second.Manifest.Encode()
	if !bytes.Equal(m1, m2) {
		t.Fatal("manifests differ")
	}

	// A different input changes the image, the slot digest and the GUIDs.
	spec.Version = "1.0.1"
	third := imagetest.Build(t, spec)
	if third.Manifest.Body.Firmware.SlotDigest == first.Manifest.Body.Firmware.SlotDigest {
		t.Fatal("a different version left the slot digest unchanged")
	}
	if guid(t, third.Image) == guid(t, first.Image) {
		t.Fatal("a different release got the same disk GUID")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func guid(t *testing.T, img string) string {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	return pt.(*gpt.Table).GUID
}

func TestImageContents(t *testing.T) {
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	spec := imagetest.SmallSpec(t, init)
	spec.Epoch = 1718000000
	built := imagetest.Build(t, spec)
	m := built.Manifest

	f, err := os.Open(built.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if err := images.VerifyImage(context.Background(), f, fi.Size(), &m.Body, nil); err != nil {
		t.Fatalf("fresh image does not verify: %v", err)
	}

	// GPT: four named partitions in order.
	d, err := diskfs.Open(built.Image, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	table := pt.(*gpt.Table)
	wantNames := []string{images.PartBootctl, images.PartSlotA, images.PartSlotB, images.PartData}
	if len(table.Partitions) != len(wantNames) {
		t.Fatalf("%d partitions", len(table.Partitions))
	}
	for i, p := range table.Partitions {
		if p.Name != wantNames[i] {
			t.Fatalf("partition %d is %q, want %q", i+1, p.Name, wantNames[i])
		}
		part, ok := m.Body.Part(p.Name)
		if !ok || part.Offset != p.Start*images.SectorSize || part.Size != p.Size {
			t.Fatalf("manifest part %s %+v does not match GPT start %d size %d", p.Name, part, p.Start, p.Size)
		}
	}

	// Slot A: kernel, initramfs, command line, all stamped with the epoch.
	fs, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	kernel, _ := os.ReadFile(spec.Kernel)
	if got := readFS(t, fs, images.SlotKernel); !bytes.Equal(got, kernel) {
		t.Fatal("slot kernel differs from the input kernel")
	}
	if got := string(readFS(t, fs, images.SlotCmdline)); got != "console=ttyS0\n" {
		t.Fatalf("cmdline %q", got)
	}
	entries, err := fs.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, _ := e.Info()
		if !info.ModTime().Equal(time.Unix(spec.Epoch, 0)) {
			t.Errorf("%s has mtime %v, want the epoch %v", e.Name(), info.ModTime().UTC(), time.Unix(spec.Epoch, 0).UTC())
		}
	}

	files := readCPIO(t, gunzip(t, readFS(t, fs, images.SlotInitrd)))
	initBin, _ := os.ReadFile(init)
	if !bytes.Equal(files["init"].data, initBin) || files["init"].mode&0o777 != 0o755 {
		t.Fatal("initramfs /init is not the init binary with mode 0755")
	}
	if files["dev/console"].mode != 0o020600 || files["dev/console"].rdev != [2]uint32{5, 1} {
		t.Fatalf("/dev/console is %o %v", files["dev/console"].mode, files["dev/console"].rdev)
	}
	wantMods := "/lib/modules/6.1.0-test/kernel/y/c-1.ko\n/lib/modules/6.1.0-test/kernel/x/b.ko\n" +
		"/lib/modules/6.1.0-test/kernel/x/a.ko\n/lib/modules/6.1.0-test/kernel/y/d.ko\n"
	if got := string(files["etc/hallmark/modules"].data); got != wantMods {
		t.Fatalf("module list:\n%s\nwant:\n%s", got, wantMods)
	}
	var rel images.Release
	if err := json.Unmarshal(files["etc/hallmark/release.json"].data, &rel); err != nil {
		t.Fatal(err)
	}
	if rel != (images.Release{Version: spec.Version, SecurityVersion: spec.SecurityVersion, Hardware: spec.Hardware}) {
		t.Fatalf("release file %+v", rel)
	}
	if string(files["lib/modules/6.1.0-test/kernel/x/b.ko"].data) != "module b" {
		t.Fatal("module b missing from the initramfs")
	}
	for name, e := range files {
		if e.mtime != uint32(spec.Epoch) {
			t.Fatalf("%s has mtime %d, want %d", name, e.mtime, spec.Epoch)
		}
	}

	// Boot control: A committed with this firmware, B empty.
	bc, _ := m.Body.Part(images.PartBootctl)
	st, err := bootctl.NewStore(f, int64(bc.Offset)).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != bootctl.SlotA || st.A.State != bootctl.Good || st.A.Firmware != m.Body.Firmware || st.B.State != bootctl.Empty {
		t.Fatalf("initial boot control %+v", st)
	}
	if st.Hardware != spec.Hardware {
		t.Fatalf("hardware %q", st.Hardware)
	}

	// The slot payload is slot A's bytes and verifies against the firmware record.
	slot, err := os.Open(built.Slot)
	if err != nil {
		t.Fatal(err)
	}
	defer slot.Close()
	si, _ := slot.Stat()
	if err := images.VerifySlot(context.Background(), slot, si.Size(), m.Body.Firmware, nil); err != nil {
		t.Fatal(err)
	}
	// The data partition is an empty FAT32 filesystem.
	dfs, err := d.GetFilesystem(4)
	if err != nil {
		t.Fatal(err)
	}
	if dfs.Type() != filesystem.TypeFat32 {
		t.Fatalf("data partition type %v", dfs.Type())
	}
	// Inputs: every file is recorded.
	var names []string
	for _, in := range m.Body.Inputs {
		names = append(names, in.Name)
	}
	want := "cmdline,file:/etc/hallmark/init.json,file:/etc/hallmark/release.json,init,kernel,module:a.ko,module:b.ko,module:c-1.ko,module:d.ko"
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("inputs %s, want %s", got, want)
	}
}

func readFS(t *testing.T, fs filesystem.FileSystem, name string) []byte {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type cpioFile struct {
	mode, mtime uint32
	rdev        [2]uint32
	data        []byte
}

// readCPIO parses a newc archive independently of the writer.
func readCPIO(t *testing.T, b []byte) map[string]cpioFile {
	t.Helper()
	out := make(map[string]cpioFile)
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		namesize, filesize := int(field(11)), int(field(6))
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioFile{mode: field(1), mtime: field(5), rdev: [2]uint32{field(9), field(10)}, data: b[dataOff : dataOff+filesize]}
		off = align(dataOff + filesize)
	}
}

func TestBuildRefusesBadInputs(t *testing.T) {
	init := imagetest.BuildStatic(t, "", imagetest.HelloInit)
	spec := imagetest.SmallSpec(t, init)

	dynamic := spec
	dynamic.Init = "/bin/true" // a dynamically linked system binary
	if _, err := os.Stat(dynamic.Init); err == nil {
		if _, err := builder.Build(context.Background(), dynamic, builder.Output{Image: filepath.Join(t.TempDir(), "x.img")}, nil); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Fatalf("dynamic init: %v", err)
		}
	}
	small := spec
	small.SlotSize = 4 << 20
	small.Kernel = filepath.Join(t.TempDir(), "big-vmlinuz")
	if err := os.WriteFile(small.Kernel, imagetest.FakeKernel("6.1.0-test", 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := builder.Build(context.Background(), small, builder.Output{Image: filepath.Join(dir, "x.img")}, nil)
	if err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("oversize slot content: %v", err)
	}

	// A build that fails half way (here: cancelled) leaves nothing behind.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := builder.Build(ctx, spec, builder.Output{Image: filepath.Join(dir, "x.img"), Slot: filepath.Join(dir, "x.slot")}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled build: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("failed build left %v", left)
	}
	unknown := spec
	unknown.Modules = []string{"no_such_module"}
	if _, err := builder.Build(context.Background(), unknown, builder.Output{Image: filepath.Join(t.TempDir(), "x.img")}, nil); err == nil {
		t.Fatal("unknown module accepted")
	}
	noKernel := spec
	noKernel.Kernel = filepath.Join(t.TempDir(), "missing")
	if _, err := builder.Build(context.Background(), noKernel, builder.Output{Image: filepath.Join(t.TempDir(), "x.img")}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing kernel: %v", err)
	}
}

func TestResolveModulesBuiltin(t *testing.T) {
	dir := imagetest.FakeModules(t, "v")
	mods, err := builder.ResolveModules(dir, []string{"builtin-mod", "c_1", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(mods, " "); got != "kernel/y/c-1.ko kernel/x/b.ko" {
		t.Fatalf("modules %q", got)
	}
}

func TestKernelVersion(t *testing.T) {
	v, err := builder.KernelVersion(imagetest.FakeKernel("6.1.0-56-amd64", 0))
	if err != nil || v != "6.1.0-56-amd64" {
		t.Fatalf("KernelVersion = %q, %v", v, err)
	}
	if _, err := builder.KernelVersion(make([]byte, 4096)); err == nil {
		t.Fatal("garbage accepted as a kernel")
	}
}
