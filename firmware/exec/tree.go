// Package exec is the node's speculative execution: a tree of blocks that
// consensus has seen but not committed, each with the state changes its
// execution produced on top of its parent's. Validators execute a proposal
// on its parent's speculative state before voting; a leader executes the
// block it builds; on commit the stored output is handed to storage and
// abandoned branches are dropped.
//
// The tree also decides epoch boundaries, deterministically from the state
// each block leaves: a reconfiguration is pending when the chain state's
// validator set or parameters differ from the epoch's, and a block ends its
// epoch when one is pending and its height is a multiple of the epoch's
// EpochLength (at once when that is 0). The blocks after an epoch-ending
// block that consensus needs to commit it must be empty and change nothing.
package exec

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"hallmark/consensus"
	"hallmark/firmware/sigcache"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/storage/erasure"
)

// ErrInvalid wraps every reason a block is refused.
var ErrInvalid = errors.New("exec: invalid block")

// Block is a block in the speculative tree: executed (or committed, for
// the root), with its output.
type Block struct {
	ID     ledger.BlockID
	Block  *ledger.Block // nil for a root known by header only
	Header ledger.Header
	// Output is the execution output; nil for the root and for the empty
	// blocks after an epoch end.
	Output *app.Output
	// Epoch is the configuration of the block's epoch (nil for a root
	// that ended an epoch whose configuration this node never had).
	Epoch *consensus.EpochConfig
	// Pending says a reconfiguration is waiting for the epoch to end.
	Pending bool
	// Next is the next epoch's configuration if this block ended its
	// epoch.
	Next *consensus.EpochConfig
	// Shard is this node's shard of the body (nil when it is not a
	// validator of the block's epoch).
	Shard *erasure.Shard
	// Body is the block's body encoding (ledger.EncodeBody), kept from
	// validation or sealing for storage.
	Body []byte
	// Seen is when this node first executed the block.
	Seen time.Time

	parent *Block
	writes writeSet
	txs    map[ledger.TxID]struct{}
}

// Parent returns the block's parent in the tree (nil for the root).
func (b *Block) Parent() *Block { return b.parent }

// Config configures a Tree.
type Config struct {
	Executor *app.Executor
	// Base runs fn on a consistent view of committed state.
	Base func(fn func(app.View) error) error
	// Committed reports, for each id, whether it is in a committed block
	// (the store's transaction index), in one read.
	Committed func([]ledger.TxID) []bool
	// Sigs is the verified-signature cache; Workers verify in parallel.
	Sigs    *sigcache.Cache
	Workers int
	// Self is this node's key id: which shard it keeps, and Self in the
	// epoch configurations it reports.
	Self gm.KeyID
	// Keys, if set, returns every key the node holds (its key before and
	// after a rotation): in an epoch whose validator set lists one of
	// them, that one is Self. Nil means Self alone.
	Keys func() []gm.KeyID
	Now  func() time.Time
}

// Root describes the last committed block a tree starts from.
type Root struct {
	Header ledger.Header
	// Epoch is the configuration of the current epoch. If Header is the
	// last block of the previous epoch (or genesis), Epoch is the next
	// one and Header.Epoch is lower.
	Epoch consensus.EpochConfig
	// Pending says a reconfiguration executed in the current epoch waits
	// for its end (the committed state's validators or parameters differ
	// from Epoch's).
	Pending bool
}

// Tree is the speculative execution tree. Its methods are called from the
// consensus driver's application goroutine; readers (status, tests) may
// call Lookup and Root concurrently.
type Tree struct {
	cfg Config

	mu     sync.Mutex
	blocks map[ledger.BlockID]*Block
	root   *Block
}

