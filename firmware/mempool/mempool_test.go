package mempool

import (
	"errors"
	"sync"
	"testing"
	"time"

	"hallmark/firmware/genesis"
	"hallmark/firmware/internal/testchain"
	"hallmark/firmware/sigcache"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/netstack/ingress"
)

type fixture struct {
	chain  *testchain.Chain
	pool   *Pool
	cache  *sigcache.Cache
	mu     sync.Mutex
	mem    *app.MemStore
	gossip []ledger.TxID
}

func newFixture(t *testing.T, maxTxs int, maxBytes int64) *fixture {
	t.Helper()
	c := testchain.New(t, testchain.Options{Validators: testchain.SoftwareValidators(t, 1), Addrs: []string{"198.18.0.1:7400"}})
	g, err := genesis.Derive(c.Doc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{chain: c, cache: sigcache.New(1000), mem: app.NewMemStore()}
	f.mem.Apply(g.State.Writes)
	x := app.New(app.WithSignatureCheck(f.cache.Check))
	f.pool, err = New(Config{
		MaxTxs: maxTxs, MaxBytes: maxBytes, Cache: f.cache, Workers: 2,
		Admit: func(tx *ledger.Transaction) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			return x.CheckTx(f.mem, tx, time.Now().UnixMilli())
		},
		OnAccept: func(tx *ledger.Transaction, enc []byte) {
			f.mu.Lock()
			f.gossip = append(f.gossip, tx.ID())
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAdmission(t *testing.T) {
	f := newFixture(t, 100, 1<<20)
	c := f.chain
	good := c.Record(t, c.Kiosk, "customs.declaration")
	if err := f.pool.Add(good, FromAPI); err != nil {
		t.Fatal(err)
	}
	if err := f.pool.Add(good, FromAPI); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second add: %v", err)
	}
	if r := f.pool.Submit(t.Context(), good); r.Outcome != ingress.Duplicate {
		t.Fatalf("kiosk resubmission: %+v", r)
	}

	forged := *c.Record(t, c.Kiosk, "customs.declaration")
	forged.Signatures = []gm.Signature{{1, 2, 3}}
	if err := f.pool.Add(&forged, FromAPI); reason.Of(err) != reason.BadSignature {
		t.Fatalf("forged: %v", err)
	}
	stranger, _ := gm.GenerateKey(nil)
	if err := f.pool.Add(c.Record(t, stranger, "customs.declaration"), FromAPI); reason.Of(err) != reason.UnknownSender {
		t.Fatalf("unknown sender: %v", err)
	}
	if r := f.pool.Submit(t.Context(), c.Record(t, stranger, "x.y")); r.Outcome != ingress.Rejected || r.Code != uint16(reason.UnknownSender) {
		t.Fatalf("kiosk result for an unknown sender: %+v", r)
	}
	old, _ := c.RecordAt(c.Kiosk, "customs.declaration", time.Now().Add(-time.Hour).UnixMilli())
	if err := f.pool.Add(old, FromAPI); reason.Of(err) != reason.TooOld {
		t.Fatalf("old: %v", err)
	}
	if f.pool.Len() != 1 {
		t.Fatalf("pool holds %d", f.pool.Len())
	}
	// Only the accepted transaction was gossiped, once.
	if len(f.gossip) != 1 || f.gossip[0] != good.ID() {
		t.Fatalf("gossiped %v", f.gossip)
	}
	// API submissions were verified once each (good, forged, stranger,
	// old); the kiosk ones come verified by the ingress.
	if s := f.cache.Stats(); s.Verified != 4 {
		t.Fatalf("verified %d", s.Verified)
	}
}

func TestBusyWhenFull(t *testing.T) {
	f := newFixture(t, 3, 1<<20)
	c := f.chain
	for range 3 {
		if err := f.pool.Add(c.Record(t, c.Kiosk, "a.b"), FromAPI); err != nil {
			t.Fatal(err)
		}
	}
	if !f.pool.Full() {
		t.Fatal("a full pool says it has room")
	}
	extra := c.Record(t, c.Kiosk, "a.b")
	if err := f.pool.Add(extra, FromAPI); !errors.Is(err, ErrBusy) {
		t.Fatalf("full pool: %v", err)
	}
	if r := f.pool.Submit(t.Context(), extra); r.Outcome != ingress.Busy {
		t.Fatalf("kiosk: %+v", r)
	}
	if f.pool.Len() != 3 {
		t.Fatal("a full pool grew")
	}
}

func TestPickRemoveRecheck(t *testing.T) {
	f := newFixture(t, 1000, 1<<20)
	c := f.chain
	var batch []*ledger.Transaction
	for range 10 {
		batch = append(batch, c.Record(t, c.Kiosk, "a.b"))
	}
	alice := c.Record(t, c.Alice, "a.b")
	batch = append(batch, alice)
	for i, err := range f.pool.AddBatch(batch, FromPeer) {
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if len(f.gossip) != 0 {
		t.Fatal("peer transactions were gossiped again")
	}
	// Arrival order, skipping what the chain holds, within the limits.
	skip := func(id ledger.TxID) bool { return id == batch[0].ID() }
	got := f.pool.Pick(4, 1<<20, skip, nil)
	if len(got) != 4 || got[0] != batch[1] || got[3] != batch[4] {
		t.Fatalf("pick: %d", len(got))
	}
	enc, _ := ledger.EncodeTx(batch[0])
	if got := f.pool.Pick(100, int64(2*len(enc)+len(enc)/2), nil, nil); len(got) != 2 {
		t.Fatalf("byte limit: picked %d", len(got))
	}
	if arr := f.pool.Remove([]ledger.TxID{batch[0].ID(), batch[1].ID(), {9}}); len(arr) != 2 {
		t.Fatalf("removed %d", len(arr))
	}
	// Freeze alice in committed state: the recheck of her transactions drops hers.
	acct, err := app.GetAccount(f.mem, ledger.AddressOf(c.Alice.PublicKey()))
	if err != nil || acct == nil {
		t.Fatal(err)
	}
	acct.Frozen = true
	enc, _ = ledger.EncodeAccount(acct)
	f.mu.Lock()
	f.mem.Apply([]ledger.Write{{Key: append([]byte("a/"), acct.Address[:]...), Value: enc}})
	f.mu.Unlock()
	aliceAddr := ledger.AddressOf(c.Alice.PublicKey())
	n := f.pool.Recheck(func(_ *ledger.Transaction, sender ledger.Address, _ time.Time) bool { return sender == aliceAddr }, f.pool.cfg.Admit)
	if n != 1 || f.pool.Has(alice.ID()) || f.pool.Len() != 8 {
		t.Fatalf("recheck dropped %d, pool %d", n, f.pool.Len())
	}
}

// A batch goes through AdmitAll once, with only the transactions whose
// signatures verified, and each gets its own verdict back.
func TestAddBatchAdmitAll(t *testing.T) {
	f := newFixture(t, 100, 1<<20)
	c := f.chain
	x := app.New(app.WithSignatureCheck(f.cache.Check))
	var calls, seen int
	f.pool.cfg.AdmitAll = func(txs []*ledger.Transaction) []error {
		calls++
		seen += len(txs)
		errs := make([]error, len(txs))
		for i, tx := range txs {
			errs[i] = x.CheckTx(f.mem, tx, time.Now().UnixMilli())
		}
		return errs
	}
	good := c.Record(t, c.Kiosk, "customs.declaration")
	forged := *c.Record(t, c.Kiosk, "customs.declaration")
	forged.Signatures = []gm.Signature{{1, 2, 3}}
	stranger, _ := gm.GenerateKey(nil)
	other := c.Record(t, c.Kiosk, "port.manifest")
	errs := f.pool.AddBatch([]*ledger.Transaction{good, &forged, c.Record(t, stranger, "x.y"), other, good}, FromPeer)
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("good ones refused: %v, %v", errs[0], errs[3])
	}
	if reason.Of(errs[1]) != reason.BadSignature || reason.Of(errs[2]) != reason.UnknownSender {
		t.Fatalf("forged: %v; stranger: %v", errs[1], errs[2])
	}
	if !errors.Is(errs[4], ErrDuplicate) {
		t.Fatalf("the same transaction twice in a batch: %v", errs[4])
	}
	if calls != 1 || seen != 4 {
		t.Fatalf("AdmitAll called %d times with %d transactions, want once with 4", calls, seen)
	}
	if f.pool.Len() != 2 {
		t.Fatalf("pool holds %d", f.pool.Len())
	}
}

// AddEncoded keeps a copy of the encodings it is given, which are what
// the pool serves to peers.
func TestAddEncodedKeepsACopy(t *testing.T) {
	f := newFixture(t, 100, 1<<20)
	tx := f.chain.Record(t, f.chain.Kiosk, "customs.declaration")
	enc, err := ledger.EncodeTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	buf := append([]byte(nil), enc...)
	decoded, err := ledger.DecodeTx(buf)
	if err != nil {
		t.Fatal(err)
	}
	if errs := f.pool.AddEncoded([]*ledger.Transaction{decoded}, [][]byte{buf}, FromPeer); errs[0] != nil {
		t.Fatal(errs[0])
	}
	clear(buf)
	got := f.pool.Encoded([]ledger.TxID{tx.ID()})
	if len(got) != 1 || string(got[0]) != string(enc) {
		t.Fatalf("pool serves %x, want %x", got, enc)
	}
	if f.pool.Bytes() != int64(len(enc)) {
		t.Fatalf("pool counts %d bytes, want %d", f.pool.Bytes(), len(enc))
	}
}
