package storage_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/storage"
)

// Saves, releases and drops survive a reopen; each save or release is one
// write and one fdatasync; saving a block already kept with the same bytes
// (a leader's proposal, then its vote) does not write it again.
func TestSafetyLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))

	wantSafety(t, s, safetyState{kept: []storage.KeptBlock{}})
	b1, b2, b2b, b3 := keptBlock(1, 1, 150_000), keptBlock(2, 1, 2000), keptBlock(2, 2, 2000), keptBlock(3, 1, 10)
	// Same height and id as b2, different last byte: written again.
	b2changed := storage.KeptBlock{Height: b2.Height, ID: b2.ID, Data: slices.Clone(b2.Data)}
	b2changed.Data[len(b2changed.Data)-1] ^= 1
	st0 := s.SafetyStats()
	steps := []func() error{
		func() error { return s.SaveSafety(ctx, []byte("propose 1"), b1) },
		func() error { return s.SaveSafety(ctx, []byte("vote 1"), b1) }, // same bytes: not written again
		func() error { return s.SaveSafety(ctx, []byte("vote 2"), b2, b2b) },
		func() error { return s.ReleaseKept(ctx, b2b.ID, ledger.BlockID{0xEE}) },
		func() error { return s.SaveSafety(ctx, []byte("vote 2"), b2changed) },
		func() error { return s.SaveSafety(ctx, []byte{}, b3) }, // an empty record is a record
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	st := s.SafetyStats()
	if st.Writes-st0.Writes != 6 || st.Syncs-st0.Syncs != 6 {
		t.Fatalf("%d writes and %d fdatasyncs for 5 saves and a release, want 6 of each", st.Writes-st0.Writes, st.Syncs-st0.Syncs)
	}
	if err := s.ReleaseKept(ctx, ledger.BlockID{0xEE}); err != nil { // nothing kept: nothing written
		t.Fatal(err)
	}
	if s.SafetyStats().Writes != st.Writes {
		t.Fatal("a release of blocks not kept wrote a frame")
	}
	if n := st.Bytes - st0.Bytes; n > 150_000+3*2000+10+700 || n < 150_000+3*2000+10 {
		t.Fatalf("%d bytes written: the block saved twice was written twice, or a changed one not at all", n)
	}
	want := safetyState{record: "", hasRecord: true, kept: []storage.KeptBlock{b1, b2changed, b3}}
	wantSafety(t, s, want)
	s.Close()
	s = openStore(t, dir, storage.Options{})
	wantSafety(t, s, want)

	// A commit at height 1 hides block 1 at once and drops it with the
	// next save; a crash before that save (here: a close) brings it back
	// into the log but not into KeptBlocks.
	commit(t, s, c.block(blockSpec{txs: 1}))
	want.kept = want.kept[1:]
	wantSafety(t, s, want)
	s.Close()
	s = openStore(t, dir, storage.Options{})
	wantSafety(t, s, want)
	if err := s.SaveSafety(ctx, []byte("vote 4")); err != nil {
		t.Fatal(err)
	}
	want.record = "vote 4"
	wantSafety(t, s, want)
	s.Close()
	if _, err := s.LoadSafety(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("LoadSafety after Close: %v, want ErrClosed", err)
	}
	if err := s.SaveSafety(ctx, []byte("x")); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("SaveSafety after Close: %v, want ErrClosed", err)
	}
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	wantSafety(t, s, want)
}

