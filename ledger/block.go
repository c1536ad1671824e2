package ledger

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger/internal/canon"
)

// BlockID is a block id (02_002): SM3 of the canonical header.
type BlockID = gm.Digest

// Header is the hashed part of a block. Besides the spec's fields it
// carries what the consensus protocol needs to order blocks (epoch, round,
// proposer) and the roots that commit to the body and its erasure-coded
// shards, so that the id alone pins everything.
type Header struct {
	Version  uint16  `cbor:"1,keyasint" json:"blockVersion"` // 02_003
	ChainID  string  `cbor:"2,keyasint" json:"chainId"`
	Height   uint64  `cbor:"3,keyasint" json:"blockHeight"`       // 02_001, genesis is 0
	PrevHash BlockID `cbor:"4,keyasint" json:"previousBlockHash"` // 02_004, zero for genesis
	// Merkle roots (02_005).
	TxRoot    gm.Digest `cbor:"5,keyasint" json:"transactionsRoot"` // over transaction ids, in order
	StateRoot gm.Digest `cbor:"6,keyasint" json:"stateRoot"`        // world state after this block
	ShardRoot gm.Digest `cbor:"7,keyasint" json:"shardRoot"`        // over the body's erasure-coded shards
	Timestamp int64     `cbor:"8,keyasint" json:"blockTimestamp"`   // 02_006, ms since 1970 UTC
	Epoch     uint64    `cbor:"9,keyasint" json:"epoch"`
	Round     uint64    `cbor:"10,keyasint" json:"round"`
	// Proposer is the key id of the validator that proposed the block.
	Proposer gm.KeyID `cbor:"11,keyasint" json:"proposer"`
	TxCount  uint32   `cbor:"12,keyasint" json:"transactionCount"`
	// BodySize is the length of the encoded body, needed to strip the
	// padding after the shards are decoded.
	BodySize uint64 `cbor:"13,keyasint" json:"bodySize"`
}

// ID returns the block id.
func (h *Header) ID() BlockID { return gm.SM3(mustMarshal(h)) }

// Validate checks the header's own fields.
func (h *Header) Validate() error {
	if h.Version != HeaderVersion {
		return fmt.Errorf("%w: block version %d", ErrUnknownVersion, h.Version)
	}
	if len(h.ChainID) == 0 || len(h.ChainID) > MaxChainIDLen || !utf8.ValidString(h.ChainID) {
		return fmt.Errorf("%w: chain id must be UTF-8 of 1 to %d bytes", ErrTooLarge, MaxChainIDLen)
	}
	if h.TxCount > MaxBlockTxs {
		return fmt.Errorf("%w: %d transactions exceed %d", ErrTooLarge, h.TxCount, MaxBlockTxs)
	}
	if h.BodySize > MaxBlockBodyBytes {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, h.BodySize, MaxBlockBodyBytes)
	}
	if h.Height == 0 && !h.PrevHash.IsZero() {
		return fmt.Errorf("%w: genesis block has a previous hash", ErrMalformed)
	}
	if h.Height > 0 && h.PrevHash.IsZero() {
		return fmt.Errorf("%w: block %d has no previous hash", ErrMalformed, h.Height)
	}
	return nil
}

// EncodeHeader returns the canonical encoding.
func EncodeHeader(h *Header) ([]byte, error) { return Marshal(h) }

// DecodeHeader strictly decodes and validates a header.
func DecodeHeader(b []byte) (*Header, error) {
	var h Header
	if err := Unmarshal(b, &h); err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// Block is a header and its transaction list (02_007).
type Block struct {
	Header Header        `cbor:"1,keyasint" json:"header"`
	Txs    []Transaction `cbor:"2,keyasint" json:"transactionList"`
}

// ID returns the block id.
func (b *Block) ID() BlockID { return b.Header.ID() }

// body is the stored form of the transaction list: transactions without
// their payloads.
type body struct {
	Txs []Transaction `cbor:"1,keyasint"`
}

// EncodeBody returns the canonical encoding of the transaction list with
// payloads removed: the bytes that are erasure-coded and stored.
func EncodeBody(txs []Transaction) ([]byte, error) {
	size := 16
	for i := range txs {
		size += txSize(&txs[i], false)
	}
	// body{Txs: stripped} as the generic encoder writes it: a map of one
	// entry, key 1, holding the list.
	enc := canon.AppendHead(append(canon.AppendHead(make([]byte, 0, size), canon.Map, 1), 1), canon.Array, uint64(len(txs)))
	for i := range txs {
		enc = appendTx(enc, &txs[i], false)
	}
	return enc, nil
}

// DecodeBody strictly decodes a stored body and validates each transaction.
func DecodeBody(b []byte) ([]Transaction, error) {
	if len(b) > MaxBlockBodyBytes {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, len(b), MaxBlockBodyBytes)
	}
	var bd body
	if err := Unmarshal(b, &bd); err != nil {
		return nil, err
	}
	known := parsedKeys{}
	for i := range bd.Txs {
		bd.Txs[i].rememberWith(known)
		if bd.Txs[i].Payload != nil {
			return nil, fmt.Errorf("%w: stored body carries a payload in transaction %d", ErrMalformed, i)
		}
		if err := bd.Txs[i].Validate(); err != nil {
			return nil, fmt.Errorf("transaction %d: %w", i, err)
		}
	}
	return bd.Txs, nil
}

