package main

import (
	"context"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

func (b *batch) head(n int) *batch { return &batch{dgs: b.dgs[:n], ids: b.ids[:n], ts: b.ts} }
func (b *batch) tail(n int) *batch {
	return &batch{dgs: b.dgs[len(b.dgs)-n:], ids: b.ids[len(b.ids)-n:], ts: b.ts}
}

func testBatch(n int) *batch {
	b := &batch{dgs: make([][]byte, n), ids: make([]ledger.TxID, n), ts: time.Now()}
	for i := range n {
		b.ids[i] = ledger.TxID(gm.SM3([]byte{byte(i), byte(i >> 8)}))
	}
	return b
}

// The tracker counts commits inside the window, takes latencies of the
// transactions sent inside it, and frees a closed-loop permit once per
// transaction, whatever ends it.
func TestTracker(t *testing.T) {
	b := testBatch(200)
	win := newWindow()
	win.resize(t.Context(), 200, 0)
	for range 200 {
		if !win.acquire(t.Context()) {
			t.Fatal("no room in a fresh window")
		}
	}
	tr := newTracker(b, win)
	base := time.Unix(1000, 0)
	from, to := base.Add(time.Second), base.Add(2*time.Second)
	// 100 sent before the window and committed inside it; 100 sent inside
	// it, committed i ms later (one of them after the window ends).
	for i := range 200 {
		j, _, ok := tr.take()
		if !ok || j != i {
			t.Fatalf("take: %d %v, want %d", j, ok, i)
		}
	}
	if _, _, ok := tr.take(); ok {
		t.Fatal("take after the last datagram")
	}
	for i := range 100 {
		tr.sentAt[i] = base
		tr.committed(b.ids[i], from.Add(time.Duration(i)*time.Millisecond))
	}
	for i := 100; i < 200; i++ {
		at := from.Add(time.Duration(i-100) * time.Millisecond)
		tr.sentAt[i] = at
		tr.committed(b.ids[i], at.Add(time.Duration(i-99)*time.Millisecond))
	}
	tr.committed(b.ids[5], to) // a second sighting changes nothing
	r := tr.result(from, to)
	if r.committed != 200 || r.tps != 200 {
		t.Fatalf("committed %d, tps %v; want 200 and 200/s", r.committed, r.tps)
	}
	if r.latencySamples != 100 || r.p50 != 51*time.Millisecond || r.p99 != 100*time.Millisecond {
		t.Fatalf("latency samples %d, p50 %v, p99 %v", r.latencySamples, r.p50, r.p99)
	}
	if win.inUse != 0 {
		t.Fatalf("%d in use after 200 acquired and 200 ended", win.inUse)
	}
}

// A window lets out no more than its size, and a shrunk one holds sends
// back until enough have ended.
func TestWindow(t *testing.T) {
	w := newWindow()
	w.resize(t.Context(), 3, 0)
	for range 3 {
		if !w.acquire(t.Context()) {
			t.Fatal("no room")
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if w.acquire(ctx) {
		t.Fatal("a full window let one more out")
	}
	w.resize(t.Context(), 2, 0)
	w.release()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if w.acquire(ctx2) {
		t.Fatal("a shrunk window let one out before enough ended")
	}
	w.release()
	if !w.acquire(t.Context()) {
		t.Fatal("no room after the window drained below its size")
	}
	w.resize(t.Context(), 10, 20*time.Millisecond)
	for range 8 {
		if !w.acquire(t.Context()) {
			t.Fatal("a grown window did not open")
		}
	}
}

// Refusals and expiry end a transaction too; an unknown id is ignored.
func TestTrackerRefusals(t *testing.T) {
	b := testBatch(4)
	old := testBatch(1003).tail(3)
	old.ts = time.Now().Add(-time.Hour)
	tr := newTracker(b.head(2), nil)
	tr.add(old) // too old to send: skipped
	tr.add(b.tail(2))
	now := time.Now()
	for range 4 {
		if _, _, ok := tr.take(); !ok {
			t.Fatal("take")
		}
	}
	if _, _, ok := tr.take(); ok || tr.stale != 3 {
		t.Fatalf("stale %d", tr.stale)
	}
	for _, i := range []int{0, 1, 5, 6} {
		tr.sentAt[i] = now
	}
	tr.receipt(kiosk.Receipt{TxID: b.ids[0], Status: kiosk.StatusAccepted})
	tr.receipt(kiosk.Receipt{TxID: b.ids[1], Status: kiosk.StatusRejected, Reason: kiosk.ReasonBusy})
	tr.receipt(kiosk.Receipt{TxID: b.ids[2], Status: kiosk.StatusRejected, Reason: kiosk.ReasonStale})
	tr.receipt(kiosk.Receipt{TxID: ledger.TxID(gm.SM3([]byte("other"))), Status: kiosk.StatusAccepted})
	if got := tr.pendingSentIn(now, now.Add(time.Second)); got != 2 {
		t.Fatalf("%d pending, want 2 (accepted but not committed, and unanswered)", got)
	}
	tr.expireSentIn(now, now.Add(time.Second))
	if tr.accepted != 1 || tr.busy != 1 || tr.rejected != 1 || tr.expired != 2 || tr.reasons[kiosk.ReasonStale] != 1 {
		t.Fatalf("counts: %s", tr.summary())
	}
	if got := tr.pendingSentIn(now, now.Add(time.Second)); got != 0 {
		t.Fatalf("%d pending after expiry", got)
	}
}