// Through Open: a torn or damaged last frame gives the state before it;
// damage in an earlier frame is ErrCorrupt.
func TestSafetyLogDamageOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	before := safetyState{record: "round 1", hasRecord: true, kept: []storage.KeptBlock{keptBlock(1, 1, 5000)}}
	if err := s.SaveSafety(ctx, []byte(before.record), before.kept...); err != nil {
		t.Fatal(err)
	}
	mid := s.SafetyStats().Bytes
	if err := s.SaveSafety(ctx, []byte("round 2"), keptBlock(2, 1, 3000)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, "safety.log")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := int64(len(orig)) - (s.SafetyStats().Bytes - mid)
	reopen := func(data []byte) (*storage.Store, error) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return storage.Open(dir, storage.Options{ChainID: ledgertest.ChainID})
	}
	for _, cut := range []int64{lastStart + 1, lastStart + 15, lastStart + 16, lastStart + 2000, int64(len(orig)) - 1} {
		s, err := reopen(orig[:cut])
		if err != nil {
			t.Fatalf("cut to %d: %v", cut, err)
		}
		wantSafety(t, s, before)
		s.Close()
	}
	for _, at := range []int64{lastStart + 3, lastStart + 1000, int64(len(orig)) - 2} {
		data := slices.Clone(orig)
		data[at] ^= 0x20
		s, err := reopen(data)
		if err != nil {
			t.Fatalf("byte %d of the last frame flipped: %v", at, err)
		}
		wantSafety(t, s, before)
		s.Close()
	}
	for _, at := range []int64{30, 200, lastStart - 2} {
		data := slices.Clone(orig)
		data[at] ^= 0x20
		if _, err := reopen(data); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("byte %d of the first frame flipped: %v, want ErrCorrupt", at, err)
		}
	}
}

// The log is rewritten compactly once it passes its bound (64 KiB here,
// or four times the live contents if that is more), holds the same state
// afterwards, and stays within the bound however many saves there are.
func TestSafetyLogCompaction(t *testing.T) {
	dir := t.TempDir()
	const bound = 64 << 10
	o := storage.WithSafetyCompactBytes(storage.Options{}, bound)
	s := openStore(t, dir, o)
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))
	var want safetyState
	for i := range 160 {
		// The tip follows two heights behind for 100 saves (two or three
		// blocks live), then stops (the live set grows).
		h := uint64(i + 3)
		if i < 100 {
			commit(t, s, c.block(blockSpec{}))
		}
		if err := s.SaveSafety(ctx, fmt.Appendf(nil, "round %d", i), keptBlock(h, 1, 3000)); err != nil {
			t.Fatal(err)
		}
		want = readSafety(t, s)
		live := int64(len(want.record)) + 200
		for _, k := range want.kept {
			live += int64(len(k.Data)) + 100
		}
		if fi, err := os.Stat(filepath.Join(dir, "safety.log")); err != nil || fi.Size() > max(bound, 4*live)+4000 {
			t.Fatalf("save %d: log of %d bytes, bound %d, live about %d (%v)", i, fi.Size(), bound, live, err)
		}
	}
	if n := s.SafetyStats().Compactions; n < 4 {
		t.Fatalf("%d compactions over 480 KB of saves with a 64 KiB bound", n)
	}
	if len(want.kept) != 62 {
		t.Fatalf("%d kept blocks above the tip, want 62", len(want.kept))
	}
	s.Close()
	s = openStore(t, dir, o)
	defer s.Close()
	wantSafety(t, s, want)
}

// A crash at any step of a compaction (temp file written but not synced,
// synced but not renamed, renamed but the directory not synced) leaves a
// store that opens with the state of the last save, without the temp
// file, and goes on.
func TestSafetyLogCompactionCrash(t *testing.T) {
	for _, step := range []string{storage.CrashCompactTmpWritten, storage.CrashCompactTmpSynced, storage.CrashCompactRenamed} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			const bound = 32 << 10
			o := storage.WithSafetyCompactBytes(storage.Options{}, bound)
			s := openStore(t, dir, storage.WithCrashAt(o, step))
			// Each round saves a block and releases the one before, so
			// that the live contents stay small and the log outgrows its
			// bound; the compaction may follow either write.
			var want safetyState
			for i := 0; ; i++ {
				err := s.SaveSafety(ctx, fmt.Appendf(nil, "round %d", i), keptBlock(uint64(i), 1, 2000))
				if err == nil {
					want = readSafety(t, s)
					err = s.ReleaseKept(ctx, keptBlock(uint64(i)-1, 1, 1).ID)
				}
				if errors.Is(err, storage.ErrSimulatedCrash) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				want = readSafety(t, s)
				if i > 100 {
					t.Fatal("no compaction after 200 KB of saves with a 32 KiB bound")
				}
			}
			s.Close()
			tmp := filepath.Join(dir, "safety.log.tmp")
			if step == storage.CrashCompactTmpWritten {
				// Unsynced: a crash may have kept any part of it.
				if err := os.Truncate(tmp, 5000); err != nil {
					t.Fatal(err)
				}
			}
			if fileExists(t, tmp) != (step != storage.CrashCompactRenamed) {
				t.Fatalf("temp file present: %v, after a crash at %s", fileExists(t, tmp), step)
			}
			s = openStore(t, dir, o)
			wantSafety(t, s, want)
			if fileExists(t, tmp) {
				t.Fatal("temp file left after reopening")
			}
			if err := s.SaveSafety(ctx, []byte("after"), keptBlock(500, 1, 10)); err != nil {
				t.Fatal(err)
			}
			want.record = "after"
			want.kept = append(want.kept, keptBlock(500, 1, 10))
			s.Close()
			s = openStore(t, dir, o)
			defer s.Close()
			wantSafety(t, s, want)
		})
	}
}

