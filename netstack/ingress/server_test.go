package ingress_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/netstack/ingress"
	"hallmark/netstack/kiosk"
	"hallmark/netstack/xdp"
)

// mempool is the smallest Submitter that behaves like one: it keeps ids,
// reports repeats as duplicates, refuses memos starting with "refuse" with
// application code 17, and is busy for memos starting with "busy".
type mempool struct {
	mu   sync.Mutex
	ids  map[ledger.TxID]bool
	full atomic.Bool
	// hold is closed to let transactions with the memo "hold" through.
	hold chan struct{}
}

// Full implements ingress.FullReporter.
func (m *mempool) Full() bool { return m.full.Load() }

func (m *mempool) Submit(_ context.Context, tx *ledger.Transaction) ingress.Result {
	if tx.Body.Entity.Memo == "hold" {
		<-m.hold
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case bytes.HasPrefix([]byte(tx.Body.Entity.Memo), []byte("refuse")):
		return ingress.Result{Outcome: ingress.Rejected, Code: 17}
	case bytes.HasPrefix([]byte(tx.Body.Entity.Memo), []byte("busy")):
		return ingress.Result{Outcome: ingress.Busy}
	case m.ids[tx.ID()]:
		return ingress.Result{Outcome: ingress.Duplicate}
	}
	m.ids[tx.ID()] = true
	return ingress.Result{Outcome: ingress.Accepted}
}

type node struct {
	addr    string
	key     *gm.PrivateKey
	adm     *ingress.AdmissionTable
	pool    *mempool
	srv     *ingress.Server
	fast    *xdp.FastPath
	chainID string
}

