package app

import (
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// The objects the application keeps in world state. Each is canonical
// CBOR under the key named in keys.go. Times are block timestamps in ms.

// Record is a stored record (存证).
type Record struct {
	ID      gm.Digest       `cbor:"1,keyasint" json:"id"` // the id of the transaction that stored it
	Type    string          `cbor:"2,keyasint" json:"recordType"`
	Subject ledger.Address  `cbor:"3,keyasint" json:"subject"`
	Owner   ledger.Address  `cbor:"4,keyasint" json:"owner"` // the sender
	Kind    txs.PayloadKind `cbor:"5,keyasint,omitempty" json:"payloadKind"`
	// Digest is the SM3 digest of the document (digest-only records) or
	// of the payload (plaintext or envelope). It survives masking.
	Digest       gm.Digest        `cbor:"6,keyasint" json:"digest"`
	Size         uint64           `cbor:"7,keyasint,omitempty" json:"payloadSize,omitempty"`
	Readers      []ledger.Address `cbor:"8,keyasint,omitempty" json:"readers,omitempty"`
	Height       uint64           `cbor:"9,keyasint" json:"height"`
	Time         int64            `cbor:"10,keyasint" json:"time"`
	Supersedes   *gm.Digest       `cbor:"11,keyasint,omitempty" json:"supersedes,omitempty"`
	SupersededBy *gm.Digest       `cbor:"12,keyasint,omitempty" json:"supersededBy,omitempty"`
	Masked       *Mask            `cbor:"13,keyasint,omitempty" json:"masked,omitempty"`
}

// HasPayload reports whether the record's content is a stored payload blob.
func (r *Record) HasPayload() bool {
	return r.Kind == txs.PayloadPlain || r.Kind == txs.PayloadSealed
}

// Mask says who masked a record, when and why (监督检查: 屏蔽).
type Mask struct {
	By     ledger.Address `cbor:"1,keyasint" json:"by"`
	Time   int64          `cbor:"2,keyasint" json:"time"`
	Height uint64         `cbor:"3,keyasint" json:"height"`
	Reason string         `cbor:"4,keyasint" json:"reason"`
	Tx     gm.Digest      `cbor:"5,keyasint" json:"tx"`
}

// Erasure marks a payload digest whose bytes were erased by a mask; a
// later transaction naming the same payload is refused.
type Erasure struct {
	Record gm.Digest `cbor:"1,keyasint" json:"record"`
	Height uint64    `cbor:"2,keyasint" json:"height"`
}

// Certificate is an electronic certificate (电子证照).
type Certificate struct {
	ID        gm.Digest      `cbor:"1,keyasint" json:"id"`
	Issuer    ledger.Address `cbor:"2,keyasint" json:"issuer"`
	Holder    ledger.Address `cbor:"3,keyasint" json:"holder"`
	Kind      string         `cbor:"4,keyasint" json:"kind"`
	Serial    string         `cbor:"5,keyasint,omitempty" json:"serial,omitempty"`
	Document  gm.Digest      `cbor:"6,keyasint" json:"documentDigest"`
	NotBefore int64          `cbor:"7,keyasint" json:"notBefore"`
	NotAfter  int64          `cbor:"8,keyasint" json:"notAfter"`
	Height    uint64         `cbor:"9,keyasint" json:"height"`
	Time      int64          `cbor:"10,keyasint" json:"time"`
	Revoked   *Revocation    `cbor:"11,keyasint,omitempty" json:"revoked,omitempty"`
}

// Revocation says who revoked a certificate, when and why.
type Revocation struct {
	By     ledger.Address `cbor:"1,keyasint" json:"by"`
	Time   int64          `cbor:"2,keyasint" json:"time"`
	Height uint64         `cbor:"3,keyasint" json:"height"`
	Reason string         `cbor:"4,keyasint" json:"reason"`
}

// Grant is a subject's authorisation for a grantee to read its records of
// one class until a time.
type Grant struct {
	ID      gm.Digest      `cbor:"1,keyasint" json:"id"` // the granting transaction
	Subject ledger.Address `cbor:"2,keyasint" json:"subject"`
	Grantee ledger.Address `cbor:"3,keyasint" json:"grantee"`
	Class   string         `cbor:"4,keyasint" json:"recordType"`
	Until   int64          `cbor:"5,keyasint" json:"until"`
	Height  uint64         `cbor:"6,keyasint" json:"height"`
	Time    int64          `cbor:"7,keyasint" json:"time"`
}

// Asset is an asset class.
type Asset struct {
	Symbol    string         `cbor:"1,keyasint" json:"symbol"`
	Name      string         `cbor:"2,keyasint" json:"name"`
	Issuer    ledger.Address `cbor:"3,keyasint" json:"issuer"`
	Decimals  uint8          `cbor:"4,keyasint,omitempty" json:"decimals"`
	MaxSupply uint64         `cbor:"5,keyasint,omitempty" json:"maxSupply,omitempty"`
	Supply    uint64         `cbor:"6,keyasint,omitempty" json:"supply"`
	Height    uint64         `cbor:"7,keyasint" json:"height"`
}

// Proposal is a governance action waiting for administrator approvals.
type Proposal struct {
	ID        gm.Digest        `cbor:"1,keyasint" json:"id"` // the proposing transaction
	Type      ledger.TxType    `cbor:"2,keyasint" json:"transactionType"`
	Data      []byte           `cbor:"3,keyasint" json:"data"` // the body, as in the proposing transaction
	Sender    ledger.Address   `cbor:"4,keyasint" json:"sender"`
	Recipient *ledger.Address  `cbor:"5,keyasint,omitempty" json:"recipient,omitempty"`
	Approvals []ledger.Address `cbor:"6,keyasint" json:"approvals"` // ascending
	Height    uint64           `cbor:"7,keyasint" json:"height"`
	Time      int64            `cbor:"8,keyasint" json:"time"`
	Expires   int64            `cbor:"9,keyasint" json:"expires"`
}

// NodeInfo is what the chain knows about an admitted node beyond its
// entry in the validator set.
type NodeInfo struct {
	Peer        ledger.PeerConfig `cbor:"1,keyasint" json:"peer"`
	Certificate []byte            `cbor:"2,keyasint,omitempty" json:"certificate,omitempty"`
	Height      uint64            `cbor:"3,keyasint" json:"height"` // when it was admitted or its key last rotated
}

// ProtocolState is the protocol version in force and any scheduled upgrade.
type ProtocolState struct {
	Version uint32 `cbor:"1,keyasint" json:"version"`
	// Next and Activation describe a scheduled upgrade: Next is the
	// version from block height Activation on. Zero when none.
	Next       uint32 `cbor:"2,keyasint,omitempty" json:"next,omitempty"`
	Activation uint64 `cbor:"3,keyasint,omitempty" json:"activationHeight,omitempty"`
}

// At returns the version in force at height h.
func (p ProtocolState) At(h uint64) uint32 {
	if p.Next != 0 && h >= p.Activation {
		return p.Next
	}
	return p.Version
}

// AnchorState is the last anchored segment of one audit log.
type AnchorState struct {
	LastSeq uint64    `cbor:"1,keyasint" json:"lastSeq"`
	Head    gm.Digest `cbor:"2,keyasint" json:"head"`
	To      int64     `cbor:"3,keyasint" json:"to"`
	Height  uint64    `cbor:"4,keyasint" json:"height"`
	Tx      gm.Digest `cbor:"5,keyasint" json:"tx"`
}

// Tip describes the last executed block. Its digests commit the state
// root to the block's results and audit events.
type Tip struct {
	Height  uint64    `cbor:"1,keyasint" json:"height"`
	Time    int64     `cbor:"2,keyasint" json:"time"`
	Results gm.Digest `cbor:"3,keyasint" json:"resultsDigest"`
	Events  gm.Digest `cbor:"4,keyasint" json:"eventsDigest"`
}
