package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/storage"
)

func TestOpenRefusesTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 4)
	for range 20 {
		commit(t, s, c.block(blockSpec{txs: 20, dataSize: 500}))
	}
	s.Close()
	path := filepath.Join(dir, "hallmark.db")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// bbolt grows its file ahead of use, so a cut in the unused tail (past
	// the high-water mark of the pages in use) loses nothing and may open;
	// every other cut must be refused, never opened with blocks missing
	// (or crash the process on a page past the end).
	used := boltHighWater(t, path)
	if used > info.Size() {
		t.Fatalf("high-water mark %d past the end of the %d-byte file", used, info.Size())
	}
	for _, size := range []int64{used / 2, used - 4096, info.Size() - 4096, 5000, 100} {
		cut := t.TempDir()
		data, _ := os.ReadFile(path)
		if err := os.WriteFile(filepath.Join(cut, "hallmark.db"), data[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		safety, err := os.ReadFile(filepath.Join(dir, "safety.log"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cut, "safety.log"), safety, 0o600); err != nil {
			t.Fatal(err)
		}
		cs, err := storage.Open(cut, storage.Options{ChainID: "hallmark-test"})
		switch {
		case err == nil:
			tip, _ := cs.Tip()
			cs.Close()
			if size < used || tip.Height != 19 {
				t.Fatalf("file cut to %d of %d bytes opened with tip %d", size, info.Size(), tip.Height)
			}
			verifyChain(t, cut)
			t.Logf("cut to %d bytes: only unused space lost; opens with every block intact", size)
		case !errors.Is(err, storage.ErrTruncated) && !errors.Is(err, storage.ErrNotStore):
			t.Fatalf("cut to %d: %v, want ErrTruncated", size, err)
		default:
			t.Logf("cut to %d bytes: %v", size, err)
		}
	}
	// The original is untouched and opens.
	s = openStore(t, dir, storage.Options{})
	if tip, _ := s.Tip(); tip.Height != 19 {
		t.Fatalf("tip %d", tip.Height)
	}
	s.Close()
}

// mountTmpfs mounts a tmpfs of the given size on a new directory, or
// skips the test if the kernel refuses.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			return path
		}
	}
}

func TestFullDiskLosesNothing(t *testing.T) {
	mnt := mountTmpfs(t, "16m")
	dir := filepath.Join(mnt, "store")
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 4)
	var batches []*storage.Batch
	payloads := [][]byte{}
	for i := range 5 {
		p := c.randomBytes(20_000)
		payloads = append(payloads, p)
		b := forNode(c.block(blockSpec{txs: 10, dataSize: 300, payloads: [][]byte{p}}), 1)
		commit(t, s, b)
		batches = append(batches, b)
		_ = i
	}
	filler := fill(t, mnt)

	// Commits now fail cleanly; try both a block with a payload (the
	// segment write fails) and a larger one without (bbolt fails).
	tip, _ := s.Tip()
	for _, spec := range []blockSpec{
		{txs: 5, payloads: [][]byte{c.randomBytes(200_000)}},
		{txs: 300, dataSize: 2000},
	} {
		saved := *c
		b := forNode(c.block(spec), 1)
		*c = saved
		err := s.CommitBlock(ctx, b)
		if err == nil {
			t.Fatal("commit succeeded on a full disk")
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("commit on a full disk: %v, want ENOSPC in the chain", err)
		}
		t.Logf("commit on a full disk: %v", err)
		if now, _ := s.Tip(); now.ID != tip.ID {
			t.Fatal("tip moved")
		}
	}
	checkBlocks := func(s *storage.Store) {
		t.Helper()
		for h, b := range batches {
			blk, err := s.Block(ctx, uint64(h), nil)
			if err != nil || blk.ID() != b.Block.ID() {
				t.Fatalf("block %d after the full disk: %v", h, err)
			}
			if got, err := s.Payload(gm.SM3(payloads[h])); err != nil || !bytes.Equal(got, payloads[h]) {
				t.Fatalf("payload %d: %v", h, err)
			}
		}
	}
	checkBlocks(s)
	if err := s.Close(); err != nil {
		t.Logf("close on a full disk: %v", err)
	}
	// Reopen while the disk is still full, then free space and go on.
	s = openStore(t, dir, storage.Options{})
	checkBlocks(s)
	if tip2, _ := s.Tip(); tip2.ID != tip.ID {
		t.Fatalf("tip after reopen %d, want %d", tip2.Height, tip.Height)
	}
	os.Remove(filler)
	commit(t, s, forNode(c.block(blockSpec{txs: 5, payloads: [][]byte{c.randomBytes(1000)}}), 1))
	checkBlocks(s)
	s.Close()
}

