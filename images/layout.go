package images

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
)

// SectorSize is the logical sector size images are laid out for.
const SectorSize = 512

// Alignment of every partition and of the image size.
const Alignment = 1 << 20

// GPT partition names. The booted firmware finds its partitions by these
// names (the kernel exposes them as PARTNAME), never by number.
const (
	PartBootctl = "hm-bootctl"
	PartSlotA   = "hm-slot-a"
	PartSlotB   = "hm-slot-b"
	PartData    = "hm-data"
)

// Names of the regions of the image outside any partition: protective MBR,
// primary GPT and alignment padding at the start; backup GPT and padding
// at the end.
const (
	RegionHead = "gpt-head"
	RegionTail = "gpt-tail"
)

// BootctlSize is the size of the boot control partition.
const BootctlSize = Alignment

// Files inside a slot's FAT filesystem.
const (
	SlotKernel  = "/vmlinuz"
	SlotInitrd  = "/initrd.img"
	SlotCmdline = "/cmdline"
)

// ReleasePath is where the initramfs carries its [Release]. Because it is
// inside the measured slot, the booted firmware can trust what it reads
// there as much as it trusts its own code.
const ReleasePath = "/etc/hallmark/release.json"

// Release is what the firmware knows about itself (JSON at ReleasePath).
type Release struct {
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"securityVersion"`
	Hardware        string `json:"hardware"`
}

// MeasurementPCR is the PCR the booted firmware extends with its
// measurement (see [Firmware.Measurement]) before it unseals any key. It
// is hsm.FirmwarePCR, the PCR tpm-sealed keys are sealed to: PCR 15, in
// the operating system's range, used by neither the platform firmware nor
// Linux, and not resettable without a reboot.
const MeasurementPCR = hsm.FirmwarePCR

// ErrTampered reports image content that does not match its manifest.
var ErrTampered = errors.New("images: content does not match the manifest")

// PredictPCR returns the value a PCR of the bank hashed with h holds after
// it is reset to zero and extended with each measurement in order, the way
// the booted firmware extends it (tpm.ExtendPCR): banks with 32-byte
// digests take the SM3 measurement itself, other banks its digest under
// the bank's hash.
func PredictPCR(h crypto.Hash, measurements ...gm.Digest) []byte {
	ms := make([][]byte, len(measurements))
	for i := range measurements {
		ms[i] = measurements[i][:]
	}
	return tpm.PredictPCR(h, ms...)
}

// Progress receives how many bytes of total are done. It is called from
// the goroutine doing the work, at most every few MiB.
type Progress func(done, total int64)

// progressStep is how often long operations report progress.
const progressStep = 4 << 20

// DigestRange returns SM3 over size bytes of r starting at off.
func DigestRange(ctx context.Context, r io.ReaderAt, off, size int64, report func(n int64)) (gm.Digest, error) {
	h := gm.NewSM3()
	buf := make([]byte, 1<<20)
	var sinceReport int64
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return gm.Digest{}, err
		}
		n := min(int64(len(buf)), size-done)
		if _, err := r.ReadAt(buf[:n], off+done); err != nil {
			return gm.Digest{}, fmt.Errorf("read at %d: %w", off+done, err)
		}
		h.Write(buf[:n])
		done += n
		sinceReport += n
		if report != nil && (sinceReport >= progressStep || done == size) {
			report(sinceReport)
			sinceReport = 0
		}
	}
	var d gm.Digest
	h.Sum(d[:0])
	return d, nil
}

// VerifyImage checks that r, of length size, is exactly the image the body
// describes: the same length and every part's digest. It reads every byte.
func VerifyImage(ctx context.Context, r io.ReaderAt, size int64, body *Body, progress Progress) error {
	if err := body.Validate(); err != nil {
		return err
	}
	if size != int64(body.ImageSize) {
		return fmt.Errorf("%w: image is %d bytes, manifest says %d", ErrTampered, size, body.ImageSize)
	}
	var done int64
	for _, p := range body.Parts {
		d, err := DigestRange(ctx, r, int64(p.Offset), int64(p.Size), func(n int64) {
			done += n
			if progress != nil {
				progress(done, size)
			}
		})
		if err != nil {
			return fmt.Errorf("images: hash part %s: %w", p.Name, err)
		}
		if d != p.Digest {
			return fmt.Errorf("%w: part %s (bytes %d..%d) has digest %s, manifest says %s", ErrTampered, p.Name, p.Offset, p.Offset+p.Size, d, p.Digest)
		}
	}
	return nil
}

// VerifySlot checks that r, of length size, is the slot content the
// firmware record names.
func VerifySlot(ctx context.Context, r io.ReaderAt, size int64, fw Firmware, progress Progress) error {
	if size != int64(fw.SlotSize) {
		return fmt.Errorf("%w: slot content is %d bytes, manifest says %d", ErrTampered, size, fw.SlotSize)
	}
	var done int64
	d, err := DigestRange(ctx, r, 0, size, func(n int64) {
		done += n
		if progress != nil {
			progress(done, size)
		}
	})
	if err != nil {
		return fmt.Errorf("images: hash slot content: %w", err)
	}
	if d != fw.SlotDigest {
		return fmt.Errorf("%w: slot content digest %s, manifest says %s", ErrTampered, d, fw.SlotDigest)
	}
	return nil
}