// New returns a tree rooted at the last committed block.
func New(cfg Config, r Root) (*Tree, error) {
	if cfg.Executor == nil || cfg.Base == nil || cfg.Committed == nil || cfg.Sigs == nil {
		return nil, errors.New("exec: executor, base view, committed index and signature cache are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Tree{cfg: cfg}
	ep := t.withSelf(r.Epoch)
	root := &Block{ID: r.Header.ID(), Header: r.Header, Seen: cfg.Now()}
	if r.Header.Epoch < ep.Epoch() {
		root.Next = &ep
	} else {
		root.Epoch, root.Pending = &ep, r.Pending
	}
	t.blocks, t.root = map[ledger.BlockID]*Block{root.ID: root}, root
	return t, nil
}

// Root returns the last committed block.
func (t *Tree) Root() *Block {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.root
}

// Lookup returns the block with id, if the tree has it.
func (t *Tree) Lookup(id ledger.BlockID) *Block {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.blocks[id]
}

// Len returns the number of blocks in the tree, the root included.
func (t *Tree) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.blocks)
}

// SelfIn returns the key this node holds that vs lists, or zero.
func (t *Tree) SelfIn(vs *ledger.ValidatorSet) gm.KeyID {
	if t.cfg.Keys == nil {
		if vs.IndexOf(t.cfg.Self) >= 0 {
			return t.cfg.Self
		}
		return gm.KeyID{}
	}
	for _, k := range t.cfg.Keys() {
		if vs.IndexOf(k) >= 0 {
			return k
		}
	}
	return gm.KeyID{}
}

func (t *Tree) withSelf(c consensus.EpochConfig) consensus.EpochConfig {
	c.Self = t.SelfIn(&c.Validators)
	return c
}

// epochFor returns the configuration a child of parent in epoch runs
// with, and whether the child is its epoch's first block.
func epochFor(parent *Block, epoch uint64) (*consensus.EpochConfig, bool) {
	if parent.Next != nil && epoch == parent.Next.Epoch() {
		return parent.Next, true
	}
	if parent.Epoch != nil && epoch == parent.Epoch.Epoch() {
		return parent.Epoch, false
	}
	return nil, false
}

// ShardIndex returns this node's validator index in cfg, or -1.
func (t *Tree) ShardIndex(cfg *consensus.EpochConfig) int {
	self := t.SelfIn(&cfg.Validators)
	if self == (gm.KeyID{}) {
		return -1
	}
	return cfg.Validators.IndexOf(self)
}

// layers returns the write sets from b up to (excluding) the root, newest
// first.
func (t *Tree) layers(b *Block) []writeSet {
	var out []writeSet
	for n := b; n != nil && n != t.root; n = n.parent {
		if len(n.writes) > 0 {
			out = append(out, n.writes)
		}
	}
	return out
}

// View runs fn on the state after block b (in the tree).
func (t *Tree) View(b *Block, fn func(app.View) error) error {
	t.mu.Lock()
	layers := t.layers(b)
	t.mu.Unlock()
	return t.cfg.Base(func(base app.View) error {
		return fn(&layeredView{layers: layers, base: base})
	})
}

// inChain reports whether a transaction id is in b or an uncommitted
// ancestor.
func (t *Tree) inChain(b *Block, id ledger.TxID) bool {
	for n := b; n != nil && n != t.root; n = n.parent {
		if _, ok := n.txs[id]; ok {
			return true
		}
	}
	return false
}

// ChainTxs returns the ids in b and its uncommitted ancestors.
func (t *Tree) ChainTxs(b *Block) map[ledger.TxID]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[ledger.TxID]struct{})
	for n := b; n != nil && n != t.root; n = n.parent {
		for id := range n.txs {
			out[id] = struct{}{}
		}
	}
	return out
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// shards computes the body's shard root for n validators and this node's
// shard when it holds one.
func shards(body []byte, n, index int) (gm.Digest, *erasure.Shard, error) {
	if index < 0 {
		root, err := erasure.Root(body, n)
		return root, nil, err
	}
	all, root, err := erasure.NewShards(body, n)
	if err != nil {
		return gm.Digest{}, nil, err
	}
	s := all[index]
	return root, &s, nil
}

