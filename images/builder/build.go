// Package builder builds Hallmark disk images reproducibly: the same
// inputs give a byte-identical image. Nothing in an image depends on the
// clock, the build machine or randomness: every timestamp is the build
// epoch, archive entries are sorted, and the GPT disk and partition GUIDs
// are derived from the release's content.
package builder

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/ledger"
)

// Paths inside the initramfs the booted init relies on.
const (
	// InitPath is the init the kernel runs as PID 1.
	InitPath = "/init"
	// ModulesList lists the kernel modules to load, one initramfs path a
	// line, in load order.
	ModulesList = "/etc/hallmark/modules"
	// ModulesRoot is where module files go in the initramfs.
	ModulesRoot = "/lib/modules"
)

// GPT partition type GUIDs. The boot control and slot types are
// Hallmark's own, so that no other system mounts or boots them by
// accident; the data partition is an ordinary Linux data partition.
const (
	TypeBootctl gpt.Type = "08A094C9-EC6D-43DD-BB7C-A79662872F65"
	TypeSlot    gpt.Type = "D5B3BCF2-50F2-462E-B5DE-57928F6B8D12"
	TypeData    gpt.Type = gpt.LinuxFilesystem
)

// DefaultEpoch is the build timestamp when none is given: 2024-01-01 UTC.
const DefaultEpoch = 1704067200

// minEpoch is the earliest time FAT can record (1980-01-01).
const minEpoch = 315532800

// File is one extra file for the initramfs: the contents of Source, or
// Data when Source is empty.
type File struct {
	Path   string
	Source string
	Data   []byte
	Mode   fs.FileMode
}

// Spec is everything a build depends on. Two builds with equal specs (and
// equal input file contents) produce identical images.
type Spec struct {
	// Version, SecurityVersion and Hardware go into the manifest.
	Version         string
	SecurityVersion uint64
	Hardware        string
	// Kernel is an x86 bzImage.
	Kernel string
	// ModulesDir is the kernel's module tree (/lib/modules/<version>);
	// Modules names the modules the init loads, dependencies are added.
	ModulesDir string
	Modules    []string
	// Init is the statically linked init binary.
	Init string
	// Files are extra initramfs files (the node binary, the init's
	// configuration).
	Files []File
	// Cmdline is the kernel command line; the bootloader appends
	// hallmark.slot=A|B.
	Cmdline string
	// SlotSize and DataSize are the sizes of each root slot and of the
	// data partition; both are rounded up to whole MiB.
	SlotSize int64
	DataSize int64
	// Epoch is the timestamp every file and filesystem entry gets
	// (seconds since 1970 UTC); zero means DefaultEpoch.
	Epoch int64
}

// Output names the files a build writes. Both are written under temporary
// names and renamed into place only when complete.
type Output struct {
	// Image is the GPT disk image to flash.
	Image string
	// Slot is the content of root slot A alone: the update payload for
	// devices already running Hallmark. Optional.
	Slot string
}

// Layout gives the byte offsets of an image's partitions.
type Layout struct {
	ImageSize                    int64
	Bootctl, SlotA, SlotB, Data  Extent
	slotPartSize, dataPartSize   int64
	headSize, tailSize           int64
	diskGUID, bootGUID, dataGUID string
	slotAGUID, slotBGUID         string
}

// Extent is a byte range.
type Extent struct{ Offset, Size int64 }

func roundMiB(n int64) int64 {
	return (n + images.Alignment - 1) / images.Alignment * images.Alignment
}

func newLayout(slotSize, dataSize int64) Layout {
	l := Layout{headSize: images.Alignment, tailSize: images.Alignment}
	l.slotPartSize = roundMiB(slotSize)
	l.dataPartSize = roundMiB(dataSize)
	off := l.headSize
	next := func(size int64) Extent {
		e := Extent{Offset: off, Size: size}
		off += size
		return e
	}
	l.Bootctl = next(images.BootctlSize)
	l.SlotA = next(l.slotPartSize)
	l.SlotB = next(l.slotPartSize)
	l.Data = next(l.dataPartSize)
	l.ImageSize = off + l.tailSize
	return l
}

