// Command hallmarkd-init is the init (PID 1) of a Hallmark image until the
// node daemon, cmd/hallmarkd, takes over that role: it runs package
// firmware/boot, which measures the booted slot, brings the system up and
// supervises the node command named in /etc/hallmark/init.json. Build it
// statically (CGO_ENABLED=0); the image builder refuses anything else.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"hallmark/firmware/boot"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "hallmarkd-init: must run as PID 1 (the kernel's init); it mounts, measures and reboots the machine")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil)).With("unit", "hallmark-init")
	boot.Main(boot.Options{Log: log})
}
