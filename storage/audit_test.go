package storage_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/storage"
)

// clock is a settable clock for retention tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func entry(at time.Time, i int) storage.AuditEntry {
	return storage.AuditEntry{
		Time: at.UnixMilli(), Actor: fmt.Sprintf("reader-%d", i), Action: "record.read",
		Record: fmt.Sprintf("record-%d", i), Grant: "grant-7", Outcome: "ok",
	}
}

func TestAuditSegmentsChainAndExport(t *testing.T) {
	day0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	clk := &clock{now: day0}
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{Now: clk.Now})
	defer s.Close()

	var times []time.Time
	for d, count := range []int{3, 2, 1} {
		for i := range count {
			at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute)
			times = append(times, at)
			if err := s.AppendAudit(ctx, entry(at, len(times))); err != nil {
				t.Fatal(err)
			}
		}
	}
	var segs []storage.AuditSegment
	s.AuditSegments(func(seg storage.AuditSegment) error { segs = append(segs, seg); return nil })
	if len(segs) != 2 || segs[0].Count != 3 || segs[1].Count != 2 || segs[1].FirstSeq != 4 {
		t.Fatalf("sealed segments %+v, want day 0 (3 entries) and day 1 (2)", segs)
	}
	if segs[1].Start != segs[0].Digest {
		t.Fatal("segment 1 does not continue the chain of segment 0")
	}
	for _, seg := range segs {
		if err := s.VerifyAuditSegment(seg.Number); err != nil {
			t.Fatal(err)
		}
	}
	seg, ok, err := s.SealAudit(ctx)
	if err != nil || !ok || seg.Count != 1 || seg.Start != segs[1].Digest {
		t.Fatalf("seal open segment: %+v %v %v", seg, ok, err)
	}
	if _, ok, _ := s.SealAudit(ctx); ok {
		t.Fatal("sealed an empty segment")
	}

	// Time range: day 1 only.
	var got []string
	s.AuditRange(ctx, day0.Add(24*time.Hour), day0.Add(48*time.Hour), func(r storage.AuditRecord) error {
		got = append(got, r.Entry.Actor)
		return nil
	})
	if fmt.Sprint(got) != "[reader-4 reader-5]" {
		t.Fatalf("day 1 entries %v", got)
	}

	// Export: JSON lines, in time order, with the fields.
	var buf bytes.Buffer
	n, err := s.ExportAudit(ctx, &buf, day0, day0.Add(72*time.Hour))
	if err != nil || n != 6 {
		t.Fatalf("export %d, %v", n, err)
	}
	sc := bufio.NewScanner(&buf)
	line := 0
	for sc.Scan() {
		var rec struct {
			Seq     uint64 `json:"seq"`
			Chain   string `json:"chain"`
			At      string `json:"at"`
			Actor   string `json:"actor"`
			Action  string `json:"action"`
			Record  string `json:"record"`
			Grant   string `json:"grant"`
			Outcome string `json:"outcome"`
			Time    int64  `json:"time"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		line++
		if rec.Seq != uint64(line) || rec.Time != times[line-1].UnixMilli() || rec.Grant != "grant-7" ||
			rec.Actor != fmt.Sprintf("reader-%d", line) || len(rec.Chain) != 64 || rec.At == "" {
			t.Fatalf("line %d: %+v", line, rec)
		}
	}
	if line != 6 {
		t.Fatalf("%d lines", line)
	}
}

func TestAuditRetention(t *testing.T) {
	day0 := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	clk := &clock{now: day0}
	s := openStore(t, t.TempDir(), storage.Options{Now: clk.Now})
	defer s.Close()
	for d := range 3 {
		s.AppendAudit(ctx, entry(day0.Add(time.Duration(d)*24*time.Hour), d))
	}
	// Two segments are sealed (days 0 and 1); nothing is six months old.
	if _, err := s.PruneAudit(ctx, day0.Add(48*time.Hour)); !errors.Is(err, storage.ErrRetention) {
		t.Fatalf("prune of young entries: %v, want ErrRetention", err)
	}
	// 183 days and an hour later, a cutoff even a minute younger than
	// now minus the retention is refused.
	clk.set(day0.Add(storage.MinAuditRetention + time.Hour))
	if _, err := s.PruneAudit(ctx, day0.Add(time.Hour+time.Minute)); !errors.Is(err, storage.ErrRetention) {
		t.Fatalf("cutoff after now minus retention: %v", err)
	}
	// A cutoff of exactly now minus retention drops the sealed segments
	// entirely older than it: day 0's only.
	n, err := s.PruneAudit(ctx, day0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	var left int
	s.AuditRange(ctx, day0.Add(-time.Hour), day0.Add(1000*time.Hour), func(storage.AuditRecord) error { left++; return nil })
	if left != 2 {
		t.Fatalf("%d entries left, want 2", left)
	}
	var segs []storage.AuditSegment
	s.AuditSegments(func(seg storage.AuditSegment) error { segs = append(segs, seg); return nil })
	if len(segs) != 2 || !segs[0].Pruned || segs[1].Pruned {
		t.Fatalf("segments after prune: %+v", segs)
	}
	if err := s.VerifyAuditSegment(1); err != nil {
		t.Fatalf("remaining segment: %v", err)
	}
}

func TestAuditTamperIsFound(t *testing.T) {
	day0 := time.Date(2025, 5, 5, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	s := openStore(t, dir, storage.Options{AuditSegmentEntries: 4})
	for i := range 10 {
		s.AppendAudit(ctx, entry(day0.Add(time.Duration(i)*time.Second), i))
	}
	var segs []storage.AuditSegment
	s.AuditSegments(func(seg storage.AuditSegment) error { segs = append(segs, seg); return nil })
	if len(segs) != 2 || segs[0].Count != 4 || segs[1].Count != 4 {
		t.Fatalf("segments %+v, want two of 4 entries", segs)
	}
	s.Close()

	// Rewrite entry 6 (segment 1) with another outcome, keeping its chain value.
	db, err := bolt.Open(filepath.Join(dir, "hallmark.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		key := heightKey(6)
		v := bytes.Clone(b.Get(key))
		var e storage.AuditEntry
		if err := ledger.Unmarshal(v[32:], &e); err != nil {
			t.Fatal(err)
		}
		e.Outcome = "denied"
		enc, _ := ledger.Marshal(&e)
		return b.Put(key, append(v[:32:32], enc...))
	})
	db.Close()

	s = openStore(t, dir, storage.Options{})
	defer s.Close()
	if err := s.VerifyAuditSegment(0); err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyAuditSegment(1); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("tampered segment: %v, want ErrCorrupt", err)
	}
	rep, err := s.Scrub(ctx, storage.ScrubOptions{})
	if err != nil || rep.AuditSegments != 2 || rep.AuditBad != 1 {
		t.Fatalf("scrub %+v, %v", rep, err)
	}
}

func TestAuditConcurrentAppendsAndBlockEntries(t *testing.T) {
	s := openStore(t, t.TempDir(), storage.Options{})
	defer s.Close()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := s.AppendAudit(ctx, entry(at, g*100+i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	// Meanwhile blocks commit with their own entries.
	c := newChain(t, 1)
	for range 5 {
		b := c.block(blockSpec{txs: 1})
		b.Audit = []storage.AuditEntry{{Time: at.UnixMilli(), Actor: "node", Action: "grant.create", Outcome: "ok", Height: b.Block.Header.Height}}
		commit(t, s, b)
	}
	wg.Wait()
	seg, ok, err := s.SealAudit(ctx)
	if err != nil || !ok || seg.Count != 85 {
		t.Fatalf("sealed %+v %v %v, want 85 entries", seg, ok, err)
	}
	if err := s.VerifyAuditSegment(seg.Number); err != nil {
		t.Fatal(err)
	}
	heights := map[uint64]bool{}
	s.AuditRange(ctx, at, at.Add(time.Millisecond), func(r storage.AuditRecord) error {
		if r.Entry.Action == "grant.create" {
			heights[r.Entry.Height] = true
		}
		return nil
	})
	if len(heights) != 5 {
		t.Fatalf("block audit entries for heights %v", heights)
	}
}
