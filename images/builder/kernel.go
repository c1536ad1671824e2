package builder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// KernelVersion reads the version string an x86 bzImage carries in its
// setup header (the "kernel_version" field), e.g. "6.1.0-56-amd64".
func KernelVersion(bzImage []byte) (string, error) {
	const hdr = 0x1f1
	if len(bzImage) < 0x210 || string(bzImage[0x202:0x206]) != "HdrS" {
		return "", errors.New("builder: kernel is not an x86 bzImage (no HdrS setup header)")
	}
	off := int(binary.LittleEndian.Uint16(bzImage[0x20e:0x210])) + 0x200
	if off <= hdr || off >= len(bzImage) {
		return "", errors.New("builder: kernel has no version string")
	}
	s := bzImage[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 {
		return "", errors.New("builder: kernel has an empty version string")
	}
	return fields[0], nil
}

// DefaultKernel returns the newest /boot/vmlinuz-* on this machine (by
// name, which sorts Debian's versions correctly within one series), or an
// error naming the package to install.
func DefaultKernel() (string, error) {
	matches, err := filepath.Glob("/boot/vmlinuz-*")
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", errors.New("builder: no kernel in /boot (install linux-image-amd64, or name a kernel file)")
	}
	sort.Strings(matches)
	return matches[len(matches)-1], nil
}

// ResolveModules returns the module files (paths relative to modulesDir)
// needed to load the named modules, dependencies first, each once. Names
// may use '-' or '_'. Modules built into the kernel (modules.builtin) are
// skipped; an unknown module is an error.
func ResolveModules(modulesDir string, names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	byName := make(map[string]string, len(deps))
	for p := range deps {
		byName[moduleName(p)] = p
	}
	var order []string
	done := make(map[string]bool)
	var visit func(p string, depth int) error
	visit = func(p string, depth int) error {
		if done[p] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("builder: module dependency loop at %s", p)
		}
		for _, d := range deps[p] {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		done[p] = true
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		key := strings.ReplaceAll(n, "-", "_")
		if builtin[key] {
			continue
		}
		p, ok := byName[key]
		if !ok {
			return nil, fmt.Errorf("builder: module %q is neither in %s/modules.dep nor built in", n, modulesDir)
		}
		if err := visit(p, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

func readModulesDep(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("builder: kernel modules: %w", err)
	}
	defer f.Close()
	deps := make(map[string][]string)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("builder: read %s: %w", file, err)
	}
	return deps, nil
}

func readBuiltin(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("builder: kernel modules: %w", err)
	}
	out := make(map[string]bool)
	for _, line := range strings.Fields(string(b)) {
		out[moduleName(line)] = true
	}
	return out, nil
}
