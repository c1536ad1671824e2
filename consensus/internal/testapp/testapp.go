// Package testapp is a small deterministic application for exercising the
// consensus core: it stands in for the ledger's execution and for storage
// in the simulator and the driver tests. It executes a block by chaining
// its transactions into the state root with ledger.NextStateRoot, checks a
// stand-in shard root, and understands one kind of transaction of its own:
// a reconfiguration that names the next epoch's validator set and
// parameters. Everything here is real encoding and real hashing; only the
// application semantics are simplified.
package testapp

import (
	"errors"
	"fmt"
	"slices"

	"hallmark/consensus"
	"hallmark/gm"
	"hallmark/ledger"
)

// ReconfigBody is the entity data of a reconfiguration transaction.
type ReconfigBody struct {
	Validators ledger.ValidatorSet `cbor:"1,keyasint"`
	Params     ledger.Params       `cbor:"2,keyasint"`
}

// IsReconfig reports whether tx is a reconfiguration transaction.
func IsReconfig(tx *ledger.Transaction) bool {
	switch tx.Body.Type {
	case ledger.TxNodeAdd, ledger.TxNodeRemove, ledger.TxNodeRotateKey, ledger.TxParamsChange:
		return true
	}
	return false
}

// DecodeReconfig returns the configuration a reconfiguration transaction
// names, with Self unset.
func DecodeReconfig(tx *ledger.Transaction) (*consensus.EpochConfig, error) {
	var body ReconfigBody
	if err := ledger.Unmarshal(tx.Body.Entity.Data, &body); err != nil {
		return nil, err
	}
	cfg := &consensus.EpochConfig{Validators: body.Validators, Params: body.Params}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// State is the application state after a block.
type State struct {
	Root   gm.Digest
	Height uint64
	ID     ledger.BlockID
	Time   int64
	// Epoch is the configuration of the epoch the block belongs to.
	Epoch consensus.EpochConfig
	// Pending is a reconfiguration executed but not yet in force.
	Pending *consensus.EpochConfig
	// Next is set when this block ended its epoch: the next epoch's
	// configuration.
	Next *consensus.EpochConfig
}

// Errors Execute returns.
var ErrInvalidBlock = errors.New("testapp: invalid block")

// ShardRoot is the stand-in for storage's shard root: it commits to the
// encoded body and the number of shards, as the real one does.
func ShardRoot(body []byte, n int) gm.Digest {
	return gm.SM3Concat([]byte("hallmark/testapp/shards\x00"), []byte{byte(n >> 8), byte(n)}, body)
}

// epochFor returns the configuration a child of parent at epoch runs in.
func epochFor(parent *State, epoch uint64) (*consensus.EpochConfig, bool) {
	if parent.Next != nil && epoch == parent.Next.Epoch() {
		return parent.Next, true
	}
	if epoch == parent.Epoch.Epoch() {
		return &parent.Epoch, false
	}
	return nil, false
}

// Execute validates b on top of parent and returns the state after it.
// mustBeEmpty marks a block after an epoch-ending block: it must carry no
// transactions and leave the state root unchanged.
func Execute(parent *State, b *ledger.Block, mustBeEmpty bool) (*State, error) {
	h := &b.Header
	if h.Height != parent.Height+1 || h.PrevHash != parent.ID {
		return nil, fmt.Errorf("%w: does not extend its parent", ErrInvalidBlock)
	}
	if h.Timestamp <= parent.Time {
		return nil, fmt.Errorf("%w: timestamp not after the parent's", ErrInvalidBlock)
	}
	cfg, first := epochFor(parent, h.Epoch)
	if cfg == nil {
		return nil, fmt.Errorf("%w: epoch %d after a block of epoch %d", ErrInvalidBlock, h.Epoch, parent.Epoch.Epoch())
	}
	if err := b.CheckBody(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBlock, err)
	}
	body, err := ledger.EncodeBody(b.Txs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBlock, err)
	}
	if ShardRoot(body, cfg.Validators.N()) != h.ShardRoot {
		return nil, fmt.Errorf("%w: shard root", ErrInvalidBlock)
	}
	next := &State{Height: h.Height, ID: h.ID(), Time: h.Timestamp, Epoch: *cfg}
	if mustBeEmpty {
		if first || len(b.Txs) != 0 || h.StateRoot != parent.Root {
			return nil, fmt.Errorf("%w: block after an epoch end must be empty", ErrInvalidBlock)
		}
		next.Root, next.Next = parent.Root, parent.Next
		return next, nil
	}
	if parent.Next != nil && !first {
		return nil, fmt.Errorf("%w: non-empty block after an epoch end", ErrInvalidBlock)
	}
	if !first {
		next.Pending = parent.Pending
	}
	writes := make([]ledger.Write, 0, len(b.Txs))
	for i := range b.Txs {
		tx := &b.Txs[i]
		id := tx.ID()
		writes = append(writes, ledger.Write{Key: slices.Clone(id[:]), Value: tx.Body.Entity.Data})
		if IsReconfig(tx) && next.Pending == nil {
			if rc, err := DecodeReconfig(tx); err == nil && rc.Epoch() == cfg.Epoch()+1 {
				next.Pending = rc
			}
		}
	}
	root, err := ledger.NextStateRoot(parent.Root, writes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBlock, err)
	}
	if root != h.StateRoot {
		return nil, fmt.Errorf("%w: state root", ErrInvalidBlock)
	}
	next.Root = root
	if next.Pending != nil && (cfg.Params.EpochLength == 0 || h.Height%cfg.Params.EpochLength == 0) {
		next.Next, next.Pending = next.Pending, nil
	}
	return next, nil
}

