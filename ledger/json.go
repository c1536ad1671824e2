package ledger

import (
	"encoding/json"
	"fmt"

	"hallmark/gm"
)

// The HTTP API renders ledger objects as JSON with the English names of the
// specification's fields. Digests, keys and signatures are lower-case hex;
// opaque byte fields (entity data, payloads, certificates) are base64.
// Computed identifiers (transaction id, block id) are included on output
// and, when present on input, must match what the content hashes to.

type txJSON struct {
	ID            *gm.Digest       `json:"transactionId,omitempty"` // 03_001
	Version       uint16           `json:"version"`
	ChainID       string           `json:"chainId"`
	Type          TxType           `json:"transactionType"` // 03_002
	Timestamp     int64            `json:"timestamp"`       // 03_004
	Nonce         uint64           `json:"nonce"`
	Signers       []PublicKeyBytes `json:"signer"` // 03_003
	Entity        Entity           `json:"entity"` // 04
	PayloadDigest *gm.Digest       `json:"payloadDigest,omitempty"`
	Signatures    []gm.Signature   `json:"signatures"`
	Payload       []byte           `json:"payload,omitempty"`
}

// MarshalJSON renders the transaction with its id.
func (tx Transaction) MarshalJSON() ([]byte, error) {
	id := tx.ID()
	b := tx.Body
	return json.Marshal(txJSON{
		ID: &id, Version: b.Version, ChainID: b.ChainID, Type: b.Type, Timestamp: b.Timestamp,
		Nonce: b.Nonce, Signers: b.Signers, Entity: b.Entity, PayloadDigest: b.PayloadDigest,
		Signatures: tx.Signatures, Payload: tx.Payload,
	})
}

// UnmarshalJSON parses the JSON form. A transactionId, if given, must match.
func (tx *Transaction) UnmarshalJSON(data []byte) error {
	var v txJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("ledger: transaction JSON: %w", err)
	}
	t := Transaction{
		Body: TxBody{
			Version: v.Version, ChainID: v.ChainID, Type: v.Type, Timestamp: v.Timestamp, Nonce: v.Nonce,
			Signers: v.Signers, Entity: v.Entity, PayloadDigest: v.PayloadDigest,
		},
		Signatures: v.Signatures,
		Payload:    v.Payload,
	}
	t.remember()
	if v.ID != nil && *v.ID != t.ID() {
		return fmt.Errorf("%w: transactionId %s does not match the content (%s)", ErrMalformed, *v.ID, t.ID())
	}
	*tx = t
	return nil
}

type merkleRootsJSON struct {
	Transactions gm.Digest `json:"transactions"`
	State        gm.Digest `json:"state"`
	Shards       gm.Digest `json:"shards"`
}

type headerJSON struct {
	ID          *gm.Digest      `json:"blockIdentity,omitempty"` // 02_002
	Version     uint16          `json:"blockVersion"`            // 02_003
	ChainID     string          `json:"chainId"`
	Height      uint64          `json:"blockHeight"`       // 02_001
	PrevHash    gm.Digest       `json:"previousBlockHash"` // 02_004
	MerkleRoots merkleRootsJSON `json:"merkleTreeRoot"`    // 02_005
	Timestamp   int64           `json:"blockTimestamp"`    // 02_006
	Epoch       uint64          `json:"epoch"`
	Round       uint64          `json:"round"`
	Proposer    gm.KeyID        `json:"proposer"`
	TxCount     uint32          `json:"transactionCount"`
	BodySize    uint64          `json:"bodySize"`
}

func (h *Header) toJSON() headerJSON {
	id := h.ID()
	return headerJSON{
		ID: &id, Version: h.Version, ChainID: h.ChainID, Height: h.Height, PrevHash: h.PrevHash,
		MerkleRoots: merkleRootsJSON{Transactions: h.TxRoot, State: h.StateRoot, Shards: h.ShardRoot},
		Timestamp:   h.Timestamp, Epoch: h.Epoch, Round: h.Round, Proposer: h.Proposer,
		TxCount: h.TxCount, BodySize: h.BodySize,
	}
}

func (v *headerJSON) toHeader() (Header, error) {
	h := Header{
		Version: v.Version, ChainID: v.ChainID, Height: v.Height, PrevHash: v.PrevHash,
		TxRoot: v.MerkleRoots.Transactions, StateRoot: v.MerkleRoots.State, ShardRoot: v.MerkleRoots.Shards,
		Timestamp: v.Timestamp, Epoch: v.Epoch, Round: v.Round, Proposer: v.Proposer,
		TxCount: v.TxCount, BodySize: v.BodySize,
	}
	if v.ID != nil && *v.ID != h.ID() {
		return Header{}, fmt.Errorf("%w: blockIdentity %s does not match the header (%s)", ErrMalformed, *v.ID, h.ID())
	}
	return h, nil
}

// MarshalJSON renders the header with its block id.
func (h Header) MarshalJSON() ([]byte, error) { return json.Marshal(h.toJSON()) }

// UnmarshalJSON parses the JSON form. A blockIdentity, if given, must match.
func (h *Header) UnmarshalJSON(data []byte) error {
	var v headerJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("ledger: header JSON: %w", err)
	}
	parsed, err := v.toHeader()
	if err != nil {
		return err
	}
	*h = parsed
	return nil
}

type blockJSON struct {
	headerJSON
	Txs []Transaction `json:"transactionList"` // 02_007
}

// MarshalJSON renders the block as its header's fields plus the
// transaction list.
func (b Block) MarshalJSON() ([]byte, error) {
	txs := b.Txs
	if txs == nil {
		txs = []Transaction{}
	}
	return json.Marshal(blockJSON{headerJSON: b.Header.toJSON(), Txs: txs})
}

// UnmarshalJSON parses the JSON form.
func (b *Block) UnmarshalJSON(data []byte) error {
	var v blockJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("ledger: block JSON: %w", err)
	}
	h, err := v.toHeader()
	if err != nil {
		return err
	}
	*b = Block{Header: h, Txs: v.Txs}
	return nil
}
