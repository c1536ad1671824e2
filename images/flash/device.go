package flash

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Device is a block device, or a regular file standing in for one, opened
// for writing.
type Device struct {
	f     *os.File
	size  int64
	block bool
}

// OpenDevice opens path read-write. A block device is opened exclusively,
// so the kernel refuses one that is mounted or otherwise in use. A file
// must already exist: its size is the device size.
func OpenDevice(path string) (*Device, error) { return openDevice(path, true) }

// OpenRunningDisk opens the disk the running system booted from, whose
// partitions are mounted, without the exclusive claim OpenDevice makes
// (the kernel would refuse it). Only the booted system's updater uses it,
// for Update, which never writes the slot it runs from.
func OpenRunningDisk(path string) (*Device, error) { return openDevice(path, false) }

func openDevice(path string, exclusive bool) (*Device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("flash: device: %w", err)
	}
	flags := os.O_RDWR
	block := fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	switch {
	case block && exclusive:
		flags |= unix.O_EXCL
	case block:
	case fi.Mode().IsRegular():
	default:
		return nil, fmt.Errorf("flash: %s is neither a block device nor a regular file", path)
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("flash: %s is in use (mounted?): %w", path, err)
		}
		return nil, fmt.Errorf("flash: open device: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flash: size of %s: %w", path, err)
	}
	return &Device{f: f, size: size, block: block}, nil
}

// Size returns the device size in bytes.
func (d *Device) Size() int64 { return d.size }

// Name returns the path the device was opened with.
func (d *Device) Name() string { return d.f.Name() }

// File returns the underlying file.
func (d *Device) File() *os.File { return d.f }

// ReadAt reads from the device.
func (d *Device) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt writes to the device; writes past its end fail.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("flash: write of %d bytes at %d past the end of a %d-byte device", len(p), off, d.size)
	}
	return d.f.WriteAt(p, off)
}

// Sync flushes written data to the device.
func (d *Device) Sync() error { return d.f.Sync() }

// DropCache syncs and then asks the kernel to forget cached pages of the
// device, so that the next reads come from the medium and a read-back
// check means something.
func (d *Device) DropCache() error {
	if err := d.f.Sync(); err != nil {
		return err
	}
	if d.block {
		// BLKFLSBUF flushes and invalidates the block device's buffers.
		if err := unix.IoctlSetInt(int(d.f.Fd()), unix.BLKFLSBUF, 0); err == nil {
			return nil
		}
	}
	return unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }
