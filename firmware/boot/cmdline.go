package boot

import (
	"fmt"
	"strings"

	"hallmark/images/bootctl"
)

// CmdlineSlotKey is the kernel command line parameter through which the
// bootloader tells the init which slot it booted.
const CmdlineSlotKey = "hallmark.slot"

// parseCmdline splits a kernel command line into key=value parameters
// (flags without "=" map to ""). Quotes are not interpreted: Hallmark's
// parameters never contain spaces.
func parseCmdline(s string) map[string]string {
	out := make(map[string]string)
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

// BootedSlot returns the slot named on the kernel command line.
func BootedSlot(cmdline string) (bootctl.Slot, error) {
	v, ok := parseCmdline(cmdline)[CmdlineSlotKey]
	if !ok {
		return bootctl.SlotNone, fmt.Errorf("boot: kernel command line has no %s= (the bootloader must name the slot)", CmdlineSlotKey)
	}
	return bootctl.ParseSlot(v)
}
