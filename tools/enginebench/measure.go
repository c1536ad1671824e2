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
//
// wchar is exact: the bytes handed to write-family syscalls. write_bytes
// is what the kernel accounts as sent to storage, charged when a page
// cache folio turns dirty. On kernels with large folios on ext4 (6.18
// here) that charges the whole folio for a 4 KiB write into a file whose
// cache holds large folios, so it overstates in-place writers (bbolt) by
// up to two orders of magnitude; it is kept for reference only.
type ioCounters struct {
	wchar      int64 // bytes passed to write, pwrite, writev
	writeBytes int64 // kernel write_bytes (folio-granular, see above)
	writeCalls int64 // write-family syscalls
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
		case "wchar":
			c.wchar = v
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

// platform is what the primitive durable-write syscalls cost here, in a
// file whose page cache holds large folios (written 1 MiB at a time, as a
// bbolt file that grew by large writes) and in one written 4 KiB at a time.
type platform struct {
	fill         int           // bytes per write when the file was filled
	pwriteCPU    time.Duration // one 4 KiB pwrite into the page cache
	fdatasyncCPU time.Duration // one fdatasync after one dirty 4 KiB page
	fdatasyncW   time.Duration // its wall time
}

// measurePlatform times, in a 64 MiB file of its own under dir, writes
// 4 KiB pwrites to random pages, then syncs rounds of one pwrite and one
// fdatasync; the fdatasync's cost is the round's minus the pwrite's.
func measurePlatform(dir string, fill, writes, syncs int) (platform, error) {
	p := platform{fill: fill}
	f, err := os.CreateTemp(dir, "platform-*.dat")
	if err != nil {
		return p, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const fileBytes = 64 << 20
	page := make([]byte, 4096)
	chunk := make([]byte, fill)
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

// dropCache asks the kernel to drop the (clean, synced) page cache of
// every file under dir, then reads every file back 4 KiB at a time with
// readahead off, so that the cache is warm again but made of 4 KiB folios.
func dropCache(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", path, err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", path, err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
			return fmt.Errorf("fadvise %s: %w", path, err)
		}
		page := make([]byte, 4096)
		for off := int64(0); ; off += int64(len(page)) {
			n, err := unix.Pread(int(f.Fd()), page, off)
			if err != nil {
				return fmt.Errorf("read %s: %w", path, err)
			}
			if n < len(page) {
				return nil
			}
		}
	})
}

// residentMemory returns the process's anonymous and file-backed resident
// bytes (RssAnon and RssFile of /proc/self/status).
func residentMemory() (anon, file int64, err error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/self/status: %w", err)
	}
	for line := range bytes.Lines(data) {
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "RssAnon":
			dst = &anon
		case "RssFile":
			dst = &file
		default:
			continue
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(val), []byte(" kB"))), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/status %s: %w", name, err)
		}
		*dst = kb << 10
	}
	return anon, file, nil
}
