// Package genesis loads a chain's genesis document and derives the genesis
// block and the first epoch from it. Every node reads its genesis file
// here, so that when provisioning wraps the document in an
// administrator-signed envelope only this package changes.
package genesis

import (
	"fmt"
	"io"
	"os"

	"hallmark/consensus"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/storage/erasure"
)

// MaxFileBytes bounds a genesis file.
const MaxFileBytes = 16 << 20

// Load reads and validates the genesis document at path: the canonical
// CBOR of app.GenesisDoc.
func Load(path string) (*app.GenesisDoc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("genesis: reading %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("genesis: %s is larger than %d bytes", path, MaxFileBytes)
	}
	doc, err := app.DecodeGenesis(b)
	if err != nil {
		return nil, fmt.Errorf("genesis: %s: %w", path, err)
	}
	return doc, nil
}

// Write validates doc and writes its canonical encoding to path.
func Write(path string, doc *app.GenesisDoc) error {
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	b, err := ledger.Marshal(doc)
	if err != nil {
		return fmt.Errorf("genesis: encoding: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	return nil
}

// Chain is what a node derives from its genesis document.
type Chain struct {
	Doc   *app.GenesisDoc
	State *app.GenesisState
	// Block is the genesis block: height 0, no transactions, the initial
	// state root, stamped with the document's time.
	Block *ledger.Block
	// Epoch is the configuration of epoch 1, the first in which blocks
	// are made (the genesis block is epoch 0's root).
	Epoch consensus.EpochConfig
}

// Derive computes the genesis block and first epoch from doc.
func Derive(doc *app.GenesisDoc) (*Chain, error) {
	gs, err := app.Genesis(doc)
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	b := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: doc.ChainID, Height: 0,
		StateRoot: gs.StateRoot, Timestamp: doc.Time, Epoch: 0,
	}}
	body, err := b.Seal()
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	if b.Header.ShardRoot, err = erasure.Root(body, len(doc.Validators)); err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	ep := consensus.EpochConfig{
		Validators: ledger.ValidatorSet{Epoch: 1, Validators: doc.Validators},
		Params:     doc.Params,
	}
	if err := ep.Validate(); err != nil {
		return nil, fmt.Errorf("genesis: first epoch: %w", err)
	}
	return &Chain{Doc: doc, State: gs, Block: b, Epoch: ep}, nil
}
