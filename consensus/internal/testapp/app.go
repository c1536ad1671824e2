package testapp

import (
	"errors"
	"fmt"

	"hallmark/consensus"
	"hallmark/ledger"
)

// App is one node's application and storage: speculative states of
// uncommitted blocks, the committed chain with its proofs, the epoch
// records and the stored safety data. It is not safe for concurrent use.
type App struct {
	chainID string
	addr    string
	// AcceptAll makes the application approve every block (a Byzantine
	// node that votes for invalid blocks).
	AcceptAll bool
	// KeepStates keeps the state of every block ever executed (a
	// Byzantine node that builds forks on old blocks).
	KeepStates bool

	states map[ledger.BlockID]*State
	tip    *State

	blocks    []*ledger.Block // by height; blocks[0] is nil (genesis header only)
	proofs    map[uint64]*consensus.CommitProof
	genesis   ledger.Header
	epoch     consensus.EpochConfig // current epoch, Self unset
	epochRoot consensus.BlockRef
	safety    []byte
	kept      map[ledger.BlockID][]byte // encoded CertifiedBlock of uncommitted blocks
	// Validated records every block this application approved.
	Validated map[ledger.BlockID]bool
}

// NewApp returns the application of the node whose validator address is
// addr, at genesis.
func NewApp(chainID, addr string, genesis ledger.Header, gs *State) *App {
	a := &App{
		chainID: chainID, addr: addr, genesis: genesis,
		states:    map[ledger.BlockID]*State{gs.ID: gs},
		tip:       gs,
		blocks:    []*ledger.Block{nil},
		proofs:    make(map[uint64]*consensus.CommitProof),
		epoch:     gs.Epoch,
		epochRoot: consensus.RefOf(&genesis),
		Validated: make(map[ledger.BlockID]bool),
		kept:      make(map[ledger.BlockID][]byte),
	}
	return a
}

// Addr returns the node's validator address.
func (a *App) Addr() string { return a.addr }

// Tip returns the state after the last committed block.
func (a *App) Tip() *State { return a.tip }

// State returns the state after block id, if this application has it.
func (a *App) State(id ledger.BlockID) *State { return a.states[id] }

// Validate executes a block for a ValidateBlock effect.
func (a *App) Validate(req consensus.ValidateBlock) consensus.BlockValidated {
	id := req.Block.Header.ID()
	res := consensus.BlockValidated{BlockID: id}
	parent := a.states[req.Parent.ID]
	if parent == nil {
		res.Err = fmt.Errorf("testapp: parent %s unknown", req.Parent.ID)
		return res
	}
	st, err := Execute(parent, req.Block, req.MustBeEmpty)
	if err != nil {
		if a.AcceptAll {
			return res
		}
		res.Err = err
		return res
	}
	a.states[id] = st
	a.Validated[id] = true
	if st.Next != nil && !req.MustBeEmpty {
		cfg := WithSelf(*st.Next, a.addr)
		res.Reconfig = &cfg
	}
	return res
}

// Build answers a BuildProposal effect with txs as the candidate
// transactions.
func (a *App) Build(req consensus.BuildProposal, txs []ledger.Transaction, corrupt bool) consensus.ProposalBuilt {
	res := consensus.ProposalBuilt{Epoch: req.Epoch, Round: req.Round}
	parent := a.states[req.Parent.ID]
	if parent == nil {
		res.Err = fmt.Errorf("testapp: parent %s unknown", req.Parent.ID)
		return res
	}
	b, st, err := Build(parent, req, a.chainID, txs, corrupt)
	if err != nil {
		res.Err = err
		return res
	}
	res.Block = b
	if st != nil {
		id := b.Header.ID()
		a.states[id] = st
		a.Validated[id] = true
		if st.Next != nil && st.Next != parent.Next {
			cfg := WithSelf(*st.Next, a.addr)
			res.Reconfig = &cfg
		}
	}
	return res
}

// ErrCommit reports a commit the application cannot apply.
var ErrCommit = errors.New("testapp: bad commit")

