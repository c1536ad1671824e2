package exec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"hallmark/consensus"
	"hallmark/firmware/genesis"
	"hallmark/firmware/internal/testchain"
	"hallmark/firmware/sigcache"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// harness is one node's tree over an in-memory committed state.
type harness struct {
	t         *testing.T
	chain     *testchain.Chain
	mem       *app.MemStore
	committed map[ledger.TxID]bool
	tree      *Tree
	self      gm.KeyID
}

func newHarness(t *testing.T, c *testchain.Chain, self int, params *ledger.Params) *harness {
	t.Helper()
	doc := *c.Doc
	if params != nil {
		doc.Params = *params
	}
	g, err := genesis.Derive(&doc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, chain: c, mem: app.NewMemStore(), committed: map[ledger.TxID]bool{}}
	h.mem.Apply(g.State.Writes)
	h.self = c.Validators[self].PublicKey().ID()
	h.tree, err = New(Config{
		Executor: app.New(),
		Base:     func(fn func(app.View) error) error { return fn(h.mem) },
		Committed: func(ids []ledger.TxID) []bool {
			out := make([]bool, len(ids))
			for i, id := range ids {
				out[i] = h.committed[id]
			}
			return out
		},
		Sigs: sigcache.New(10000),
		Self: h.self,
	}, Root{Header: g.Block.Header, Epoch: g.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// commit stores b's writes in the in-memory state and re-roots the tree.
func (h *harness) commit(b *Block, abandoned ...ledger.BlockID) {
	h.t.Helper()
	if b.Output != nil {
		h.mem.Apply(b.Output.Writes)
	}
	for i := range b.Block.Txs {
		h.committed[b.Block.Txs[i].ID()] = true
	}
	if err := h.tree.Committed(b.ID, abandoned); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) build(parent *Block, round uint64, txs ...*ledger.Transaction) (*Block, *consensus.EpochConfig, []Rejected) {
	h.t.Helper()
	return h.buildIn(0, parent, round, txs...)
}

// buildIn builds in epoch (0: the epoch a child of parent starts or
// continues).
func (h *harness) buildIn(epoch uint64, parent *Block, round uint64, txs ...*ledger.Transaction) (*Block, *consensus.EpochConfig, []Rejected) {
	h.t.Helper()
	req := consensus.BuildProposal{
		Epoch: 1, Round: round, Height: parent.Header.Height + 1, Parent: consensus.RefOf(&parent.Header),
		Timestamp: parent.Header.Timestamp + 1000, Proposer: h.self,
	}
	switch {
	case epoch != 0:
		req.Epoch = epoch
	case parent.Next != nil:
		req.Epoch = parent.Next.Epoch()
	default:
		req.Epoch = parent.Epoch.Epoch()
	}
	b, next, rej, err := h.tree.Build(req, h.chain.ID, func(p ledger.Params, skip func(ledger.TxID) bool) []*ledger.Transaction {
		var out []*ledger.Transaction
		for _, tx := range txs {
			if !skip(tx.ID()) {
				out = append(out, tx)
			}
		}
		return out
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return b, next, rej
}

func fourNodes(t *testing.T) *testchain.Chain {
	keys := testchain.SoftwareValidators(t, 4)
	return testchain.New(t, testchain.Options{Validators: keys, Addrs: []string{"198.18.0.1:7400", "198.18.0.2:7400", "198.18.0.3:7400", "198.18.0.4:7400"}, Time: time.Now().Add(-time.Minute).UnixMilli()})
}

func TestBuildValidateCommit(t *testing.T) {
	c := fourNodes(t)
	leader, voter := newHarness(t, c, 0, nil), newHarness(t, c, 1, nil)
	ts := c.Doc.Time + 500
	var batch []*ledger.Transaction
	for range 5 {
		tx, err := c.RecordAt(c.Kiosk, "customs.declaration", ts)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, tx)
	}
	// A transaction that would fail without a trace (too old for the
	// block) is left out, with its reason; one that fails after its id is
	// consumed (an unknown sender) goes in, recorded as failed.
	bad, _ := c.RecordAt(c.Kiosk, "customs.declaration", ts-20*60*1000)
	stranger, _ := gm.GenerateKey(nil)
	failing, _ := c.RecordAt(stranger, "customs.declaration", ts)
	b1, next, rej := leader.build(leader.tree.Root(), 1, append(batch, bad, failing)...)
	if next != nil {
		t.Fatal("a plain block ended the epoch")
	}
	if len(b1.Block.Txs) != 6 || len(rej) != 1 || rej[0].Tx != bad || reason.Of(rej[0].Err) != reason.TooOld {
		t.Fatalf("block has %d txs, %d rejected", len(b1.Block.Txs), len(rej))
	}
	if r := b1.Output.Results[5]; r.Code != reason.UnknownSender {
		t.Fatalf("the unknown sender's result: %+v", r)
	}
	batch = append(batch, failing)
	if b1.Shard == nil || b1.Shard.Index != 0 {
		t.Fatalf("leader's shard %+v", b1.Shard)
	}
	v1, _, err := voter.tree.Validate(b1.Block, b1.Header.PrevHash, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if v1.ID != b1.ID || v1.Output.StateRoot != b1.Output.StateRoot || v1.Shard.Index != 1 {
		t.Fatal("voter's execution differs from the leader's")
	}
	// Signatures were verified once on the voter, not again at execution.
	if s := voter.tree.cfg.Sigs.Stats(); s.Verified != 6 {
		t.Fatalf("voter verified %d transactions, want 6", s.Verified)
	}

	// A child repeating a transaction of its uncommitted parent is refused.
	dupChild := *b1.Block
	dupChild.Header.Height, dupChild.Header.PrevHash, dupChild.Header.Round = 2, b1.ID, 2
	dupChild.Header.Timestamp++
	dupChild.Txs = b1.Block.Txs[:1]
	if _, err := dupChild.Seal(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := voter.tree.Validate(&dupChild, b1.ID, false, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("repeated transaction: %v", err)
	}

	// Two children of b1 (a fork); committing b1 then one child drops the other.
	tx2, _ := c.RecordAt(c.Alice, "kyc.consent", ts+1)
	b2a, _, _ := leader.build(b1, 2, tx2)
	b2b, _, _ := leader.build(b1, 3)
	if leader.tree.Len() != 4 {
		t.Fatalf("tree has %d blocks", leader.tree.Len())
	}
	leader.commit(b1)
	leader.commit(b2a)
	if leader.tree.Lookup(b2b.ID) != nil || leader.tree.Len() != 1 {
		t.Fatalf("fork survived the commit: %d blocks", leader.tree.Len())
	}
	// After commit, a block repeating a committed transaction is refused.
	b3, _, _ := leader.build(b2a, 4, tx2)
	if len(b3.Block.Txs) != 0 {
		t.Fatal("the leader re-proposed a committed transaction")
	}
	stale := *b3.Block
	stale.Txs = []ledger.Transaction{*tx2}
	if _, err := stale.Seal(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := leader.tree.Validate(&stale, b2a.ID, false, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("committed transaction again: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	c := fourNodes(t)
	leader, voter := newHarness(t, c, 0, nil), newHarness(t, c, 1, nil)
	tx, _ := c.RecordAt(c.Kiosk, "customs.declaration", c.Doc.Time+500)
	b1, _, _ := leader.build(leader.tree.Root(), 1, tx)
	mutate := map[string]func(b *ledger.Block){
		"state root": func(b *ledger.Block) { b.Header.StateRoot[0] ^= 1 },
		"shard root": func(b *ledger.Block) { b.Header.ShardRoot[0] ^= 1 },
		"altered body": func(b *ledger.Block) {
			b.Txs = append([]ledger.Transaction(nil), b.Txs...)
			b.Txs[0].Body.Nonce++
		},
		"epoch": func(b *ledger.Block) { b.Header.Epoch = 7 },
	}
	for name, m := range mutate {
		blk := *b1.Block
		m(&blk)
		if _, _, err := voter.tree.Validate(&blk, blk.Header.PrevHash, false, false); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A block that must be empty may not carry transactions.
	if _, _, err := voter.tree.Validate(b1.Block, b1.Header.PrevHash, true, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("must-be-empty: %v", err)
	}
	// A payload named but not attached: refused as a proposal, accepted
	// as a committed (synced) block.
	payload := []byte("scan of the declaration")
	d := gm.SM3(payload)
	data, _ := txs.Encode(&txs.RecordPut{RecordType: "customs.scan", Subject: ledger.AddressOf(c.Kiosk.PublicKey()), Kind: txs.PayloadPlain, Size: uint64(len(payload))})
	ptx := &ledger.Transaction{Body: ledger.TxBody{Version: 1, ChainID: c.ID, Type: ledger.TxRecordPut, Timestamp: c.Doc.Time + 600, Nonce: 99,
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(c.Kiosk.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(c.Kiosk.PublicKey()), Data: data}, PayloadDigest: &d}, Payload: payload}
	if err := ptx.Sign(t.Context(), c.Kiosk); err != nil {
		t.Fatal(err)
	}
	leader2 := newHarness(t, c, 0, nil)
	pb, _, rej := leader2.build(leader2.tree.Root(), 1, ptx)
	if len(rej) != 0 || len(pb.Block.Txs) != 1 {
		t.Fatalf("payload tx rejected: %v", rej)
	}
	bare := *pb.Block
	bare.Txs = []ledger.Transaction{pb.Block.Txs[0].WithoutPayload()}
	if _, _, err := voter.tree.Validate(&bare, bare.Header.PrevHash, false, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("proposal without its payload: %v", err)
	}
	if _, _, err := voter.tree.Validate(&bare, bare.Header.PrevHash, false, true); err != nil {
		t.Errorf("synced block without its payload: %v", err)
	}
}

// A parameter change ends the epoch at the next multiple of EpochLength;
// the following blocks run in the new epoch with the new parameters.
func TestEpochEnd(t *testing.T) {
	c := fourNodes(t)
	params := c.Doc.Params
	params.EpochLength = 3
	h := newHarness(t, c, 0, &params)
	voter := newHarness(t, c, 2, &params)
	changed := params
	changed.BaseTimeoutMs = 700
	data, _ := txs.Encode(&txs.ParamsChange{Params: changed})
	gov, err := c.Tx(c.Admin, ledger.TxParamsChange, data, nil, c.Doc.Time+500)
	if err != nil {
		t.Fatal(err)
	}
	b1, next, _ := h.build(h.tree.Root(), 1, gov)
	if next != nil || !b1.Pending || b1.Output.Results[0].Code != 0 {
		t.Fatalf("block 1: next %v pending %v result %+v", next, b1.Pending, b1.Output.Results)
	}
	b2, next, _ := h.build(b1, 2)
	if next != nil || !b2.Pending {
		t.Fatal("block 2 ended the epoch early")
	}
	b3, next, _ := h.build(b2, 3)
	if next == nil || next.Epoch() != 2 || next.Params.BaseTimeoutMs != 700 || next.Self != h.self {
		t.Fatalf("block 3 next = %+v", next)
	}
	// The voter agrees, block by block.
	for _, b := range []*Block{b1, b2, b3} {
		_, vnext, err := voter.tree.Validate(b.Block, b.Header.PrevHash, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if (vnext == nil) != (b != b3) {
			t.Fatalf("voter's epoch end at block %d differs", b.Header.Height)
		}
	}
	// After the end: the empty suffix in epoch 1 changes nothing; the
	// first block of epoch 2 starts from block 3.
	tx, _ := c.RecordAt(c.Kiosk, "customs.declaration", c.Doc.Time+600)
	s4, next, _ := h.buildIn(1, b3, 4, tx)
	if next != nil || len(s4.Block.Txs) != 0 || s4.Header.StateRoot != b3.Header.StateRoot {
		t.Fatal("suffix block is not empty")
	}
	h.commit(b1)
	h.commit(b2)
	h.commit(b3, s4.ID)
	if h.tree.Lookup(s4.ID) != nil {
		t.Fatal("abandoned suffix survived")
	}
	e2, next, _ := h.build(b3, 1)
	if e2.Header.Epoch != 2 || e2.Epoch.Params.BaseTimeoutMs != 700 || next != nil || e2.Pending {
		t.Fatalf("first block of epoch 2: epoch %d pending %v", e2.Header.Epoch, e2.Pending)
	}
	// A restarted node recovers the same picture from committed state.
	pending, err := Pending(h.mem, *b3.Next)
	if err != nil || pending {
		t.Fatalf("pending after the epoch change: %v %v", pending, err)
	}
	if p, _ := Pending(h.mem, consensus.EpochConfig{Validators: ledger.ValidatorSet{Epoch: 1, Validators: c.Doc.Validators}, Params: params}); !p {
		t.Fatal("old configuration not seen as pending")
	}
}

// The layered view agrees with a stack of app.Overlays for reads and
// prefix scans, including early stops.
func TestLayeredViewMatchesOverlays(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return fmt.Appendf(nil, "%c/%02d", "ab"[rng.IntN(2)], rng.IntN(30)) }
	base := app.NewMemStore()
	var baseW []ledger.Write
	for range 20 {
		baseW = append(baseW, ledger.Write{Key: key(), Value: []byte{byte(rng.Uint32())}})
	}
	base.Apply(baseW)
	var ref app.View = base
	var layers []writeSet
	for range 3 {
		o := app.NewOverlay(ref)
		for range 10 {
			if rng.IntN(3) == 0 {
				o.Delete(key())
			} else {
				o.Put(key(), []byte{byte(rng.Uint32()) | 1})
			}
		}
		ws, err := ledger.CanonicalWriteSet(o.Writes())
		if err != nil {
			t.Fatal(err)
		}
		layers = append([]writeSet{ws}, layers...)
		ref = o
	}
	lv := &layeredView{layers: layers, base: base}
	for i := range 30 {
		for _, p := range []string{"a", "b"} {
			k := fmt.Appendf(nil, "%s/%02d", p, i)
			a, _ := lv.Get(k)
			b, _ := ref.Get(k)
			if !bytes.Equal(a, b) {
				t.Fatalf("Get %s: %x vs %x", k, a, b)
			}
		}
	}
	for _, prefix := range []string{"a", "b", "", "a/1"} {
		for _, stop := range []int{1, 3, 1000} {
			collect := func(v app.View) []string {
				var out []string
				v.Scan([]byte(prefix), func(k, val []byte) bool {
					out = append(out, fmt.Sprintf("%s=%x", k, val))
					return len(out) < stop
				})
				return out
			}
			got, want := collect(lv), collect(ref)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Scan %q stop %d:\n got %v\nwant %v", prefix, stop, got, want)
			}
		}
	}
}

// Between Finalize and Stored a committed block's writes and transactions
// stay visible to its descendants, so execution does not wait for storage.
func TestFinalizeBeforeStored(t *testing.T) {
	c := fourNodes(t)
	h := newHarness(t, c, 0, nil)
	tx1, _ := c.RecordAt(c.Kiosk, "customs.declaration", c.Doc.Time+500)
	b1, _, _ := h.build(h.tree.Root(), 1, tx1)
	fork, _, _ := h.build(h.tree.Root(), 2)
	b2, _, _ := h.build(b1, 3)
	if err := h.tree.Finalize(b1.ID, nil); err != nil {
		t.Fatal(err)
	}
	if h.tree.Lookup(fork.ID) != nil {
		t.Fatal("a fork of the committed block survived")
	}
	if h.tree.Lookup(b1.ID) == nil || h.tree.Root().ID == b1.ID {
		t.Fatal("the committed block left the tree before it was stored")
	}
	// Storage has not caught up: the committed state lacks b1's record, but
	// b3 on b2 sees it (the record exists) and refuses tx1 again.
	b3, _, _ := h.build(b2, 4, tx1)
	if len(b3.Block.Txs) != 0 {
		t.Fatal("a transaction of a committed, unstored block was proposed again")
	}
	var seen bool
	if err := h.tree.View(b2, func(v app.View) error {
		r, err := app.GetRecord(v, tx1.ID())
		seen = r != nil
		return err
	}); err != nil || !seen {
		t.Fatalf("record of the unstored block not visible: %v", err)
	}
	h.mem.Apply(b1.Output.Writes)
	h.committed[tx1.ID()] = true
	if err := h.tree.Stored(b1.ID); err != nil {
		t.Fatal(err)
	}
	if h.tree.Root().ID != b1.ID || h.tree.Lookup(b3.ID) == nil {
		t.Fatal("storing b1 lost its descendants")
	}
	if err := h.tree.Stored(b3.ID); err == nil {
		t.Fatal("a block that is not the root's child was stored")
	}
}
