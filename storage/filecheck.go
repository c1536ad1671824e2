package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt maps the whole file and trusts its meta page: if the file was cut
// short (a copy interrupted, a disk that lost its tail), touching a page
// beyond the end of the file kills the process with SIGBUS instead of
// returning an error. checkBoltFile reads the two meta pages itself, picks
// the one bbolt would use, and refuses a file shorter than the high-water
// mark that meta records. The layout read here is bbolt's on-disk format
// version 2 (little-endian on the platforms Hallmark runs on):
//
//	page header: id u64 ‖ flags u16 ‖ count u16 ‖ overflow u32   (16 bytes)
//	meta:        magic u32 ‖ version u32 ‖ page size u32 ‖ flags u32 ‖
//	             root u64 ‖ sequence u64 ‖ freelist u64 ‖ high-water pgid u64 ‖
//	             txid u64 ‖ checksum u64 (FNV-1a 64 of the preceding 56 bytes)
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

func parseBoltMeta(page []byte) (boltMeta, bool) {
	if len(page) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := page[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkBoltFile returns nil for a missing or empty file (bbolt creates it)
// and for a file whose active meta page fits in it.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", path, err)
	}
	size := info.Size()
	if size == 0 {
		return nil
	}
	first := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is %d bytes, shorter than one meta page", ErrTruncated, path, size)
		}
		return fmt.Errorf("storage: read %s: %w", path, err)
	}
	var metas []boltMeta
	m0, ok0 := parseBoltMeta(first)
	if ok0 {
		metas = append(metas, m0)
	}
	// The second meta page sits one page in; its size comes from the first
	// meta, or, if that one is damaged, from the usual page sizes.
	pageSizes := []int64{4096, 8192, 16384, 65536}
	if ok0 {
		pageSizes = []int64{int64(m0.pageSize)}
	}
	for _, ps := range pageSizes {
		buf := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(buf, ps); err != nil {
			continue
		}
		if m1, ok := parseBoltMeta(buf); ok && m1.pageSize == uint32(ps) {
			metas = append(metas, m1)
			break
		}
	}
	if len(metas) == 0 {
		return fmt.Errorf("%w: %s has no valid bbolt meta page (truncated or not a database)", ErrNotStore, path)
	}
	// bbolt uses the valid meta with the higher transaction id.
	active := metas[0]
	for _, m := range metas[1:] {
		if m.txid > active.txid {
			active = m
		}
	}
	if need := int64(active.pgid) * int64(active.pageSize); size < need {
		return fmt.Errorf("%w: %s is %d bytes but its metadata (txid %d) needs %d", ErrTruncated, path, size, active.txid, need)
	}
	return nil
}