// Commit applies a Commit effect: the blocks must extend the committed
// chain and have been validated here.
func (a *App) Commit(c consensus.Commit) error {
	for _, b := range c.Blocks {
		id := b.Header.ID()
		st := a.states[id]
		if st == nil {
			return fmt.Errorf("%w: block %d (%s) was never validated here", ErrCommit, b.Header.Height, id)
		}
		if b.Header.Height != uint64(len(a.blocks)) || b.Header.PrevHash != a.tip.ID {
			return fmt.Errorf("%w: block %d does not extend committed height %d", ErrCommit, b.Header.Height, len(a.blocks)-1)
		}
		if !a.KeepStates {
			delete(a.states, a.tip.ID)
		}
		a.blocks = append(a.blocks, b)
		a.tip = st
	}
	p := c.Proof
	a.proofs[a.tip.Height] = &p
	for _, id := range c.Abandoned {
		if !a.KeepStates {
			delete(a.states, id)
		}
		delete(a.kept, id)
	}
	for _, b := range c.Blocks {
		delete(a.kept, b.Header.ID())
	}
	if c.EpochChange != nil {
		if a.tip.Next == nil || a.tip.Next.Epoch() != c.EpochChange.Epoch() {
			return fmt.Errorf("%w: epoch change the application did not compute", ErrCommit)
		}
		a.epoch = *a.tip.Next
		a.epochRoot = consensus.RefOf(&a.blocks[len(a.blocks)-1].Header)
		// Only the tip's state survives an epoch change.
		if !a.KeepStates {
			a.states = map[ledger.BlockID]*State{a.tip.ID: a.tip}
		}
	}
	return nil
}

// Height returns the committed height.
func (a *App) Height() uint64 { return uint64(len(a.blocks) - 1) }

// Block returns the committed block at height (nil for genesis).
func (a *App) Block(h uint64) *ledger.Block {
	if h >= uint64(len(a.blocks)) {
		return nil
	}
	return a.blocks[h]
}

// CommittedHeight implements consensus.CommittedReader.
func (a *App) CommittedHeight() (uint64, error) { return a.Height(), nil }

// CommittedBlock implements consensus.CommittedReader.
func (a *App) CommittedBlock(h uint64) (*ledger.Block, *consensus.CommitProof, error) {
	if h == 0 || h >= uint64(len(a.blocks)) {
		return nil, nil, fmt.Errorf("testapp: no committed block %d", h)
	}
	return a.blocks[h], a.proofs[h], nil
}

// SaveSafety stores encoded safety data and the block being signed for, as
// a driver does before signing.
func (a *App) SaveSafety(s consensus.SafetyData, block *consensus.CertifiedBlock) error {
	b, err := consensus.EncodeSafetyData(&s)
	if err != nil {
		return err
	}
	if block != nil && block.Block.Header.Height > a.Height() {
		enc, err := ledger.Marshal(block)
		if err != nil {
			return err
		}
		a.kept[block.Block.Header.ID()] = enc
	}
	a.safety = b
	return nil
}

// Recovery returns what a restarted core resumes from, and forgets every
// speculative state (a crash loses memory, not storage).
func (a *App) Recovery() (consensus.Recovery, error) {
	a.states = map[ledger.BlockID]*State{a.tip.ID: a.tip}
	rec := consensus.Recovery{Epoch: WithSelf(a.epoch, a.addr), EpochRoot: a.epochRoot, Root: a.genesis}
	if h := a.Height(); h > 0 {
		rec.Root = a.blocks[h].Header
		if rec.Root.Epoch == a.epoch.Epoch() {
			rec.RootProof = a.proofs[h]
		}
	}
	for _, enc := range a.kept {
		var cb consensus.CertifiedBlock
		if err := ledger.Unmarshal(enc, &cb); err != nil {
			return rec, err
		}
		if cb.Block.Header.Height > a.Height() {
			rec.Blocks = append(rec.Blocks, cb)
		}
	}
	if a.safety != nil {
		s, err := consensus.DecodeSafetyData(a.safety)
		if err != nil {
			return rec, err
		}
		rec.Safety = s
	}
	return rec, nil
}
