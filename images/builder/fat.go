package builder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// fatFile is one file of a FAT filesystem the builder writes. FAT names
// are case-insensitive; names here are plain 8.3-compatible names in the
// root directory.
type fatFile struct {
	name string // e.g. "/vmlinuz"
	data []byte
}

// writeFAT creates a FAT32 filesystem of size bytes on storage at offset
// start and writes files into its root directory, in name order. Every
// timestamp is then set to epoch (see normalizeFATTimes) so the result
// does not depend on when it was built.
func writeFAT(storage backend.Storage, rw readerWriterAt, start, size int64, label string, files []fatFile, epoch time.Time) error {
	fs, err := fat32.Create(storage, size, start, 512, label, true)
	if err != nil {
		return fmt.Errorf("builder: create FAT32 %s: %w", label, err)
	}
	sorted := append([]fatFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, f := range sorted {
		h, err := fs.OpenFile(f.name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("builder: create %s on %s: %w", f.name, label, err)
		}
		if _, err := h.Write(f.data); err != nil {
			h.Close()
			return fmt.Errorf("builder: write %s on %s: %w", f.name, label, err)
		}
		if err := h.Close(); err != nil {
			return fmt.Errorf("builder: close %s on %s: %w", f.name, label, err)
		}
	}
	return normalizeFATTimes(rw, start, epoch)
}

type readerWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// dosDateTime converts t to FAT's date and time fields (2-second
// resolution, years 1980-2107).
func dosDateTime(t time.Time) (date, clock uint16) {
	t = t.UTC()
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	clock = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, clock
}

// normalizeFATTimes rewrites the creation, access and modification stamps
// of every directory entry of the FAT32 filesystem at offset start to t.
// go-diskfs stamps entries with the wall clock; this makes them a function
// of the build inputs. It walks every directory reachable from the root.
func normalizeFATTimes(rw readerWriterAt, start int64, t time.Time) error {
	bs := make([]byte, 512)
	if _, err := rw.ReadAt(bs, start); err != nil {
		return fmt.Errorf("builder: read FAT boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	nfats := int64(bs[16])
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:40]))
	root := binary.LittleEndian.Uint32(bs[44:48])
	if bps != 512 || spc == 0 || nfats == 0 || fatSectors == 0 || root < 2 {
		return errors.New("builder: not a FAT32 boot sector")
	}
	clusterSize := bps * spc
	fatStart := start + reserved*bps
	dataStart := fatStart + nfats*fatSectors*bps
	date, clock := dosDateTime(t)

	next := func(c uint32) (uint32, error) {
		var e [4]byte
		if _, err := rw.ReadAt(e[:], fatStart+int64(c)*4); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(e[:]) & 0x0fffffff, nil
	}
	visited := make(map[uint32]bool)
	dirs := []uint32{root}
	for len(dirs) > 0 {
		c := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		for c >= 2 && c < 0x0ffffff8 {
			if visited[c] {
				return fmt.Errorf("builder: FAT cluster %d reached twice", c)
			}
			visited[c] = true
			off := dataStart + int64(c-2)*clusterSize
			buf := make([]byte, clusterSize)
			if _, err := rw.ReadAt(buf, off); err != nil {
				return fmt.Errorf("builder: read FAT directory: %w", err)
			}
			end := false
			for i := 0; i+32 <= len(buf); i += 32 {
				e := buf[i : i+32]
				if e[0] == 0 {
					end = true
					break
				}
				if e[0] == 0xe5 || e[11] == 0x0f { // deleted, long-name part
					continue
				}
				e[13] = 0
				binary.LittleEndian.PutUint16(e[14:16], clock)
				binary.LittleEndian.PutUint16(e[16:18], date)
				binary.LittleEndian.PutUint16(e[18:20], date)
				binary.LittleEndian.PutUint16(e[22:24], clock)
				binary.LittleEndian.PutUint16(e[24:26], date)
				name := string(e[0:11])
				if e[11]&0x10 != 0 && name != ".          " && name != "..         " {
					sub := uint32(binary.LittleEndian.Uint16(e[20:22]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:28]))
					dirs = append(dirs, sub)
				}
			}
			if _, err := rw.WriteAt(buf, off); err != nil {
				return fmt.Errorf("builder: write FAT directory: %w", err)
			}
			if end {
				break
			}
			var err error
			if c, err = next(c); err != nil {
				return fmt.Errorf("builder: read FAT: %w", err)
			}
		}
	}
	return nil
}
