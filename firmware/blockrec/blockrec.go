// Package blockrec is the record a node stores beside each committed block
// in storage's opaque certificate slot: the commit proof when a commit
// ended with the block, the next epoch's configuration when the block ended
// its epoch, and the execution result code of each transaction (which
// storage does not otherwise keep). The node writes it; the API and
// recovery read it.
package blockrec

import (
	"fmt"

	"hallmark/consensus"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
)

// Version is the record format version.
const Version = 1

// Record is the stored form:
//
//	{1: version, 2: commit proof (consensus encoding, optional),
//	 3: next epoch {1: validator set, 2: params} (optional), 4: [result codes]}
type Record struct {
	Version uint16        `cbor:"1,keyasint"`
	Proof   []byte        `cbor:"2,keyasint,omitempty"`
	Next    *Epoch        `cbor:"3,keyasint,omitempty"`
	Results []reason.Code `cbor:"4,keyasint"`
}

// Epoch is an epoch's configuration as consensus runs it (without the
// node-local Self).
type Epoch struct {
	Validators ledger.ValidatorSet `cbor:"1,keyasint"`
	Params     ledger.Params       `cbor:"2,keyasint"`
}

// Config returns the epoch as a consensus configuration (Self unset).
func (e *Epoch) Config() consensus.EpochConfig {
	return consensus.EpochConfig{Validators: e.Validators, Params: e.Params}
}

// Encode builds and encodes the record of a block whose execution output
// is out (nil for none).
func Encode(proof *consensus.CommitProof, next *consensus.EpochConfig, out *app.Output) ([]byte, error) {
	r := Record{Version: Version, Results: []reason.Code{}}
	if proof != nil {
		enc, err := consensus.EncodeCommitProof(proof)
		if err != nil {
			return nil, err
		}
		r.Proof = enc
	}
	if next != nil {
		r.Next = &Epoch{Validators: next.Validators, Params: next.Params}
	}
	if out != nil {
		for _, res := range out.Results {
			r.Results = append(r.Results, res.Code)
		}
	}
	return ledger.Marshal(&r)
}

// Decode strictly decodes a record.
func Decode(b []byte) (*Record, error) {
	var r Record
	if err := ledger.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("blockrec: %w", err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("blockrec: version %d", r.Version)
	}
	return &r, nil
}

// CommitProof returns the commit proof the record carries, or nil.
func (r *Record) CommitProof() (*consensus.CommitProof, error) {
	if r == nil || r.Proof == nil {
		return nil, nil
	}
	return consensus.DecodeCommitProof(r.Proof)
}
