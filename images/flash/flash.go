// Package flash writes Hallmark releases to devices: a whole disk image
// onto a blank or retired device (Flash), or a release's slot payload into
// the inactive root slot of a running device (Update). Both check
// everything before writing a byte: release signatures and threshold, the
// target hardware, the anti-rollback floor, the device size, and the
// digest of every byte to be written. Both read back what they wrote.
package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/bootctl"
)

// Refusals. Each is returned before anything is written.
var (
	ErrWrongHardware = errors.New("flash: release is for other hardware")
	ErrRollback      = errors.New("flash: release is older than the device's anti-rollback floor")
	ErrTooSmall      = errors.New("flash: device too small")
	ErrLayout        = errors.New("flash: device does not have a Hallmark partition layout")
)

// RefusedError wraps every error returned before the first byte was
// written: the device is as it was.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return "refused, nothing written: " + e.Err.Error() }

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

func refused(err error) error { return &RefusedError{Err: err} }

// ErrReadBack means the device did not return what was written.
var ErrReadBack = errors.New("flash: read-back mismatch")

// Phase names a stage of a long operation.
type Phase string

// Phases reported to a Progress.
const (
	PhaseVerify   Phase = "verify"
	PhaseWrite    Phase = "write"
	PhaseReadBack Phase = "read back"
)

// Progress hears how far a phase is.
type Progress func(phase Phase, done, total int64)

func (p Progress) phase(ph Phase) images.Progress {
	if p == nil {
		return nil
	}
	return func(done, total int64) { p(ph, done, total) }
}

// Target is what the caller knows about the device being flashed.
type Target struct {
	// Hardware is the device's hardware id.
	Hardware string
	// RollbackFloor is the device's anti-rollback counter.
	RollbackFloor uint64
}

// Report says what was written.
type Report struct {
	ManifestID gm.Digest
	Firmware   images.Firmware
	Signers    []gm.KeyID
	Slot       bootctl.Slot
	Written    int64
	Elapsed    time.Duration
}

// checkRelease runs the checks common to Flash and Update.
func checkRelease(m *images.Manifest, policy images.Policy, hardware string, floor uint64) (images.Verification, error) {
	v, err := m.Verify(policy)
	if err != nil {
		return v, err
	}
	fw := m.Body.Firmware
	if fw.Hardware != hardware {
		return v, fmt.Errorf("%w: release targets %q, device is %q", ErrWrongHardware, fw.Hardware, hardware)
	}
	if fw.SecurityVersion < floor {
		return v, fmt.Errorf("%w: release %s has security version %d, device accepts %d or newer", ErrRollback, fw.Version, fw.SecurityVersion, floor)
	}
	return v, nil
}

// Flash writes a whole disk image to dev. image must be exactly the image
// the manifest describes. After the image it stores the signed manifest
// in the boot control partition, so the device knows what it runs.
func Flash(ctx context.Context, image io.ReaderAt, imageSize int64, m *images.Manifest, policy images.Policy, dev *Device, target Target, progress Progress) (Report, error) {
	start := time.Now()
	v, err := checkRelease(m, policy, target.Hardware, target.RollbackFloor)
	if err != nil {
		return Report{}, refused(err)
	}
	body := &m.Body
	if dev.Size() < int64(body.ImageSize) {
		return Report{}, refused(fmt.Errorf("%w: image needs %d bytes, %s has %d", ErrTooSmall, body.ImageSize, dev.Name(), dev.Size()))
	}
	bc, ok := body.Part(images.PartBootctl)
	if !ok {
		return Report{}, refused(fmt.Errorf("%w: manifest has no %s part", images.ErrMalformed, images.PartBootctl))
	}
	encoded, err := m.Encode()
	if err != nil {
		return Report{}, refused(err)
	}
	if err := images.VerifyImage(ctx, image, imageSize, body, progress.phase(PhaseVerify)); err != nil {
		return Report{}, refused(err)
	}

	// Verified: write.
	if err := copyRange(ctx, dev, 0, image, 0, imageSize, progress.phase(PhaseWrite)); err != nil {
		return Report{}, err
	}
	if err := dev.DropCache(); err != nil {
		return Report{}, fmt.Errorf("flash: flush %s: %w", dev.Name(), err)
	}
	if err := images.VerifyImage(ctx, dev, int64(body.ImageSize), body, progress.phase(PhaseReadBack)); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrReadBack, err)
	}

	store := bootctl.NewStore(dev, int64(bc.Offset))
	if err := store.WriteManifest(bootctl.SlotA, encoded); err != nil {
		return Report{}, err
	}
	got, err := store.ReadManifest(bootctl.SlotA)
	if err != nil || string(got) != string(encoded) {
		return Report{}, fmt.Errorf("%w: stored manifest: %v", ErrReadBack, err)
	}
	return Report{
		ManifestID: v.ID,
		Firmware:   body.Firmware,
		Signers:    v.Trusted,
		Slot:       bootctl.SlotA,
		Written:    imageSize,
		Elapsed:    time.Since(start),
	}, nil
}

