package storage_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/storage"
)

func TestSafetyDataPersists(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{})
	if got, err := s.LoadSafety(); err != nil || got != nil {
		t.Fatalf("fresh store safety = %x, %v", got, err)
	}
	for _, v := range []string{"round 1", "round 2, locked 1"} {
		if err := s.SaveSafety(ctx, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	if got, _ := s.LoadSafety(); string(got) != "round 2, locked 1" {
		t.Fatalf("safety after reopen = %q", got)
	}
	s.Close()
	if err := s.SaveSafety(ctx, []byte("x")); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("save after close: %v", err)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestScrubIsRateLimitedCancellableAndResumes(t *testing.T) {
	var logs syncBuffer
	o := storage.Options{Window: 1000, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	c := newCluster(t, 4, o)
	for range 30 {
		c.commit(blockSpec{txs: 4, dataSize: 1000})
	}
	s := c.stores[0]
	// About 2.5 KiB of shard and 5 KiB of body per block at 40 KiB/s: a
	// full pass would take five seconds; cancel it early.
	cctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := s.Scrub(cctx, storage.ScrubOptions{BytesPerSecond: 40 << 10, ProgressEvery: 100 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled scrub: %+v, %v", rep, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("scrub did not stop on cancellation")
	}
	if rep.Blocks == 0 || rep.Blocks >= 30 {
		t.Fatalf("cancelled pass checked %d of 30 blocks", rep.Blocks)
	}
	if !strings.Contains(logs.String(), "scrub progress") {
		t.Fatalf("no progress logged:\n%s", logs.String())
	}
	rep2, err := s.Scrub(ctx, storage.ScrubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.From == 0 || rep2.From > uint64(rep.Blocks)+1 || rep2.Blocks+int(rep2.From) != 30 {
		t.Fatalf("resumed pass %+v after %d blocks", rep2, rep.Blocks)
	}
	// The next pass starts over.
	rep3, _ := s.Scrub(ctx, storage.ScrubOptions{})
	if rep3.From != 0 || rep3.Blocks != 30 {
		t.Fatalf("third pass %+v", rep3)
	}
}

func TestScrubRepairsDamagedPayloadFromPeers(t *testing.T) {
	c := newCluster(t, 4, storage.Options{})
	p := c.chain.randomBytes(6000)
	c.commit(blockSpec{txs: 1, payloads: [][]byte{p}})
	// Damage node 2's copy in its segment file.
	seg := filepath.Join(c.dirs[2], "payloads", "00000000.seg")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, p)
	data[i+100] ^= 0xff
	damaged := bytes.Clone(data[i : i+len(p)])
	os.WriteFile(seg, data, 0o600)
	if _, err := c.stores[2].Payload(gm.SM3(p)); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("damaged payload: %v", err)
	}
	rep, err := c.stores[2].Scrub(ctx, storage.ScrubOptions{Fetcher: c.fetcher()})
	if err != nil || rep.PayloadsBad != 1 || rep.PayloadsFixed != 1 {
		t.Fatalf("scrub %+v, %v", rep, err)
	}
	if got, err := c.stores[2].Payload(gm.SM3(p)); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("after repair: %v", err)
	}
	// The damaged copy was zeroed, not left behind.
	if hits := scanDir(t, c.dirs[2], damaged); len(hits) > 0 {
		t.Fatalf("damaged copy remains in %v", hits)
	}
}

// Memory must not grow with chain height: the store keeps no per-block
// state in memory. Heap after GC is compared between two heights.
func TestHeapDoesNotGrowWithHeight(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{Window: 50})
	defer s.Close()
	c := newChain(t, 4)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var at100 uint64
	for i := range 400 {
		spec := blockSpec{txs: 1, dataSize: 200}
		if i%10 == 0 {
			spec.payloads = [][]byte{c.randomBytes(300)}
		}
		commit(t, s, c.block(spec))
		if i == 99 {
			at100 = heap()
		}
	}
	at400 := heap()
	t.Logf("heap after GC: %d KiB at height 100, %d KiB at height 400", at100>>10, at400>>10)
	if at400 > at100+1<<20 {
		t.Fatalf("heap grew by %d KiB over 300 blocks", (at400-at100)>>10)
	}
}

// The main file is mapped once, with room to grow: a store that grows by
// megabytes is never mapped again (mapping again waits for every reader
// and stalls the commit that needs it).
func TestGrowthDoesNotRemap(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("32-bit builds keep bbolt's default map size")
	}
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	main0 := s.MmapAddr()
	c := newChain(t, 4)
	commit(t, s, forNode(c.block(blockSpec{}), 1))
	for range 20 {
		commit(t, s, forNode(c.block(blockSpec{txs: 100, dataSize: 1000}), 1))
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "hallmark.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 4<<20 {
		t.Fatalf("file grew to %d bytes only; the test needs several MiB", fi.Size())
	}
	if s.MmapAddr() != main0 {
		t.Fatalf("file was mapped again while growing to %d bytes", fi.Size())
	}
}
