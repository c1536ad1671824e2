package builder

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// archive is a deterministic cpio "newc" archive under construction, the
// format the kernel unpacks as an initramfs. Every entry has uid and gid
// 0, the same mtime, and inode numbers assigned in path order, so the same
// entries always give the same bytes.
type archive struct {
	entries map[string]*cpioEntry
}

type cpioEntry struct {
	mode  uint32 // type and permission bits, as in stat(2)
	data  []byte
	major uint32 // for device nodes
	minor uint32
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChar = 0o020000
)

func newArchive() *archive { return &archive{entries: make(map[string]*cpioEntry)} }

func cleanArchivePath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" || strings.Contains(p, "\x00") {
		return "", fmt.Errorf("builder: bad initramfs path %q", p)
	}
	return c[1:], nil
}

func (a *archive) mkdirAll(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = &cpioEntry{mode: cpioDir | 0o755}
		}
	}
}

// addDir adds a directory (and its parents).
func (a *archive) addDir(p string, perm fs.FileMode) error {
	c, err := cleanArchivePath(p)
	if err != nil {
		return err
	}
	if e, ok := a.entries[c]; ok && e.mode&cpioDir == 0 {
		return fmt.Errorf("builder: %s is both a file and a directory", p)
	}
	a.mkdirAll(c)
	a.entries[c] = &cpioEntry{mode: cpioDir | uint32(perm.Perm())}
	return nil
}

// addFile adds a regular file (and its parent directories).
func (a *archive) addFile(p string, data []byte, perm fs.FileMode) error {
	c, err := cleanArchivePath(p)
	if err != nil {
		return err
	}
	if _, ok := a.entries[c]; ok {
		return fmt.Errorf("builder: %s added twice to the initramfs", p)
	}
	a.mkdirAll(c)
	a.entries[c] = &cpioEntry{mode: cpioFile | uint32(perm.Perm()), data: data}
	return nil
}

// addCharDev adds a character device node.
func (a *archive) addCharDev(p string, perm fs.FileMode, major, minor uint32) error {
	c, err := cleanArchivePath(p)
	if err != nil {
		return err
	}
	a.mkdirAll(c)
	a.entries[c] = &cpioEntry{mode: cpioChar | uint32(perm.Perm()), major: major, minor: minor}
	return nil
}

// bytes returns the archive, entries in path order, with mtime set on
// every entry.
func (a *archive) bytes(mtime int64) []byte {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for i, n := range names {
		e := a.entries[n]
		nlink := uint32(1)
		if e.mode&cpioDir != 0 {
			nlink = 2
		}
		writeCPIOHeader(&buf, uint32(i+1), e.mode, nlink, uint32(mtime), uint32(len(e.data)), e.major, e.minor, n)
		buf.Write(e.data)
		pad4(&buf)
	}
	writeCPIOHeader(&buf, 0, 0, 1, 0, 0, 0, 0, "TRAILER!!!")
	return buf.Bytes()
}

func writeCPIOHeader(buf *bytes.Buffer, ino, mode, nlink, mtime, size, rmajor, rminor uint32, name string) {
	fmt.Fprintf(buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	buf.WriteString(name)
	buf.WriteByte(0)
	pad4(buf)
}

func pad4(buf *bytes.Buffer) {
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
}
