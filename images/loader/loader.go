// Package loader is the bootloader's half of A/B booting, in Go: it reads
// the boot control of a Hallmark disk, decides which slot to boot (spending
// a trial's try or falling back from a failed one), persists that decision,
// and returns the kernel, initramfs and command line of the chosen slot.
//
// Under qemu it stands in for a bootloader: the caller hands the files to
// qemu's -kernel/-initrd/-append. A hardware appliance runs the same
// decision in its real bootloader (see docs/IMAGES.md).
package loader

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/flash"
)

// Selection is what to boot.
type Selection struct {
	Boot     bootctl.Boot
	Firmware images.Firmware
	Kernel   []byte
	Initrd   []byte
	// Cmdline is the slot's command line with hallmark.slot= appended.
	Cmdline string
}

// Select makes and persists the boot decision for dev and reads the
// chosen slot's boot files.
func Select(dev *flash.Device) (Selection, error) {
	st, parts, err := flash.DeviceState(dev)
	if err != nil {
		return Selection{}, err
	}
	b, next, err := st.Select()
	if err != nil {
		return Selection{}, err
	}
	if next != st {
		if _, err := bootctl.NewStore(dev, parts.Bootctl.Offset).Save(st, next); err != nil {
			return Selection{}, err
		}
	}
	sel := Selection{Boot: b, Firmware: next.Record(b.Slot).Firmware}
	ext := parts.Slot(b.Slot)
	fs, err := fat32.Read(file.New(dev.File(), true), ext.Size, ext.Offset, images.SectorSize)
	if err != nil {
		return sel, fmt.Errorf("loader: slot %s filesystem: %w", b.Slot, err)
	}
	read := func(name string) ([]byte, error) {
		f, err := fs.OpenFile(name, os.O_RDONLY)
		if err != nil {
			return nil, fmt.Errorf("loader: slot %s: %s: %w", b.Slot, name, err)
		}
		defer f.Close()
		return io.ReadAll(f)
	}
	if sel.Kernel, err = read(images.SlotKernel); err != nil {
		return sel, err
	}
	if sel.Initrd, err = read(images.SlotInitrd); err != nil {
		return sel, err
	}
	cmdline, err := read(images.SlotCmdline)
	if err != nil {
		return sel, err
	}
	sel.Cmdline = strings.TrimSpace(string(cmdline)) + " hallmark.slot=" + b.Slot.String()
	return sel, nil
}