// The SIGKILL test: a child process streams commits and reports each
// committed height; the parent kills it mid-stream, reopens, and checks
// that every reported block is present and intact. It runs three rounds,
// each child continuing the chain the last one left.
const sigkillEnv = "HALLMARK_STORAGE_SIGKILL_CHILD"

func TestCommitSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv(sigkillEnv); dir != "" {
		sigkillChild(dir)
		return
	}
	dir := t.TempDir()
	reported := uint64(0)
	gotAny := false
	for round, killAfter := range []int{7, 13, 23} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCommitSurvivesSIGKILL$", "-test.count=1")
		cmd.Env = append(os.Environ(), sigkillEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			h, ok := strings.CutPrefix(sc.Text(), "committed ")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(h, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			reported, gotAny = n, true
			if seen++; seen == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if seen < killAfter {
			t.Fatalf("round %d: child stopped after %d commits", round, seen)
		}
		tip := verifyChain(t, dir)
		if tip < reported || tip > reported+1 {
			t.Fatalf("round %d: tip %d after the child reported %d", round, tip, reported)
		}
		t.Logf("round %d: killed after reporting height %d; store tip %d, all blocks intact", round, reported, tip)
	}
	if !gotAny {
		t.Fatal("no commit reported")
	}
}

// verifyChain opens the store and checks every block from genesis to the
// tip: links, bodies against headers, shards against roots, payloads
// against digests, and the state each block wrote.
func verifyChain(t *testing.T, dir string) uint64 {
	t.Helper()
	s := openStore(t, dir, storage.Options{Window: 1 << 20})
	defer s.Close()
	tip, ok := s.Tip()
	if !ok {
		t.Fatal("empty store")
	}
	var prev ledger.BlockID
	for h := uint64(0); h <= tip.Height; h++ {
		blk, err := s.Block(ctx, h, nil)
		if err != nil {
			t.Fatalf("block %d: %v", h, err)
		}
		if blk.Header.PrevHash != prev {
			t.Fatalf("block %d does not link", h)
		}
		if err := blk.CheckBody(); err != nil {
			t.Fatalf("block %d: %v", h, err)
		}
		if _, err := s.Shard(h); err != nil {
			t.Fatalf("shard %d: %v", h, err)
		}
		v, _, err := s.Get(fmt.Appendf(nil, "prev/%08d", h))
		if err != nil || !bytes.Equal(v, prev[:]) {
			t.Fatalf("state of block %d: %v", h, err)
		}
		for _, tx := range blk.Txs {
			if d := tx.Body.PayloadDigest; d != nil {
				if _, err := s.Payload(*d); err != nil {
					t.Fatalf("payload in block %d: %v", h, err)
				}
			}
		}
		prev = blk.ID()
	}
	v, _, err := s.Get([]byte("height"))
	if err != nil || binary.BigEndian.Uint64(v) != tip.Height {
		t.Fatalf("state height %x, tip %d", v, tip.Height)
	}
	if _, _, err := s.Get(fmt.Appendf(nil, "prev/%08d", tip.Height+1)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("state of an uncommitted block is present")
	}
	return tip.Height
}

// sigkillChild continues the chain in dir until killed, printing each
// committed height.
func sigkillChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, err := storage.Open(dir, storage.Options{ChainID: "hallmark-test", Window: 1 << 20})
	if err != nil {
		fail(err)
	}
	c := newChain(childTB{}, 4)
	if tip, ok := s.Tip(); ok {
		// Resume: rebuild the chain state from the tip.
		c.next = tip.Height + 1
		c.prevID = tip.ID
		c.stateRoot = tip.Header.StateRoot
		c.nonce = uint64(time.Now().UnixNano())
	}
	for {
		b := c.block(blockSpec{txs: 20, dataSize: 400, payloads: [][]byte{c.randomBytes(3000)}})
		b.ShardIndex = 2
		if err := s.CommitBlock(context.Background(), b); err != nil {
			fail(err)
		}
		fmt.Printf("committed %d\n", b.Block.Header.Height)
	}
}

// childTB lets the chain helper run outside a test, in the child process.
type childTB struct{ testing.TB }

func (childTB) Helper() {}
func (childTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(2)
}
func (childTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

// boltHighWater returns the bytes of a bbolt file that hold pages in use.
func boltHighWater(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}
