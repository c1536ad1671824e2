package main

import (
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

func testBatch(n int) *batch {
	b := &batch{dgs: make([][]byte, n), ids: make([]ledger.TxID, n)}
	for i := range n {
		b.ids[i] = ledger.TxID(gm.SM3([]byte{byte(i), byte(i >> 8)}))
	}
	return b
}

// The tracker counts commits inside the window, takes latencies of the
// transactions sent inside it, and frees a closed-loop permit once per
// transaction whatever ends it.
func TestTracker(t *testing.T) {
	b := testBatch(200)
	tr := newTracker(b, 10)
	base := time.Unix(1000, 0)
	from, to := base.Add(time.Second), base.Add(2*time.Second)
	// 100 sent before the window and committed inside it; 100 sent inside
	// it, committed i ms later (one of them after the window ends).
	for i := range 100 {
		tr.sent(i, base)
		tr.committed(b.ids[i], from.Add(time.Duration(i)*time.Millisecond))
	}
	for i := 100; i < 200; i++ {
		at := from.Add(time.Duration(i-100) * time.Millisecond)
		tr.sent(i, at)
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
	if n := len(tr.permits); n != 10 {
		t.Fatalf("%d permits returned to a window of 10", n)
	}
}

// Refusals and expiry end a transaction too; an unknown id is ignored.
func TestTrackerRefusals(t *testing.T) {
	b := testBatch(4)
	tr := newTracker(b, 0)
	now := time.Now()
	for i := range 4 {
		tr.sent(i, now)
	}
	tr.receipt(kiosk.Receipt{TxID: b.ids[0], Status: kiosk.StatusAccepted})
	tr.receipt(kiosk.Receipt{TxID: b.ids[1], Status: kiosk.StatusRejected, Reason: kiosk.ReasonBusy})
	tr.receipt(kiosk.Receipt{TxID: b.ids[2], Status: kiosk.StatusRejected, Reason: kiosk.ReasonStale})
	tr.receipt(kiosk.Receipt{TxID: ledger.TxID(gm.SM3([]byte("other"))), Status: kiosk.StatusAccepted})
	if got := tr.pendingSentIn(now, now.Add(time.Second)); got != 2 {
		t.Fatalf("%d pending, want 2 (accepted but not committed, and unanswered)", got)
	}
	tr.expire(now.Add(time.Second))
	if tr.accepted != 1 || tr.busy != 1 || tr.rejected != 1 || tr.expired != 2 || tr.reasons[kiosk.ReasonStale] != 1 {
		t.Fatalf("counts: %s", tr.summary())
	}
	if got := tr.pendingSentIn(now, now.Add(time.Second)); got != 0 {
		t.Fatalf("%d pending after expiry", got)
	}
}