// TxRoot returns the Merkle root over the transactions' ids, in order.
func TxRoot(txs []Transaction) gm.Digest {
	return MerkleRootOfHashes(txLeafHashes(txs))
}

func txLeafHashes(txs []Transaction) []gm.Digest {
	hashes := make([]gm.Digest, len(txs))
	for i := range txs {
		id := txs[i].ID()
		hashes[i] = MerkleLeafHash(id[:])
	}
	return hashes
}

// ProveTx returns the inclusion proof of the transaction at index; it
// verifies against Header.TxRoot with the transaction's id as leaf data.
func (b *Block) ProveTx(index int) (MerkleProof, error) {
	return MerkleProveHashes(txLeafHashes(b.Txs), index)
}

// ErrBodyMismatch is returned when a body does not match its header.
var ErrBodyMismatch = errors.New("ledger: body does not match header")

// CheckBody checks that the transaction list matches the header's count,
// transaction root and body size, and that the transactions are valid and
// distinct. It does not verify signatures or the shard and state roots
// (those need the validator set and the state).
func (b *Block) CheckBody() error {
	_, err := b.CheckBodyEncoding()
	return err
}

// CheckBodyEncoding is CheckBody that also returns the body's encoding
// (EncodeBody of the transactions), which it computes anyway, for callers
// that need it next (shards, storage).
func (b *Block) CheckBodyEncoding() ([]byte, error) {
	if len(b.Txs) != int(b.Header.TxCount) {
		return nil, fmt.Errorf("%w: %d transactions, header says %d", ErrBodyMismatch, len(b.Txs), b.Header.TxCount)
	}
	seen := make(map[TxID]struct{}, len(b.Txs))
	for i := range b.Txs {
		if err := b.Txs[i].Validate(); err != nil {
			return nil, fmt.Errorf("transaction %d: %w", i, err)
		}
		if b.Txs[i].Body.ChainID != b.Header.ChainID {
			return nil, fmt.Errorf("%w: transaction %d is for chain %q", ErrMalformed, i, b.Txs[i].Body.ChainID)
		}
		id := b.Txs[i].ID()
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("%w: transaction %s appears twice", ErrMalformed, id)
		}
		seen[id] = struct{}{}
	}
	if root := TxRoot(b.Txs); root != b.Header.TxRoot {
		return nil, fmt.Errorf("%w: transaction root %s, header says %s", ErrBodyMismatch, root, b.Header.TxRoot)
	}
	enc, err := EncodeBody(b.Txs)
	if err != nil {
		return nil, err
	}
	if uint64(len(enc)) != b.Header.BodySize {
		return nil, fmt.Errorf("%w: body is %d bytes, header says %d", ErrBodyMismatch, len(enc), b.Header.BodySize)
	}
	return enc, nil
}

// Seal fills the header's TxCount, TxRoot and BodySize from the
// transactions and returns the encoded body (the caller computes the shard
// root over it and the state root by executing the block).
func (b *Block) Seal() ([]byte, error) {
	if len(b.Txs) > MaxBlockTxs {
		return nil, fmt.Errorf("%w: %d transactions exceed %d", ErrTooLarge, len(b.Txs), MaxBlockTxs)
	}
	enc, err := EncodeBody(b.Txs)
	if err != nil {
		return nil, err
	}
	if len(enc) > MaxBlockBodyBytes {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, len(enc), MaxBlockBodyBytes)
	}
	b.Header.TxCount = uint32(len(b.Txs))
	b.Header.TxRoot = TxRoot(b.Txs)
	b.Header.BodySize = uint64(len(enc))
	return enc, nil
}

// EncodeBlock returns the canonical encoding of a whole block, payloads
// included: the form a proposal carries between validators.
func EncodeBlock(b *Block) ([]byte, error) { return Marshal(b) }

// DecodeBlock strictly decodes a block and checks its header and body.
func DecodeBlock(data []byte) (*Block, error) {
	if len(data) > MaxBlockBodyBytes+MaxBlockTxs*MaxPayloadBytes/64 {
		return nil, fmt.Errorf("%w: block of %d bytes", ErrTooLarge, len(data))
	}
	var b Block
	if err := Unmarshal(data, &b); err != nil {
		return nil, err
	}
	RememberIDs(b.Txs)
	if err := b.Header.Validate(); err != nil {
		return nil, err
	}
	if err := b.CheckBody(); err != nil {
		return nil, err
	}
	return &b, nil
}