// deriveGUID returns a version-8 (RFC 9562, "custom") UUID that is a
// function of seed and name.
func deriveGUID(seed gm.Digest, name string) string {
	d := gm.SM3Concat([]byte("hallmark/gpt-guid/v1\x00"), seed[:], []byte(name))
	u := d[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u)
	return strings.ToUpper(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

// Build builds the image spec describes, writes it to out, and returns the
// unsigned manifest. progress, if not nil, hears about the final hashing
// pass.
func Build(ctx context.Context, spec Spec, out Output, progress images.Progress) (*images.Manifest, error) {
	if err := checkSpec(&spec); err != nil {
		return nil, err
	}
	epoch := time.Unix(spec.Epoch, 0).UTC()

	var inputs []images.Input
	addInput := func(name string, data []byte) {
		inputs = append(inputs, images.Input{Name: name, Size: uint64(len(data)), Digest: gm.SM3(data)})
	}

	kernel, err := os.ReadFile(spec.Kernel)
	if err != nil {
		return nil, fmt.Errorf("builder: kernel: %w", err)
	}
	kver, err := KernelVersion(kernel)
	if err != nil {
		return nil, err
	}
	addInput("kernel", kernel)

	initrd, err := buildInitramfs(spec, kver, epoch, addInput)
	if err != nil {
		return nil, err
	}
	cmdline := []byte(strings.TrimSpace(spec.Cmdline) + "\n")
	addInput("cmdline", cmdline)
	sort.Slice(inputs, func(i, j int) bool { return inputs[i].Name < inputs[j].Name })

	layout := newLayout(spec.SlotSize, spec.DataSize)
	if int64(len(kernel)+len(initrd)+len(cmdline))+(2<<20) > layout.slotPartSize {
		return nil, fmt.Errorf("builder: kernel (%d bytes) and initramfs (%d bytes) do not fit a %d MiB slot; raise the slot size", len(kernel), len(initrd), layout.slotPartSize>>20)
	}

	tmp, err := createTemp(out.Image)
	if err != nil {
		return nil, err
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Truncate(layout.ImageSize); err != nil {
		return nil, fmt.Errorf("builder: size image: %w", err)
	}
	storage := file.New(tmp, false)

	// Root slot A: a FAT32 filesystem with the kernel, the initramfs and
	// the command line.
	if err := writeFAT(storage, tmp, layout.SlotA.Offset, layout.SlotA.Size, "HMSLOT", []fatFile{
		{name: images.SlotKernel, data: kernel},
		{name: images.SlotInitrd, data: initrd},
		{name: images.SlotCmdline, data: cmdline},
	}, epoch); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slotDigest, err := images.DigestRange(ctx, tmp, layout.SlotA.Offset, layout.SlotA.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("builder: hash slot: %w", err)
	}
	fw := images.Firmware{
		Version:         spec.Version,
		SecurityVersion: spec.SecurityVersion,
		Hardware:        spec.Hardware,
		SlotSize:        uint64(layout.SlotA.Size),
		SlotDigest:      slotDigest,
	}

	// GUIDs derived from the release content and layout.
	seedBytes, err := ledger.Marshal(struct {
		Firmware images.Firmware `cbor:"1,keyasint"`
		Sizes    []int64         `cbor:"2,keyasint"`
	}{fw, []int64{layout.ImageSize, layout.slotPartSize, layout.dataPartSize}})
	if err != nil {
		return nil, fmt.Errorf("builder: encode GUID seed: %w", err)
	}
	seed := gm.SM3(seedBytes)

	d, err := diskfs.OpenBackend(storage, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return nil, fmt.Errorf("builder: open image: %w", err)
	}
	sector := func(off int64) uint64 { return uint64(off / images.SectorSize) }
	part := func(i int, e Extent, typ gpt.Type, name string) *gpt.Partition {
		return &gpt.Partition{
			Index: i, Start: sector(e.Offset), End: sector(e.Offset+e.Size) - 1, Size: uint64(e.Size),
			Type: typ, Name: name, GUID: deriveGUID(seed, "part:"+name),
		}
	}
	table := &gpt.Table{
		LogicalSectorSize:  images.SectorSize,
		PhysicalSectorSize: images.SectorSize,
		ProtectiveMBR:      true,
		GUID:               deriveGUID(seed, "disk"),
		Partitions: []*gpt.Partition{
			part(1, layout.Bootctl, TypeBootctl, images.PartBootctl),
			part(2, layout.SlotA, TypeSlot, images.PartSlotA),
			part(3, layout.SlotB, TypeSlot, images.PartSlotB),
			part(4, layout.Data, TypeData, images.PartData),
		},
	}
	if err := d.Partition(table); err != nil {
		return nil, fmt.Errorf("builder: write GPT: %w", err)
	}

	// Boot control: slot A committed, B empty.
	st := bootctl.Initial(spec.Hardware, fw)
	stBytes, err := bootctl.EncodeCopy(st)
	if err != nil {
		return nil, err
	}
	if _, err := tmp.WriteAt(stBytes, layout.Bootctl.Offset+int64(st.Seq%2)*int64(len(stBytes))); err != nil {
		return nil, fmt.Errorf("builder: write boot control: %w", err)
	}

	// Data partition: an empty FAT32 filesystem the device fills.
	if err := writeFAT(storage, tmp, layout.Data.Offset, layout.Data.Size, "HMDATA", nil, epoch); err != nil {
		return nil, err
	}

	// The manifest: every region's digest.
	body := images.Body{
		Version:    images.ManifestVersion,
		Firmware:   fw,
		ImageSize:  uint64(layout.ImageSize),
		Inputs:     inputs,
		BuildEpoch: spec.Epoch,
	}
	regions := []struct {
		name string
		e    Extent
	}{
		{images.RegionHead, Extent{0, layout.headSize}},
		{images.PartBootctl, layout.Bootctl},
		{images.PartSlotA, layout.SlotA},
		{images.PartSlotB, layout.SlotB},
		{images.PartData, layout.Data},
		{images.RegionTail, Extent{layout.Data.Offset + layout.Data.Size, layout.tailSize}},
	}
	var done int64
	for _, r := range regions {
		dg, err := images.DigestRange(ctx, tmp, r.e.Offset, r.e.Size, func(n int64) {
			done += n
			if progress != nil {
				progress(done, layout.ImageSize)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("builder: hash %s: %w", r.name, err)
		}
		body.Parts = append(body.Parts, images.Part{Name: r.name, Offset: uint64(r.e.Offset), Size: uint64(r.e.Size), Digest: dg})
	}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("builder: produced an invalid manifest: %w", err)
	}

	if out.Slot != "" {
		if err := writeSlotFile(out.Slot, tmp, layout.SlotA); err != nil {
			return nil, err
		}
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("builder: sync image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("builder: close image: %w", err)
	}
	if err := os.Rename(tmp.Name(), out.Image); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	tmp = nil
	return &images.Manifest{Body: body}, nil
}

func checkSpec(spec *Spec) error {
	if spec.Epoch == 0 {
		spec.Epoch = DefaultEpoch
	}
	if spec.Epoch < minEpoch || spec.Epoch > 4102444800 {
		return fmt.Errorf("builder: epoch %d outside 1980..2100 (FAT cannot record it)", spec.Epoch)
	}
	if spec.Kernel == "" || spec.Init == "" {
		return errors.New("builder: a kernel and an init binary are required")
	}
	if spec.SlotSize < 4<<20 {
		return fmt.Errorf("builder: slot size %d below 4 MiB", spec.SlotSize)
	}
	if spec.DataSize < 2<<20 {
		return fmt.Errorf("builder: data size %d below 2 MiB", spec.DataSize)
	}
	if len(spec.Modules) > 0 && spec.ModulesDir == "" {
		return errors.New("builder: modules named without a modules directory")
	}
	fw := images.Firmware{Version: spec.Version, Hardware: spec.Hardware, SlotSize: 1 << 20, SecurityVersion: spec.SecurityVersion}
	probe := images.Body{Version: images.ManifestVersion, Firmware: fw, ImageSize: images.SectorSize,
		Parts: []images.Part{{Name: "x", Size: images.SectorSize}}}
	return probe.Validate()
}

// buildInitramfs returns the gzip-compressed initramfs.
func buildInitramfs(spec Spec, kver string, epoch time.Time, addInput func(string, []byte)) ([]byte, error) {
	a := newArchive()
	for _, dir := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/data", "/etc/hallmark"} {
		if err := a.addDir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if err := a.addCharDev("/dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}

	initBin, err := os.ReadFile(spec.Init)
	if err != nil {
		return nil, fmt.Errorf("builder: init: %w", err)
	}
	if err := checkStatic(initBin); err != nil {
		return nil, fmt.Errorf("builder: init %s: %w", spec.Init, err)
	}
	addInput("init", initBin)
	if err := a.addFile(InitPath, initBin, 0o755); err != nil {
		return nil, err
	}

	var modList []string
	if len(spec.Modules) > 0 {
		mods, err := ResolveModules(spec.ModulesDir, spec.Modules)
		if err != nil {
			return nil, err
		}
		for _, m := range mods {
			data, err := os.ReadFile(filepath.Join(spec.ModulesDir, m))
			if err != nil {
				return nil, fmt.Errorf("builder: module: %w", err)
			}
			p := path.Join(ModulesRoot, kver, m)
			if err := a.addFile(p, data, 0o644); err != nil {
				return nil, err
			}
			addInput("module:"+path.Base(m), data)
			modList = append(modList, p)
		}
	}
	if err := a.addFile(ModulesList, []byte(strings.Join(modList, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}

	release, err := json.Marshal(images.Release{Version: spec.Version, SecurityVersion: spec.SecurityVersion, Hardware: spec.Hardware})
	if err != nil {
		return nil, err
	}
	files := append([]File{{Path: images.ReleasePath, Data: append(release, '\n')}}, spec.Files...)
	for _, f := range files {
		data := f.Data
		if f.Source != "" {
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, fmt.Errorf("builder: initramfs file: %w", err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := a.addFile(f.Path, data, mode); err != nil {
			return nil, err
		}
		addInput("file:"+f.Path, data)
	}

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	// The gzip header carries no name and a zero modification time.
	if _, err := zw.Write(a.bytes(epoch.Unix())); err != nil {
		return nil, fmt.Errorf("builder: compress initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("builder: compress initramfs: %w", err)
	}
	return gz.Bytes(), nil
}

// checkStatic refuses an ELF binary that needs a dynamic loader: the
// initramfs has no libc.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("is dynamically linked (has an ELF interpreter); build it with CGO_ENABLED=0")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v; build it with CGO_ENABLED=0", libs)
	}
	return nil
}

func createTemp(target string) (*os.File, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := target + ".tmp-" + hex.EncodeToString(b[:])
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	return f, nil
}

func writeSlotFile(target string, src io.ReaderAt, e Extent) error {
	f, err := createTemp(target)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, io.NewSectionReader(src, e.Offset, e.Size)); err != nil {
		return fmt.Errorf("builder: write slot payload: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("builder: sync slot payload: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("builder: close slot payload: %w", err)
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return fmt.Errorf("builder: %w", err)
	}
	ok = true
	return nil
}
