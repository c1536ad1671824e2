package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"hallmark/firmware/config"
)

// The runtime section reaches the Go runtime: both settings are read back
// from it (each Set returns the previous value), and a limit of 0 is the
// runtime's own "no limit".
func TestApplyRuntime(t *testing.T) {
	gc0 := debug.SetGCPercent(100)
	limit0 := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc0)
		debug.SetMemoryLimit(limit0)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gc, limit := 300, int64(200<<20)
	applyRuntime(config.Runtime{GCPercent: &gc, MemoryLimit: &limit}, log)
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("gc percent %d, want 300", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Errorf("memory limit %d, want %d", got, 200<<20)
	}
	off, none := -1, int64(0)
	applyRuntime(config.Runtime{GCPercent: &off, MemoryLimit: &none}, log)
	if got := debug.SetGCPercent(100); got != -1 {
		t.Errorf("gc percent %d, want -1", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d, want none (MaxInt64)", got)
	}
}