// Validate executes block on its parent's state and checks it as a voter:
// the body against the header, the shard root, the transactions' form,
// signatures (each verified once per node) and uniqueness in the chain,
// the payload checks (unless committed: a synced block is final and its
// payloads may be gone), execution, and the state root. mustBeEmpty marks
// a block after an epoch end. On success the block joins the tree; the
// returned configuration is the next epoch's if the block ended its epoch.
func (t *Tree) Validate(block *ledger.Block, parentID ledger.BlockID, mustBeEmpty, committed bool) (*Block, *consensus.EpochConfig, error) {
	h := &block.Header
	id := h.ID()
	t.mu.Lock()
	parent := t.blocks[parentID]
	known := t.blocks[id]
	t.mu.Unlock()
	if known != nil {
		return known, known.reconfig(), nil
	}
	if parent == nil {
		return nil, nil, invalid("parent %s of block %d is not in the tree", parentID, h.Height)
	}
	if h.Height != parent.Header.Height+1 || h.PrevHash != parent.ID {
		return nil, nil, invalid("block %d does not extend its parent", h.Height)
	}
	cfg, first := epochFor(parent, h.Epoch)
	if cfg == nil {
		return nil, nil, invalid("block %d of epoch %d on a parent of epoch %d", h.Height, h.Epoch, parent.Header.Epoch)
	}
	body, err := block.CheckBodyEncoding()
	if err != nil {
		return nil, nil, invalid("%v", err)
	}
	root, shard, err := shards(body, cfg.Validators.N(), t.ShardIndex(cfg))
	if err != nil {
		return nil, nil, invalid("shards: %v", err)
	}
	if root != h.ShardRoot {
		return nil, nil, invalid("shard root %s, header says %s", root, h.ShardRoot)
	}
	if mustBeEmpty || (parent.Next != nil && !first) {
		if len(block.Txs) != 0 || h.StateRoot != parent.Header.StateRoot || first {
			return nil, nil, invalid("block %d after an epoch end must be empty and change nothing", h.Height)
		}
		b := &Block{ID: id, Block: block, Header: *h, Epoch: cfg, Pending: parent.Pending, Next: parent.Next,
			Shard: shard, Body: body, Seen: t.cfg.Now(), parent: parent}
		t.add(b)
		return b, nil, nil
	}
	ptrs := make([]*ledger.Transaction, len(block.Txs))
	ids := make([]ledger.TxID, len(block.Txs))
	for i := range block.Txs {
		ptrs[i], ids[i] = &block.Txs[i], block.Txs[i].ID()
	}
	// The chain first, storage second: a block moving from one to the
	// other in between is then seen in one of them.
	t.mu.Lock()
	for _, txID := range ids {
		if t.inChain(parent, txID) {
			t.mu.Unlock()
			return nil, nil, invalid("transaction %s is already in an uncommitted ancestor", txID)
		}
	}
	t.mu.Unlock()
	for i, in := range t.cfg.Committed(ids) {
		if in {
			return nil, nil, invalid("transaction %s is already in a committed block", ids[i])
		}
	}
	// Verify what the cache does not know, on every core, before
	// execution checks the signatures one by one (then from the cache).
	// A bad signature is not a reason to refuse the block: execution
	// records it as the transaction's failure.
	t.cfg.Sigs.CheckAll(ptrs, t.cfg.Workers)

	var out *app.Output
	var pending bool
	var next *consensus.EpochConfig
	err = t.View(parent, func(v app.View) error {
		if !committed {
			if err := app.CheckProposal(v, block); err != nil {
				return invalid("payloads: %v", err)
			}
		}
		o, err := t.cfg.Executor.ExecuteBlock(v, parent.Header.StateRoot, block)
		if err != nil {
			return invalid("execution: %v", err)
		}
		if o.StateRoot != h.StateRoot {
			return invalid("state root %s, header says %s", o.StateRoot, h.StateRoot)
		}
		out = o
		pending, next, err = epochAfter(&layeredView{layers: []writeSet{o.Writes}, base: v}, o, cfg, parent, first, h.Height)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if next != nil {
		n := t.withSelf(*next)
		next = &n
	}
	b := &Block{ID: id, Block: block, Header: *h, Output: out, Epoch: cfg, Pending: pending, Next: next,
		Shard: shard, Body: body, Seen: t.cfg.Now(), parent: parent, writes: out.Writes, txs: txSet(block)}
	t.add(b)
	return b, b.reconfig(), nil
}

// reconfig is what the core is told when it validates b: the next epoch's
// configuration if b itself ended its epoch.
func (b *Block) reconfig() *consensus.EpochConfig {
	if b.Next == nil || b.Output == nil {
		return nil
	}
	n := *b.Next
	return &n
}

func txSet(b *ledger.Block) map[ledger.TxID]struct{} {
	m := make(map[ledger.TxID]struct{}, len(b.Txs))
	for i := range b.Txs {
		m[b.Txs[i].ID()] = struct{}{}
	}
	return m
}

var (
	keyValidators = []byte("m/validators")
	keyParams     = []byte("m/params")
)

// epochAfter decides, from the state after a block (v), whether a
// reconfiguration is pending and whether the block ends its epoch.
func epochAfter(v app.View, out *app.Output, cfg *consensus.EpochConfig, parent *Block, first bool, height uint64) (bool, *consensus.EpochConfig, error) {
	touched := false
	for _, w := range out.Writes {
		if bytes.Equal(w.Key, keyValidators) || bytes.Equal(w.Key, keyParams) {
			touched = true
		}
	}
	pending := parent.Pending && !first
	var vs *ledger.ValidatorSet
	var params ledger.Params
	if touched || first || pending {
		var err error
		if vs, err = app.Validators(v); err != nil {
			return false, nil, fmt.Errorf("exec: reading the validator set: %w", err)
		}
		if params, err = app.Params(v); err != nil {
			return false, nil, fmt.Errorf("exec: reading the parameters: %w", err)
		}
		if touched || first {
			pending, err = differs(vs, params, cfg)
			if err != nil {
				return false, nil, err
			}
		}
	}
	if !pending {
		return false, nil, nil
	}
	if el := cfg.Params.EpochLength; el != 0 && height%el != 0 {
		return true, nil, nil
	}
	next := &consensus.EpochConfig{
		Validators: ledger.ValidatorSet{Epoch: cfg.Epoch() + 1, Validators: vs.Validators},
		Params:     params,
	}
	if err := next.Validate(); err != nil {
		// Governance keeps the set valid; a set consensus cannot run with
		// must not end the epoch.
		return true, nil, nil
	}
	return true, next, nil
}

// differs reports whether the chain state's validators or parameters differ
// from the epoch's.
func differs(vs *ledger.ValidatorSet, params ledger.Params, cfg *consensus.EpochConfig) (bool, error) {
	if params != cfg.Params {
		return true, nil
	}
	a, err := ledger.Marshal(vs.Validators)
	if err != nil {
		return false, err
	}
	b, err := ledger.Marshal(cfg.Validators.Validators)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(a, b), nil
}

// Pending reports, for a recovering node, whether the committed state's
// validator set or parameters differ from the current epoch's.
func Pending(v app.View, cfg consensus.EpochConfig) (bool, error) {
	vs, err := app.Validators(v)
	if err != nil {
		return false, err
	}
	params, err := app.Params(v)
	if err != nil {
		return false, err
	}
	return differs(vs, params, &cfg)
}

// Rejected is a transaction a leader left out of its block, with the
// reason.
type Rejected struct {
	Tx  *ledger.Transaction
	Err error
}

// Build makes the block req asks for on top of its parent: it takes the
// candidates pick returns (told which ids the chain already holds), keeps
// those that pass the ledger's admission checks against the parent's state
// at the block's time, seals the block, fills the shard and state roots by
// executing it, and adds it to the tree. It returns the block, the next
// epoch's configuration if the block ends its epoch, and the candidates it
// left out.
func (t *Tree) Build(req consensus.BuildProposal, chainID string, pick func(params ledger.Params, skip func(ledger.TxID) bool) []*ledger.Transaction) (*Block, *consensus.EpochConfig, []Rejected, error) {
	t.mu.Lock()
	parent := t.blocks[req.Parent.ID]
	t.mu.Unlock()
	if parent == nil {
		return nil, nil, nil, fmt.Errorf("exec: parent %s of the proposal is not in the tree", req.Parent.ID)
	}
	cfg, first := epochFor(parent, req.Epoch)
	if cfg == nil {
		return nil, nil, nil, fmt.Errorf("exec: no configuration for epoch %d on a parent of epoch %d", req.Epoch, parent.Header.Epoch)
	}
	block := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: chainID, Height: req.Height, PrevHash: req.Parent.ID,
		Timestamp: req.Timestamp, Epoch: req.Epoch, Round: req.Round, Proposer: req.Proposer,
	}}
	mustBeEmpty := req.Empty || (parent.Next != nil && !first)
	var cands []*ledger.Transaction
	if !mustBeEmpty {
		chain := t.ChainTxs(parent)
		skip := func(id ledger.TxID) bool {
			_, in := chain[id]
			return in
		}
		cands = pick(cfg.Params, skip)
		// Pending transactions leave the mempool once their block is
		// stored, so a committed one is rare here: filter the picked ones
		// with one read of the index.
		ids := make([]ledger.TxID, len(cands))
		for i, tx := range cands {
			ids[i] = tx.ID()
		}
		kept := cands[:0]
		for i, in := range t.cfg.Committed(ids) {
			if !in {
				kept = append(kept, cands[i])
			}
		}
		cands = kept
	}
	if mustBeEmpty {
		body, err := block.Seal()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("exec: sealing: %w", err)
		}
		root, shard, err := shards(body, cfg.Validators.N(), t.ShardIndex(cfg))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("exec: shards: %w", err)
		}
		block.Header.ShardRoot, block.Header.StateRoot = root, parent.Header.StateRoot
		b := &Block{ID: block.Header.ID(), Block: block, Header: block.Header, Epoch: cfg, Pending: parent.Pending, Next: parent.Next,
			Shard: shard, Body: body, Seen: t.cfg.Now(), parent: parent}
		t.add(b)
		return b, nil, nil, nil
	}

	// The candidates passed the ledger's admission checks when the mempool
	// took them, so the leader executes them at once rather than checking
	// each again. What it must still catch: a transaction that would fail
	// before consuming its id (too old or too new at this block's time, or
	// a duplicate) — proposing it would burn the id in the transaction
	// index although the ledger left no trace — and payloads, which
	// execution never sees. Those with payloads go through the full check
	// first; the others are dropped from the block and the block executed
	// again if their execution result says so (rarely).
	var rejected []Rejected
	var out *app.Output
	var pending bool
	var next *consensus.EpochConfig
	var shard *erasure.Shard
	var body []byte
	err := t.View(parent, func(v app.View) error {
		var checker *app.Checker
		kept := cands[:0:0]
		for _, tx := range cands {
			if tx.Payload != nil || tx.Body.PayloadDigest != nil {
				if checker == nil {
					var err error
					if checker, err = t.cfg.Executor.NewChecker(v, req.Timestamp); err != nil {
						return err
					}
				}
				if err := checker.Check(tx); err != nil {
					if reason.Of(err) == reason.Internal {
						return err
					}
					rejected = append(rejected, Rejected{Tx: tx, Err: err})
					continue
				}
			}
			kept = append(kept, tx)
		}
		// Each round drops at least one transaction, so this ends.
		for {
			block.Txs = block.Txs[:0]
			for _, tx := range kept {
				block.Txs = append(block.Txs, *tx)
			}
			var err error
			if body, err = block.Seal(); err != nil {
				return fmt.Errorf("sealing: %w", err)
			}
			root, sh, err := shards(body, cfg.Validators.N(), t.ShardIndex(cfg))
			if err != nil {
				return fmt.Errorf("shards: %w", err)
			}
			block.Header.ShardRoot, shard = root, sh
			o, err := t.cfg.Executor.ExecuteBlock(v, parent.Header.StateRoot, block)
			if err != nil {
				return err
			}
			again := kept[:0:0]
			for i, r := range o.Results {
				if leavesNoTrace(r.Code) {
					rejected = append(rejected, Rejected{Tx: kept[i], Err: reason.New(r.Code, r.Detail)})
					continue
				}
				again = append(again, kept[i])
			}
			if len(again) == len(kept) {
				out = o
				pending, next, err = epochAfter(&layeredView{layers: []writeSet{o.Writes}, base: v}, o, cfg, parent, first, req.Height)
				return err
			}
			kept = again
		}
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("exec: building the proposal: %w", err)
	}
	block.Header.StateRoot = out.StateRoot
	if next != nil {
		n := t.withSelf(*next)
		next = &n
	}
	b := &Block{ID: block.Header.ID(), Block: block, Header: block.Header, Output: out, Epoch: cfg, Pending: pending, Next: next,
		Shard: shard, Body: body, Seen: t.cfg.Now(), parent: parent, writes: out.Writes, txs: txSet(block)}
	t.add(b)
	return b, b.reconfig(), rejected, nil
}

