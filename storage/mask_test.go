package storage_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/storage"
)

// fragments returns needles to look for: the whole payload, and 32-byte
// pieces every 1 KiB and at its end, so that a partial remnant is caught
// too, and so that a payload split over non-adjacent disk blocks is still
// found on a raw device.
func fragments(p []byte) [][]byte {
	out := [][]byte{p}
	for off := 0; off+32 <= len(p); off += 1024 {
		out = append(out, p[off:off+32])
	}
	return append(out, p[len(p)-32:])
}

func assertGone(t *testing.T, dir string, p []byte) {
	t.Helper()
	for i, f := range fragments(p) {
		if hits := scanDir(t, dir, f); len(hits) > 0 {
			t.Fatalf("fragment %d of the masked payload remains in %v", i, hits)
		}
	}
}

func assertPresent(t *testing.T, dir string, p []byte) {
	t.Helper()
	if len(scanDir(t, dir, p)) == 0 {
		t.Fatal("the scan does not find a payload that is stored: it could not detect a remnant either")
	}
}

func TestMaskErasesEveryStoredByte(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 4)
	secret := c.randomBytes(8 << 10)
	other1, other2 := c.randomBytes(5000), c.randomBytes(7000)
	commit(t, s, c.block(blockSpec{txs: 2, payloads: [][]byte{other1}}))
	commit(t, s, c.block(blockSpec{txs: 2, payloads: [][]byte{secret, other2}}))
	commit(t, s, c.block(blockSpec{txs: 2}))
	assertPresent(t, dir, secret)

	d := gm.SM3(secret)
	mask := storage.Mask{Digest: d, Time: time.Now().UnixMilli(), Height: 2, By: "regulator-1", Reason: "unlawful content"}
	audit := &storage.AuditEntry{Time: mask.Time, Actor: "regulator-1", Action: "payload.mask", Record: d.String(), Outcome: "ok"}
	if err := s.MaskPayload(ctx, mask, audit); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Payload(d); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("masked payload read: %v, want ErrMasked", err)
	}
	assertGone(t, dir, secret)
	// Neighbours in the same segment are untouched.
	for _, p := range [][]byte{other1, other2} {
		if got, err := s.Payload(gm.SM3(p)); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("neighbouring payload: %v", err)
		}
	}
	// The masked payload is refused when it comes again.
	if err := s.PutPayload(ctx, secret); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("PutPayload of a masked payload: %v", err)
	}
	commit(t, s, c.block(blockSpec{txs: 1, payloads: [][]byte{secret}}))
	assertGone(t, dir, secret)
	if m, err := s.Masked(d); err != nil || m.By != "regulator-1" {
		t.Fatalf("mask record: %+v, %v", m, err)
	}

	// A mask carried by a block erases as part of the commit.
	b := c.block(blockSpec{txs: 1})
	b.Masks = []storage.Mask{{Digest: gm.SM3(other1), Time: time.Now().UnixMilli(), Height: b.Block.Header.Height, By: "regulator-1"}}
	commit(t, s, b)
	assertGone(t, dir, other1)
	if _, err := s.Payload(gm.SM3(other1)); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("payload masked by a block: %v", err)
	}

	// The audit trail of the mask is there.
	var actions []string
	s.AuditRange(ctx, time.UnixMilli(0), time.Now().Add(time.Hour), func(r storage.AuditRecord) error {
		actions = append(actions, r.Entry.Action)
		return nil
	})
	if len(actions) != 1 || actions[0] != "payload.mask" {
		t.Fatalf("audit entries %v", actions)
	}
	s.Close()
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	assertGone(t, dir, secret)
	if _, err := s.Payload(d); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("after reopen: %v", err)
	}
}

// A crash after the mask committed in bbolt but before the bytes were
// zeroed: Open finishes the erasure.
func TestMaskInterruptedBeforeErasureIsFinishedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	secret := c.randomBytes(4096)
	commit(t, s, c.block(blockSpec{txs: 1, payloads: [][]byte{secret}}))
	s.Close()
	d := gm.SM3(secret)

	// Write by hand the state MaskPayload's first transaction leaves.
	db, err := bolt.Open(filepath.Join(dir, "hallmark.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		loc := bytes.Clone(tx.Bucket([]byte("payloads")).Get(d[:]))
		if loc == nil {
			t.Fatal("payload not indexed")
		}
		key := append(bytes.Clone(d[:]), loc[:12]...) // digest ‖ segment ‖ offset
		if err := tx.Bucket([]byte("erase_pending")).Put(key, loc); err != nil {
			return err
		}
		enc, err := ledger.Marshal(&storage.Mask{Digest: d, Time: 1, By: "regulator"})
		if err != nil {
			return err
		}
		if err := tx.Bucket([]byte("masks")).Put(d[:], enc); err != nil {
			return err
		}
		return tx.Bucket([]byte("payloads")).Delete(d[:])
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	assertPresent(t, dir, secret)

	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	assertGone(t, dir, secret)
	if _, err := s.Payload(d); !errors.Is(err, storage.ErrMasked) {
		t.Fatalf("got %v", err)
	}
}

// A crash after payload bytes reached a segment but before the block's
// bbolt transaction committed: Open zeroes and drops those bytes, in the
// active segment and in a segment the append had just started.
func TestUncommittedPayloadBytesAreErasedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	kept := c.randomBytes(3000)
	commit(t, s, c.block(blockSpec{txs: 1, payloads: [][]byte{kept}}))
	s.Close()

	orphan1, orphan2 := c.randomBytes(2000), c.randomBytes(2500)
	seg := filepath.Join(dir, "payloads", "00000000.seg")
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(orphan1)
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "payloads", "00000001.seg"), orphan2, 0o600); err != nil {
		t.Fatal(err)
	}
	assertPresent(t, dir, orphan1)

	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	assertGone(t, dir, orphan1)
	assertGone(t, dir, orphan2)
	if got, err := s.Payload(gm.SM3(kept)); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("committed payload: %v", err)
	}
	info, _ := os.Stat(seg)
	if info.Size() != int64(len(kept)) {
		t.Fatalf("segment is %d bytes, want %d", info.Size(), len(kept))
	}
}