// startNode serves the ingress on a loopback socket, with the Go twin as
// fast path when twin is set.
func startNode(t *testing.T, twin bool, grace time.Duration) *node {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &node{addr: conn.LocalAddr().String(), key: ledgertest.Key(t), pool: &mempool{ids: map[ledger.TxID]bool{}, hold: make(chan struct{})}, chainID: ledgertest.ChainID}
	window := xdp.Config{
		IngressPort: uint16(conn.LocalAddr().(*net.UDPAddr).Port),
		MaxAge:      time.Minute, MaxFuture: 5 * time.Second,
		RatePerSec: 1000, Burst: 1000,
	}
	if twin {
		n.fast, err = xdp.Start("", window, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.adm = ingress.NewAdmissionTable(n.fast.Filter)
	} else {
		n.adm = ingress.NewAdmissionTable(nil)
	}
	n.srv, err = ingress.New(ingress.Config{
		ChainID: n.chainID, Conn: conn, Signer: n.key, Admission: n.adm, Submitter: n.pool,
		FastPath: n.fast, MaxAge: window.MaxAge, MaxFuture: window.MaxFuture, ReplayGrace: grace, Workers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return n
}

func (n *node) client(t *testing.T, attempts int, backoff time.Duration) *client.Client {
	t.Helper()
	c, err := client.Dial(client.Config{NodeAddr: n.addr, NodeKey: n.key.PublicKey(), Attempts: attempts, InitialBackoff: backoff, MaxBackoff: 4 * backoff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (n *node) tx(t *testing.T, key *gm.PrivateKey, memo string, ts time.Time) *ledger.Transaction {
	t.Helper()
	tx, err := client.NewTransaction(context.Background(), key, client.TxParams{
		ChainID: n.chainID, Type: ledger.TxRecordPut, Data: []byte("deed 42"), Memo: memo, Timestamp: ts.UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func TestReceipts(t *testing.T) {
	n := startNode(t, false, time.Second)
	kioskKey, frozenKey, stranger := ledgertest.Key(t), ledgertest.Key(t), ledgertest.Key(t)
	must(t, n.adm.Set(kioskKey.PublicKey().ID(), ingress.Admitted))
	must(t, n.adm.Set(frozenKey.PublicKey().ID(), ingress.Frozen))
	c := n.client(t, 4, 100*time.Millisecond)
	ctx := context.Background()
	now := time.Now()

	known := n.tx(t, kioskKey, "gossiped", now)
	n.pool.ids[known.ID()] = true
	forged := n.tx(t, kioskKey, "forged", now)
	forged.Signatures[0][40] ^= 1
	otherChain := n.tx(t, kioskKey, "", now)
	otherChain.Body.ChainID = "elsewhere"
	otherChain.Signatures = nil
	must(t, otherChain.Sign(ctx, kioskKey))

	cases := []struct {
		name   string
		tx     *ledger.Transaction
		status kiosk.Status
		reason kiosk.Reason
	}{
		{"accepted", n.tx(t, kioskKey, "", now), kiosk.StatusAccepted, kiosk.ReasonNone},
		{"duplicate", known, kiosk.StatusDuplicate, kiosk.ReasonNone},
		{"not admitted", n.tx(t, stranger, "", now), kiosk.StatusRejected, kiosk.ReasonNotAdmitted},
		{"frozen", n.tx(t, frozenKey, "", now), kiosk.StatusRejected, kiosk.ReasonFrozen},
		{"stale", n.tx(t, kioskKey, "", now.Add(-2*time.Minute)), kiosk.StatusRejected, kiosk.ReasonStale},
		{"future", n.tx(t, kioskKey, "", now.Add(time.Minute)), kiosk.StatusRejected, kiosk.ReasonStale},
		{"bad signature", forged, kiosk.StatusRejected, kiosk.ReasonBadSignature},
		{"wrong chain", otherChain, kiosk.StatusRejected, kiosk.ReasonWrongChain},
		{"application", n.tx(t, kioskKey, "refuse: no such subject", now), kiosk.StatusRejected, kiosk.AppReason(17)},
		{"busy", n.tx(t, kioskKey, "busy", now), kiosk.StatusRejected, kiosk.ReasonBusy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Submit(ctx, tc.tx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || r.Reason != tc.reason || r.TxID != tc.tx.ID() {
				t.Fatalf("receipt %s/%s for %s, want %s/%s", r.Status, r.Reason, r.TxID, tc.status, tc.reason)
			}
			if r.NodeKeyID != kiosk.ShortKeyID(n.key.PublicKey().ID().Short()) {
				t.Fatal("receipt from another key")
			}
		})
	}
	st := n.srv.Stats()
	if st.Accepted != 1 || st.Duplicate != 1 || st.Busy < 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A full mempool gets "node busy" before any signature is verified: even a
// forged transaction is answered busy, not bad-signature, and nothing is
// submitted.
func TestBusyBeforeVerifying(t *testing.T) {
	n := startNode(t, false, time.Second)
	key := ledgertest.Key(t)
	must(t, n.adm.Set(key.PublicKey().ID(), ingress.Admitted))
	c := n.client(t, 1, 100*time.Millisecond)
	n.pool.full.Store(true)
	forged := n.tx(t, key, "", time.Now())
	forged.Signatures[0][7] ^= 1
	r, err := c.Submit(context.Background(), forged)
	must(t, err)
	if r.Status != kiosk.StatusRejected || r.Reason != kiosk.ReasonBusy {
		t.Fatalf("receipt %s/%s, want rejected/busy", r.Status, r.Reason)
	}
	n.pool.mu.Lock()
	submitted := len(n.pool.ids)
	n.pool.mu.Unlock()
	if submitted != 0 {
		t.Fatal("a transaction was submitted to a full mempool")
	}
	n.pool.full.Store(false)
	if r, err := c.Submit(context.Background(), forged); err != nil || r.Reason != kiosk.ReasonBadSignature {
		t.Fatalf("with room: %+v %v", r, err)
	}
}

// TestReceiptMismatchedHeader sends datagrams whose header disagrees with
// the body and expects the matching reason, bound to the exact bytes.
func TestReceiptMismatchedHeader(t *testing.T) {
	n := startNode(t, false, time.Second)
	key := ledgertest.Key(t)
	must(t, n.adm.Set(key.PublicKey().ID(), ingress.Admitted))
	c := n.client(t, 3, 100*time.Millisecond)
	dg, err := kiosk.Encode(n.tx(t, key, "", time.Now()))
	must(t, err)
	bad := bytes.Clone(dg)
	bad[8] ^= 0xff // key id
	r, err := c.SubmitDatagram(context.Background(), bad)
	must(t, err)
	if r.Status != kiosk.StatusRejected || r.Reason != kiosk.ReasonKeyIDMismatch || r.DatagramDigest != gm.SM3(bad) {
		t.Fatalf("receipt %+v", r)
	}
}

// TestRetransmissionAndReplay checks the life of an accepted id: a
// retransmission within the grace period gets the cached receipt, after it
// the fast path (here the twin) drops the replay and counts it.
func TestRetransmissionAndReplay(t *testing.T) {
	const grace = 300 * time.Millisecond
	n := startNode(t, true, grace)
	key := ledgertest.Key(t)
	must(t, n.adm.Set(key.PublicKey().ID(), ingress.Admitted))
	c := n.client(t, 2, 100*time.Millisecond)
	ctx := context.Background()
	tx := n.tx(t, key, "", time.Now())
	for range 2 {
		r, err := c.Submit(ctx, tx)
		must(t, err)
		if r.Status != kiosk.StatusAccepted {
			t.Fatalf("status %s", r.Status)
		}
	}
	if st := n.srv.Stats(); st.Accepted != 1 || st.CachedAnswer != 1 {
		t.Fatalf("stats %+v", st)
	}
	time.Sleep(grace + 400*time.Millisecond)
	if _, err := c.Submit(ctx, tx); !errors.Is(err, client.ErrNoReceipt) {
		t.Fatalf("replay after the grace period: %v", err)
	}
	cnt, _ := n.fast.Filter.Counters()
	if cnt[xdp.DropReplay] != 2 {
		t.Fatalf("twin counters %v", cnt)
	}
	// A sender the ledger does not know is dropped before any work.
	stranger := ledgertest.Key(t)
	if _, err := c.Submit(ctx, n.tx(t, stranger, "", time.Now())); !errors.Is(err, client.ErrNoReceipt) {
		t.Fatalf("unadmitted sender: %v", err)
	}
	cnt, _ = n.fast.Filter.Counters()
	if cnt[xdp.DropNotAdmitted] != 2 {
		t.Fatalf("twin counters %v", cnt)
	}
}

func TestAdmissionTableShortIDCollision(t *testing.T) {
	twin, err := xdp.NewTwin(xdp.Config{IngressPort: 1, MaxAge: time.Minute})
	must(t, err)
	a := ingress.NewAdmissionTable(twin)
	// Two full ids that share their first 8 bytes.
	var k1, k2 gm.KeyID
	k1[31], k2[31] = 1, 2
	must(t, a.Set(k1, ingress.Frozen))
	must(t, a.Set(k2, ingress.Admitted))
	if a.SenderState(k1) != ingress.Frozen || a.SenderState(k2) != ingress.Admitted {
		t.Fatal("exact states lost")
	}
	// The fast path must let the admitted key through.
	dg := make([]byte, 100)
	copy(dg, []byte{0x48, 0x4d, 0x4b, 0x54, 1, 0, 0, 100})
	if v := twin.Datagram(netipLoopback, dg); v == xdp.DropFrozen || v == xdp.DropNotAdmitted {
		t.Fatalf("colliding admitted key dropped: %s", v)
	}
	must(t, a.Set(k2, ingress.NotAdmitted))
	if v := twin.Datagram(netipLoopback, dg); v != xdp.DropFrozen {
		t.Fatalf("after removal: %s", v)
	}
	must(t, a.Set(k1, ingress.NotAdmitted))
	if v := twin.Datagram(netipLoopback, dg); v != xdp.DropNotAdmitted {
		t.Fatalf("after removing both: %s", v)
	}
}

var netipLoopback = netip.MustParseAddr("127.0.0.1")

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A retransmission that arrives while the first copy is still being
// handled is dropped: the kiosk gets the first copy's answer ("accepted"),
// never "duplicate" for its own submission.
func TestRetransmissionWhileHandled(t *testing.T) {
	n := startNode(t, false, 0)
	key := ledgertest.Key(t)
	must(t, n.adm.Set(key.PublicKey().ID(), ingress.Admitted))
	c := n.client(t, 6, 20*time.Millisecond)
	tx := n.tx(t, key, "hold", time.Now())
	type result struct {
		status kiosk.Status
		err    error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.Submit(context.Background(), tx)
		done <- result{r.Status, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n.srv.Stats().InFlight == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no retransmission reached the server while the first copy was held: %+v", n.srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(n.pool.hold)
	r := <-done
	if r.err != nil || r.status != kiosk.StatusAccepted {
		t.Fatalf("submit: %v, status %s", r.err, r.status)
	}
	if st := n.srv.Stats(); st.Accepted != 1 || st.Duplicate != 0 {
		t.Fatalf("stats %+v", st)
	}
}