// copyRange copies size bytes from src at srcOff to dst at dstOff.
func copyRange(ctx context.Context, dst io.WriterAt, dstOff int64, src io.ReaderAt, srcOff, size int64, progress images.Progress) error {
	buf := make([]byte, 1<<20)
	var sinceReport int64
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-done)
		if _, err := src.ReadAt(buf[:n], srcOff+done); err != nil {
			return fmt.Errorf("flash: read at %d: %w", srcOff+done, err)
		}
		if _, err := dst.WriteAt(buf[:n], dstOff+done); err != nil {
			return fmt.Errorf("flash: write at %d: %w", dstOff+done, err)
		}
		done += n
		sinceReport += n
		if progress != nil && (sinceReport >= 4<<20 || done == size) {
			progress(done, size)
			sinceReport = 0
		}
	}
	return nil
}

// Partitions locates the Hallmark partitions of a device.
type Partitions struct {
	Bootctl, SlotA, SlotB, Data Extent
}

// Extent is a byte range on a device.
type Extent struct{ Offset, Size int64 }

// Slot returns the extent of slot s.
func (p Partitions) Slot(s bootctl.Slot) Extent {
	if s == bootctl.SlotB {
		return p.SlotB
	}
	return p.SlotA
}

// Locate reads dev's GPT and finds the Hallmark partitions by name.
func Locate(dev *Device) (Partitions, error) {
	d, err := diskfs.OpenBackend(file.New(dev.File(), true))
	if err != nil {
		return Partitions{}, fmt.Errorf("%w: %v", ErrLayout, err)
	}
	pt, err := d.GetPartitionTable()
	if err != nil {
		return Partitions{}, fmt.Errorf("%w: %s: %v", ErrLayout, dev.Name(), err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		return Partitions{}, fmt.Errorf("%w: %s has no GPT", ErrLayout, dev.Name())
	}
	found := make(map[string]Extent)
	for _, p := range table.Partitions {
		off := int64(p.Start) * int64(table.LogicalSectorSize)
		size := int64(p.End-p.Start+1) * int64(table.LogicalSectorSize)
		if off+size > dev.Size() {
			return Partitions{}, fmt.Errorf("%w: partition %s runs past the end of %s", ErrLayout, p.Name, dev.Name())
		}
		found[p.Name] = Extent{off, size}
	}
	var out Partitions
	for name, dst := range map[string]*Extent{
		images.PartBootctl: &out.Bootctl, images.PartSlotA: &out.SlotA,
		images.PartSlotB: &out.SlotB, images.PartData: &out.Data,
	} {
		e, ok := found[name]
		if !ok {
			return Partitions{}, fmt.Errorf("%w: %s has no partition named %s", ErrLayout, dev.Name(), name)
		}
		*dst = e
	}
	if out.Bootctl.Size < bootctl.PartitionSize {
		return Partitions{}, fmt.Errorf("%w: boot control partition of %d bytes", ErrLayout, out.Bootctl.Size)
	}
	return out, nil
}

// DeviceState returns the boot control state of a device that holds a
// Hallmark layout.
func DeviceState(dev *Device) (bootctl.State, Partitions, error) {
	parts, err := Locate(dev)
	if err != nil {
		return bootctl.State{}, parts, err
	}
	st, err := bootctl.NewStore(dev, parts.Bootctl.Offset).Load()
	return st, parts, err
}

// UpdateOptions shape an update.
type UpdateOptions struct {
	// Booted is the slot the device runs from; SlotNone means the device
	// is offline and its active slot counts as booted.
	Booted bootctl.Slot
	// RollbackFloor is the device's anti-rollback counter.
	RollbackFloor uint64
	// Tries is how many boots the new slot gets to commit (default 1).
	Tries uint8
}

// Update writes a release's slot payload into the slot the device is not
// running from and marks it to be tried on the next boot. The slot
// commits itself once the node comes up healthy on it; otherwise the
// bootloader falls back (see package bootctl).
func Update(ctx context.Context, payload io.ReaderAt, payloadSize int64, m *images.Manifest, policy images.Policy, dev *Device, opts UpdateOptions, progress Progress) (Report, error) {
	start := time.Now()
	st, parts, err := DeviceState(dev)
	if err != nil {
		return Report{}, refused(err)
	}
	v, err := checkRelease(m, policy, st.Hardware, opts.RollbackFloor)
	if err != nil {
		return Report{}, refused(err)
	}
	fw := m.Body.Firmware
	booted := opts.Booted
	if booted == bootctl.SlotNone {
		booted = st.Active
	}
	target, prepared, err := st.PrepareInstall(booted)
	if err != nil {
		return Report{}, refused(err)
	}
	ext := parts.Slot(target)
	if int64(fw.SlotSize) > ext.Size {
		return Report{}, refused(fmt.Errorf("%w: slot payload of %d bytes, slot %s holds %d", ErrTooSmall, fw.SlotSize, target, ext.Size))
	}
	encoded, err := m.Encode()
	if err != nil {
		return Report{}, refused(err)
	}
	if err := images.VerifySlot(ctx, payload, payloadSize, fw, progress.phase(PhaseVerify)); err != nil {
		return Report{}, refused(err)
	}
	tries := opts.Tries
	if tries == 0 {
		tries = 1
	}

	// Verified: from here the device changes. First make the target slot
	// unbootable, so an interrupted write can never be booted.
	store := bootctl.NewStore(dev, parts.Bootctl.Offset)
	saved, err := store.Save(st, prepared)
	if err != nil {
		return Report{}, err
	}
	if err := store.ClearManifest(target); err != nil {
		return Report{}, err
	}
	if err := copyRange(ctx, dev, ext.Offset, payload, 0, payloadSize, progress.phase(PhaseWrite)); err != nil {
		return Report{}, err
	}
	if err := dev.DropCache(); err != nil {
		return Report{}, fmt.Errorf("flash: flush %s: %w", dev.Name(), err)
	}
	if err := images.VerifySlot(ctx, io.NewSectionReader(dev, ext.Offset, int64(fw.SlotSize)), int64(fw.SlotSize), fw, progress.phase(PhaseReadBack)); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrReadBack, err)
	}
	if err := store.WriteManifest(target, encoded); err != nil {
		return Report{}, err
	}
	final, err := saved.FinishInstall(target, fw, tries)
	if err != nil {
		return Report{}, err
	}
	if _, err := store.Save(saved, final); err != nil {
		return Report{}, err
	}
	return Report{
		ManifestID: v.ID,
		Firmware:   fw,
		Signers:    v.Trusted,
		Slot:       target,
		Written:    payloadSize,
		Elapsed:    time.Since(start),
	}, nil
}
