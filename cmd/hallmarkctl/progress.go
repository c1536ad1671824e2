package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows how far a long operation is: a redrawn bar on a
// terminal, a line every few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	label    string
	start    time.Time
	last     time.Time
	lastFrac float64
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && isTerminal(f)}
}

// update reports done of total bytes for the phase label.
func (p *progress) update(label string, done, total int64) {
	now := time.Now()
	if label != p.label {
		p.finish()
		p.label, p.start, p.last, p.lastFrac = label, now, time.Time{}, -1
	}
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3) / (1 << 20)
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r%-10s [%s%s] %5.1f%% %7.1f MiB/s", label, strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, rate)
		return
	}
	if done == total || now.Sub(p.last) >= 5*time.Second || frac-p.lastFrac >= 0.25 {
		fmt.Fprintf(p.w, "%s: %d of %d MiB (%.0f%%, %.1f MiB/s)\n", label, done>>20, total>>20, 100*frac, rate)
		p.last, p.lastFrac = now, frac
	}
}

// finish ends the current bar.
func (p *progress) finish() {
	if p.tty && p.label != "" {
		fmt.Fprintln(p.w)
	}
	p.label = ""
}
