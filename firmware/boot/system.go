package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mountEarly mounts the kernel filesystems an init needs. A filesystem
// that is already mounted (EBUSY) is fine.
func mountEarly() error {
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("boot: mkdir %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("boot: mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

// loadModules loads the kernel modules listed (one path a line) in list,
// in order. A module already loaded or built in is fine.
func loadModules(log *slog.Logger, list string) error {
	b, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boot: module list: %w", err)
	}
	n := 0
	for _, p := range strings.Fields(string(b)) {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("boot: module: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("boot: load module %s: %w", filepath.Base(p), err)
		}
		n++
	}
	log.Info("kernel modules loaded", "count", n)
	return nil
}

// findPartitions waits until a partition with each of names exists and
// returns the device path of each. Partitions are found by GPT name
// (PARTNAME in sysfs), so disk numbering does not matter. Two partitions
// with the same name (say, a second Hallmark disk plugged in) is an error.
func findPartitions(ctx context.Context, names []string, wait time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(wait)
	for {
		found, err := scanPartitions()
		if err != nil {
			return nil, err
		}
		out := make(map[string]string, len(names))
		var missing []string
		for _, n := range names {
			devs := found[n]
			switch len(devs) {
			case 0:
				missing = append(missing, n)
			case 1:
				out[n] = devs[0]
			default:
				return nil, fmt.Errorf("boot: more than one partition is named %s: %v", n, devs)
			}
		}
		if len(missing) == 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("boot: partitions %v did not appear within %v", missing, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// wholeDisk returns the device of the disk that holds partition part
// (e.g. /dev/vda for /dev/vda4), from sysfs, where a partition is a
// directory inside its disk's.
func wholeDisk(part string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", filepath.Base(part)))
	if err != nil {
		return "", fmt.Errorf("boot: disk of %s: %w", part, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
		return "", fmt.Errorf("boot: %s is not a partition", part)
	}
	disk := "/dev/" + filepath.Base(filepath.Dir(dir))
	if _, err := os.Stat(disk); err != nil {
		return "", fmt.Errorf("boot: disk of %s: %w", part, err)
	}
	return disk, nil
}

func scanPartitions() (map[string][]string, error) {
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return nil, fmt.Errorf("boot: list block devices: %w", err)
	}
	out := make(map[string][]string)
	for _, e := range entries {
		f, err := os.Open(filepath.Join("/sys/class/block", e.Name(), "uevent"))
		if err != nil {
			continue
		}
		var devname, partname string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "DEVNAME":
				devname = v
			case "PARTNAME":
				partname = v
			}
		}
		f.Close()
		if devname != "" && partname != "" {
			out[partname] = append(out[partname], "/dev/"+devname)
		}
	}
	return out, nil
}

// mountData mounts the data partition.
func mountData(dev, options string) error {
	if err := os.MkdirAll(DataDir, 0o755); err != nil {
		return fmt.Errorf("boot: mkdir %s: %w", DataDir, err)
	}
	// MS_DIRSYNC: FAT keeps a file's existence, size and first cluster in
	// its directory's entries, which fsync of the file does not write when
	// the directory itself is new; without it a power cut within the
	// kernel's writeback delay of creating the node's store directory
	// loses the whole store although every block was fsync'd (seen in
	// make test-boot). With it, creating, renaming and removing entries
	// reach the disk before the call returns.
	if err := unix.Mount(dev, DataDir, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME|unix.MS_DIRSYNC, options); err != nil {
		return fmt.Errorf("boot: mount data partition %s: %w", dev, err)
	}
	return nil
}

// halt syncs, unmounts the data partition and reboots or powers off.
func halt(log *slog.Logger, reboot bool) {
	unix.Sync()
	if err := unix.Unmount(DataDir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		log.Warn("unmount data partition", "err", err)
	}
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		log.Error("reboot system call failed", "err", err)
	}
}