// Saves, releases, block commits and reads run at once (under -race in
// make test), with compactions among them; the store ends in the state
// the operations describe, and reopens in it.
func TestSafetyLogConcurrent(t *testing.T) {
	dir := t.TempDir()
	o := storage.WithSafetyCompactBytes(storage.Options{}, 48<<10)
	s := openStore(t, dir, o)
	c := newChain(t, 1)
	commit(t, s, c.block(blockSpec{}))
	const saves = 150
	block := func(i int) storage.KeptBlock { return keptBlock(uint64(i+1), byte(i%2), 1500) }
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	released := make(chan int, saves)
	wg.Go(func() { // the signer: one save per vote; every fourth block is abandoned
		defer close(released)
		for i := range saves {
			// Votes wait for commits, as in the node: at most 8 heights ahead.
			for tip, _ := s.Tip(); tip.Height+8 < uint64(i); tip, _ = s.Tip() {
				time.Sleep(100 * time.Microsecond)
			}
			if err := s.SaveSafety(ctx, fmt.Appendf(nil, "round %d", i), block(i)); err != nil {
				errs <- err
				return
			}
			if i%4 == 1 {
				released <- i
			}
		}
	})
	wg.Go(func() { // the committer: commits up to a few heights below the signer, releases
		for i := range released {
			if err := s.ReleaseKept(ctx, block(i).ID); err != nil {
				errs <- err
				return
			}
			for tip, _ := s.Tip(); tip.Height+4 < uint64(i); tip, _ = s.Tip() {
				if err := s.CommitBlock(ctx, c.block(blockSpec{})); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	wg.Go(func() { // readers
		for range 60 {
			if _, err := s.KeptBlocks(); err != nil {
				errs <- err
				return
			}
			if _, err := s.LoadSafety(); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tip, _ := s.Tip()
	want := safetyState{record: fmt.Sprintf("round %d", saves-1), hasRecord: true, kept: []storage.KeptBlock{}}
	for i := range saves {
		if b := block(i); i%4 != 1 && b.Height > tip.Height {
			want.kept = append(want.kept, b)
		}
	}
	wantSafety(t, s, want)
	if tip.Height < saves-10 {
		t.Fatalf("tip %d: the committer fell behind; the test means to drop blocks as it goes", tip.Height)
	}
	if s.SafetyStats().Compactions == 0 {
		t.Fatal("no compaction ran; the test means to run them among the other writes")
	}
	s.Close()
	s = openStore(t, dir, o)
	defer s.Close()
	wantSafety(t, s, want)
}

// On a full disk a save fails with ENOSPC and changes nothing; once there
// is space again, saves go on and everything reopens.
func TestSafetyLogFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	dir := filepath.Join(mnt, "store")
	s := openStore(t, dir, storage.Options{})
	want := safetyState{record: "round 1", hasRecord: true, kept: []storage.KeptBlock{keptBlock(1, 1, 1000)}}
	if err := s.SaveSafety(ctx, []byte(want.record), want.kept...); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, mnt)
	err := s.SaveSafety(ctx, []byte("round 2"), keptBlock(2, 1, 1<<20))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("save on a full disk: %v, want ENOSPC", err)
	}
	wantSafety(t, s, want)
	os.Remove(filler)
	if err := s.SaveSafety(ctx, []byte("round 3"), keptBlock(3, 1, 1000)); err != nil {
		t.Fatalf("save after space was freed: %v", err)
	}
	want.record = "round 3"
	want.kept = append(want.kept, keptBlock(3, 1, 1000))
	wantSafety(t, s, want)
	s.Close()
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	wantSafety(t, s, want)
}

// The SIGKILL test of the safety log: a child process saves a record and
// a block, releases the block of the save before, and reports each round
// that returned; the parent kills it mid-stream, three times, with
// compactions running among the saves. After each kill the store holds
// the last reported save or the one after it, none of the released
// blocks, and its kept blocks intact.
const safetyKillEnv = "HALLMARK_STORAGE_SAFETY_KILL_CHILD"

func killBlock(i int) storage.KeptBlock { return keptBlock(uint64(i), 1, 5000+i) }

func TestSafetySurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv(safetyKillEnv); dir != "" {
		safetyKillChild(dir)
		return
	}
	dir := t.TempDir()
	compactions := 0
	for round, killAfter := range []int{9, 17, 31} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSafetySurvivesSIGKILL$", "-test.count=1")
		cmd.Env = append(os.Environ(), safetyKillEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen, reported, c := 0, -1, 0
		for sc.Scan() {
			if n, _ := fmt.Sscanf(sc.Text(), "saved %d, compactions %d", &reported, &c); n != 2 {
				continue
			}
			if seen++; seen == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if seen < killAfter {
			t.Fatalf("round %d: child stopped after %d saves", round, seen)
		}
		compactions += c
		s := openStore(t, dir, storage.Options{})
		got := readSafety(t, s)
		s.Close()
		last, err := strconv.Atoi(strings.TrimPrefix(got.record, "save "))
		if err != nil || last < reported || last > reported+1 {
			t.Fatalf("round %d: record %q after the child reported save %d", round, got.record, reported)
		}
		held := map[uint64]bool{}
		for _, k := range got.kept {
			if want := killBlock(int(k.Height)); k.ID != want.ID || !bytes.Equal(k.Data, want.Data) {
				t.Fatalf("round %d: kept block %d damaged", round, k.Height)
			}
			held[k.Height] = true
		}
		// Killed after the report of save n: before save n+1 returned
		// (record n, block n held), or after (record n+1, block n+1 held,
		// block n until the release that follows).
		if !held[uint64(last)] {
			t.Fatalf("round %d: block %d of the last save is not held", round, last)
		}
		for i := 1; i < reported; i++ {
			if held[uint64(i)] {
				t.Fatalf("round %d: block %d held after its release was reported (reported up to %d)", round, i, reported)
			}
		}
		t.Logf("round %d: killed after save %d was reported; store holds save %d and %d kept blocks", round, reported, last, len(got.kept))
	}
	if compactions == 0 {
		t.Fatal("no compaction ran; the test means to kill the child among them")
	}
}

// safetyKillChild saves until killed, printing each save that returned.
func safetyKillChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, err := storage.Open(dir, storage.WithSafetyCompactBytes(storage.Options{ChainID: ledgertest.ChainID}, 48<<10))
	if err != nil {
		fail(err)
	}
	next := 1
	if rec, err := s.LoadSafety(); err != nil {
		fail(err)
	} else if rec != nil {
		n, err := strconv.Atoi(strings.TrimPrefix(string(rec), "save "))
		if err != nil {
			fail(err)
		}
		next = n + 1
	}
	// A kill between a save and its release leaves a block behind: give
	// up every block but the last, as consensus would abandon them.
	kept, err := s.KeptBlocks()
	if err != nil {
		fail(err)
	}
	for _, k := range kept {
		if int(k.Height) < next-1 {
			if err := s.ReleaseKept(ctx, k.ID); err != nil {
				fail(err)
			}
		}
	}
	for i := next; ; i++ {
		if err := s.SaveSafety(ctx, fmt.Appendf(nil, "save %d", i), killBlock(i)); err != nil {
			fail(err)
		}
		if err := s.ReleaseKept(ctx, killBlock(i-1).ID); err != nil {
			fail(err)
		}
		fmt.Printf("saved %d, compactions %d\n", i, s.SafetyStats().Compactions)
	}
}