// leavesNoTrace reports whether a transaction failing with code failed
// before its id was consumed (form, chain, body, payload rule, time window,
// duplicate, signatures): docs/TRANSACTIONS.md §2, steps 1–6.
func leavesNoTrace(c reason.Code) bool { return c >= 100 && c < 300 }

func (t *Tree) add(b *Block) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.blocks[b.ID]; !ok {
		t.blocks[b.ID] = b
	}
}

// Finalize records that consensus committed id: every block that does not
// descend from it (other than its uncommitted-to-storage ancestors) is
// dropped, and the abandoned ones too. The committed blocks stay in the
// tree, their writes visible to their descendants, until Stored moves the
// root past them, so that execution need not wait for storage.
func (t *Tree) Finalize(id ledger.BlockID, abandoned []ledger.BlockID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blocks[id]
	if b == nil {
		return fmt.Errorf("exec: committed block %s is not in the tree", id)
	}
	if !t.descends(b) {
		return fmt.Errorf("exec: committed block %d does not descend from the root %d", b.Header.Height, t.root.Header.Height)
	}
	for _, a := range abandoned {
		if a != id {
			delete(t.blocks, a)
		}
	}
	keep := map[*Block]bool{}
	for n := b; n != nil && n != t.root; n = n.parent {
		keep[n] = true
	}
	for bid, n := range t.blocks {
		if n == t.root || keep[n] {
			continue
		}
		if !t.descendsFrom(n, b) {
			delete(t.blocks, bid)
		}
	}
	return nil
}

