// Package genesis loads a chain's genesis file and derives the genesis
// block and the first epoch from it. Every node reads its genesis file
// here. The file is the genesis ceremony's product (package provisioning):
// the genesis document with the founding organisations and validator
// evidence, approved by the founding administrators; a node refuses a file
// whose approvals do not reach the governance threshold.
package genesis

import (
	"fmt"
	"io"
	"os"

	"hallmark/consensus"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/provisioning"
	"hallmark/storage/erasure"
)

// MaxFileBytes bounds a genesis file.
const MaxFileBytes = provisioning.MaxGenesisFileBytes

// Read reads and decodes the genesis file at path without verifying it.
func Read(path string) (*provisioning.GenesisFile, error) {
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
	g, err := provisioning.DecodeGenesisFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Load reads the genesis file at path and verifies it: the document, the
// organisations and validator evidence (with o.RequireAttestation, every
// validator must have a verified TPM attestation), and that the founding
// administrators' approvals reach the governance threshold. It returns the
// genesis document and the file.
func Load(path string, o provisioning.CheckOptions) (*app.GenesisDoc, *provisioning.GenesisFile, error) {
	g, err := Read(path)
	if err != nil {
		return nil, nil, err
	}
	doc, err := g.Verify(o)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: a node starts only from a genesis its founding administrators approved (hallmarkctl genesis verify)", path, err)
	}
	return doc, g, nil
}

// Write verifies an approved genesis file and writes its canonical
// encoding to path.
func Write(path string, g *provisioning.GenesisFile) error {
	if _, err := g.Verify(provisioning.CheckOptions{}); err != nil {
		return err
	}
	b, err := g.Encode()
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