// Build makes the block a BuildProposal effect asks for, from txs (minus
// any reconfiguration that no longer applies), and returns it with the
// state after it. corrupt makes the state root wrong, for Byzantine tests.
func Build(parent *State, req consensus.BuildProposal, chainID string, txs []ledger.Transaction, corrupt bool) (*ledger.Block, *State, error) {
	b := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: chainID, Height: req.Height, PrevHash: req.Parent.ID,
		Timestamp: req.Timestamp, Epoch: req.Epoch, Round: req.Round, Proposer: req.Proposer,
	}}
	cfg, first := epochFor(parent, req.Epoch)
	if cfg == nil {
		return nil, nil, fmt.Errorf("testapp: no configuration for epoch %d", req.Epoch)
	}
	mustBeEmpty := req.Empty || (parent.Next != nil && !first)
	if !mustBeEmpty {
		pending := parent.Pending
		if first {
			pending = nil
		}
		for i := range txs {
			if IsReconfig(&txs[i]) {
				rc, err := DecodeReconfig(&txs[i])
				if err != nil || pending != nil || rc.Epoch() != cfg.Epoch()+1 {
					continue
				}
				pending = rc
			}
			b.Txs = append(b.Txs, txs[i])
		}
	}
	body, err := b.Seal()
	if err != nil {
		return nil, nil, err
	}
	b.Header.ShardRoot = ShardRoot(body, cfg.Validators.N())
	if mustBeEmpty {
		b.Header.StateRoot = parent.Root
	} else {
		writes := make([]ledger.Write, 0, len(b.Txs))
		for i := range b.Txs {
			id := b.Txs[i].ID()
			writes = append(writes, ledger.Write{Key: slices.Clone(id[:]), Value: b.Txs[i].Body.Entity.Data})
		}
		if b.Header.StateRoot, err = ledger.NextStateRoot(parent.Root, writes); err != nil {
			return nil, nil, err
		}
	}
	if corrupt {
		b.Header.StateRoot[0] ^= 0xff
	}
	st, err := Execute(parent, b, mustBeEmpty)
	if err != nil && !corrupt {
		return nil, nil, fmt.Errorf("testapp: built block does not execute: %w", err)
	}
	return b, st, nil
}

// Genesis returns the genesis header of a test chain and the state after it.
func Genesis(chainID string, cfg consensus.EpochConfig, time int64) (ledger.Header, *State) {
	h := ledger.Header{Version: ledger.HeaderVersion, ChainID: chainID, Height: 0, Timestamp: time,
		StateRoot: ledger.GenesisStateRoot(chainID), TxRoot: ledger.TxRoot(nil)}
	return h, &State{Root: h.StateRoot, Height: 0, ID: h.ID(), Time: time, Epoch: cfg}
}

// WithSelf returns cfg with Self set to the key id of the validator whose
// address is addr, or zero if none.
func WithSelf(cfg consensus.EpochConfig, addr string) consensus.EpochConfig {
	cfg.Self = gm.KeyID{}
	for _, v := range cfg.Validators.Validators {
		if v.Address == addr {
			cfg.Self = v.PeerID
		}
	}
	cfg.Validators.Validators = slices.Clone(cfg.Validators.Validators)
	return cfg
}
