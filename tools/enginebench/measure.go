package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTime is the CPU time (user + system) of the whole process: every
// thread, so background flushes, compactions and the Go GC count.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// ioCounters are the process's I/O counters from /proc/self/io.
type ioCounters struct {
	writeBytes int64 // bytes sent to the block layer (or dirtied in the page cache)
	writeCalls int64 // write-family syscalls (write, pwrite, writev)
}

func readIO() (ioCounters, error) {
	var c ioCounters
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return c, fmt.Errorf("read /proc/self/io: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, val, ok := bytes.Cut(sc.Bytes(), []byte(": "))
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil {
			return c, fmt.Errorf("/proc/self/io %s: %w", name, err)
		}
		switch string(name) {
		case "write_bytes":
			c.writeBytes = v
		case "syscw":
			c.writeCalls = v
		}
	}
	return c, sc.Err()
}

// dirSize returns the allocated bytes of the files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += fi.Size()
		}
		return nil
	})
	return total, err
}

// platform is what the primitive durable-write syscalls cost here.
type platform struct {
	pwriteCPU    time.Duration // one 4 KiB pwrite into the page cache
	fdatasyncCPU time.Duration // one fdatasync after one dirty 4 KiB page
	fdatasyncW   time.Duration // its wall time
}

// measurePlatform times, in a 64 MiB file of its own under dir, writes
// 4 KiB pwrites to random pages, then syncs rounds of one pwrite and one
// fdatasync; the fdatasync's cost is the round's minus the pwrite's.
func measurePlatform(dir string, writes, syncs int) (platform, error) {
	var p platform
	f, err := os.CreateTemp(dir, "platform-*.dat")
	if err != nil {
		return p, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const fileBytes = 64 << 20
	page := make([]byte, 4096)
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < fileBytes; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			return p, err
		}
	}
	fd := int(f.Fd())
	if err := unix.Fsync(fd); err != nil {
		return p, err
	}
	rng := rand.New(rand.NewPCG(7, 7))
	offset := func() int64 { return int64(rng.IntN(fileBytes/4096)) * 4096 }

	c0, err := cpuTime()
	if err != nil {
		return p, err
	}
	for range writes {
		page[0]++
		if _, err := unix.Pwrite(fd, page, offset()); err != nil {
			return p, err
		}
	}
	c1, err := cpuTime()
	if err != nil {
		return p, err
	}
	p.pwriteCPU = (c1 - c0) / time.Duration(writes)
	if err := unix.Fdatasync(fd); err != nil {
		return p, err
	}

	c0, err = cpuTime()
	if err != nil {
		return p, err
	}
	t0 := time.Now()
	for range syncs {
		page[0]++
		if _, err := unix.Pwrite(fd, page, offset()); err != nil {
			return p, err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return p, err
		}
	}
	wall := time.Since(t0)
	c1, err = cpuTime()
	if err != nil {
		return p, err
	}
	p.fdatasyncCPU = (c1-c0)/time.Duration(syncs) - p.pwriteCPU
	p.fdatasyncW = wall / time.Duration(syncs)
	return p, nil
}