// Payload segments roll over at the configured size; masking works in any.
func TestPayloadSegmentsRollOver(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{PayloadSegmentBytes: 10_000})
	defer s.Close()
	c := newChain(t, 1)
	var ps [][]byte
	for range 6 {
		p := c.randomBytes(4000)
		ps = append(ps, p)
		commit(t, s, c.block(blockSpec{txs: 1, payloads: [][]byte{p}}))
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "payloads", "*.seg"))
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3 of two payloads each", len(segs))
	}
	for _, p := range ps {
		if got, err := s.Payload(gm.SM3(p)); err != nil || !bytes.Equal(got, p) {
			t.Fatal(err)
		}
	}
	if err := s.MaskPayload(ctx, storage.Mask{Digest: gm.SM3(ps[2]), Time: 1, By: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	assertGone(t, dir, ps[2])
}

// The strongest check: run the store on an ext4 file system in a loop
// image, mask, unmount, and scan the raw image, so that blocks the file
// system freed are searched as well as the files.
func TestMaskLeavesNoBytesOnTheDevice(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (e2fsprogs)")
	}
	work := t.TempDir()
	img := filepath.Join(work, "fs.img")
	mnt := filepath.Join(work, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image (needs CAP_SYS_ADMIN and loop devices): %v: %s", err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if err := syscall.Unmount(mnt, 0); err != nil {
				t.Errorf("unmount: %v", err)
				syscall.Unmount(mnt, syscall.MNT_DETACH)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount)

	dir := filepath.Join(mnt, "store")
	s := openStore(t, dir, storage.Options{})
	t.Cleanup(func() { s.Close() }) // runs before the unmount
	c := newChain(t, 4)
	secret := c.randomBytes(64 << 10)
	// The first payload fills one 4 KiB block, so the secret starts on a
	// block boundary and none of its 32-byte fragments (taken every 1 KiB)
	// straddles two blocks, which the file system may place apart.
	commit(t, s, c.block(blockSpec{txs: 3, payloads: [][]byte{c.randomBytes(4096)}}))
	commit(t, s, c.block(blockSpec{txs: 3, payloads: [][]byte{secret}}))
	commit(t, s, c.block(blockSpec{txs: 3}))
	raw := readDirect(t, img)
	for i, f := range fragments(secret)[1:] {
		if !bytes.Contains(raw, f) {
			t.Fatalf("fragment %d of the payload is not visible in the raw image after its fsync'd commit: the scan would prove nothing", i)
		}
	}
	if err := s.MaskPayload(ctx, storage.Mask{Digest: gm.SM3(secret), Time: 1, By: "regulator"}, nil); err != nil {
		t.Fatal(err)
	}
	// Keep using the store after the mask, then close and unmount.
	commit(t, s, c.block(blockSpec{txs: 3, payloads: [][]byte{c.randomBytes(5000)}}))
	s.Close()
	unmount()

	raw = readDirect(t, img)
	for i, f := range fragments(secret) {
		if bytes.Contains(raw, f) {
			t.Fatalf("fragment %d of the masked payload remains on the device", i)
		}
	}
	t.Logf("scanned %d bytes of the raw ext4 image: no fragment of the masked payload", len(raw))
}

// readDirect reads a file with O_DIRECT, bypassing the page cache: the
// loop device may write to its backing file with direct I/O, so cached
// pages of the image could be stale.
func readDirect(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open %s with O_DIRECT: %v", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const align = 4096
	mem := make([]byte, int(info.Size())+align)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&mem[0])) % align); r != 0 {
		shift = align - r
	}
	buf := mem[shift : shift+int(info.Size())]
	for off := 0; off < len(buf); {
		n, err := f.ReadAt(buf[off:min(off+1<<20, len(buf))], int64(off))
		if n == 0 && err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		off += n
	}
	return buf
}
