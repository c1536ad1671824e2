package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

// batchRecorder collects the batches a gossiper broadcasts.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]byte
	sent    chan struct{}
}

func (r *batchRecorder) broadcast(b []byte) {
	r.mu.Lock()
	r.batches = append(r.batches, bytes.Clone(b))
	r.mu.Unlock()
	r.sent <- struct{}{}
}

func (r *batchRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

// batchTxs splits a batch (tagTxs ‖ (uvarint length ‖ tx)*) into its
// transactions.
func batchTxs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	if len(b) == 0 || b[0] != tagTxs {
		t.Fatalf("batch does not start with the transactions tag: %x", b)
	}
	var out [][]byte
	for rest := b[1:]; len(rest) > 0; {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			t.Fatalf("malformed batch %x", b)
		}
		out = append(out, rest[k:k+int(n)])
		rest = rest[k+int(n):]
	}
	return out
}

// A transaction that finds no batch sent recently goes at once; the next
// ones wait for the tick (here an hour away, so they wait for good) unless
// they fill a batch. A gossiper that only sent on its ticker fails the
// first check.
func TestGossipSendsALoneTransactionAtOnce(t *testing.T) {
	rec := &batchRecorder{sent: make(chan struct{}, 16)}
	g := &gossiper{broadcast: rec.broadcast, out: make(chan []byte, 16), every: time.Hour, maxBuf: 64}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); g.runSend(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(what string) {
		t.Helper()
		select {
		case <-rec.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing broadcast", what)
		}
	}
	g.out <- []byte("first")
	wait("a lone transaction")
	if txs := batchTxs(t, rec.batches[0]); len(txs) != 1 || string(txs[0]) != "first" {
		t.Fatalf("first batch holds %q", txs)
	}

	// Within the interval: the next one waits for the tick.
	g.out <- []byte("second")
	time.Sleep(200 * time.Millisecond)
	if n := rec.count(); n != 1 {
		t.Fatalf("a transaction right after a batch went out in a batch of its own (%d batches)", n)
	}
	// Until the batch is full: then it goes at once, with the waiting one.
	g.out <- bytes.Repeat([]byte{'x'}, 60)
	wait("a full batch")
	if txs := batchTxs(t, rec.batches[1]); len(txs) != 2 || string(txs[0]) != "second" {
		t.Fatalf("full batch holds %d transactions, first %q", len(txs), txs[0])
	}
}