// Stored makes id, which storage now holds, the new root. It must be the
// root's child.
func (t *Tree) Stored(id ledger.BlockID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blocks[id]
	if b == nil {
		return fmt.Errorf("exec: stored block %s is not in the tree", id)
	}
	if b.parent != t.root {
		return fmt.Errorf("exec: stored block %d does not extend the root %d", b.Header.Height, t.root.Header.Height)
	}
	delete(t.blocks, t.root.ID)
	b.parent = nil
	b.writes = nil // now in storage
	b.txs = nil
	b.Body = nil
	t.root = b
	return nil
}

// Committed is Finalize and Stored at once, for a caller that stores
// synchronously.
func (t *Tree) Committed(id ledger.BlockID, abandoned []ledger.BlockID) error {
	if err := t.Finalize(id, abandoned); err != nil {
		return err
	}
	return t.Stored(id)
}

// descends reports whether n is the root or descends from it through
// blocks still in the tree.
func (t *Tree) descends(n *Block) bool { return t.descendsFrom(n, t.root) }

// descendsFrom reports whether n is anc or descends from it through blocks
// still in the tree.
func (t *Tree) descendsFrom(n, anc *Block) bool {
	for ; n != nil; n = n.parent {
		if n == anc {
			return true
		}
		if t.blocks[n.ID] != n {
			return false
		}
	}
	return false
}
