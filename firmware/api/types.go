package api

import (
	"encoding/hex"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Status is the node status the API reports (GET /v1/status).
type Status struct {
	ChainID         string                `json:"chainId"`
	Version         string                `json:"softwareVersion"`
	KeyID           gm.KeyID              `json:"peerId"`
	PublicKey       ledger.PublicKeyBytes `json:"peerPublicKey"`
	Custody         string                `json:"custody"`
	Role            string                `json:"role"` // leader, validator or observer
	Epoch           uint64                `json:"epoch"`
	Round           uint64                `json:"round"`
	HighQCRound     uint64                `json:"highQcRound"`
	CommittedHeight uint64                `json:"committedHeight"`
	CommittedBlock  ledger.BlockID        `json:"committedBlockId"`
	Peers           []PeerStatus          `json:"peers"`
	FastPath        string                `json:"fastPath"` // xdp-native, xdp-generic or twin
	Storage         StorageStatus         `json:"storage"`
	Mempool         MempoolStatus         `json:"mempool"`
	Bandwidth       Bandwidth             `json:"bandwidth"`
	// ReceiptKey signs the node's kiosk receipts; ReceiptDelegation is
	// the node identity's certificate for it (canonical CBOR, hex).
	ReceiptKey        ledger.PublicKeyBytes `json:"receiptKey"`
	ReceiptDelegation hexBytes              `json:"receiptDelegation"`
}

// PeerStatus is one validator peer.
type PeerStatus struct {
	KeyID     gm.KeyID `json:"peerId"`
	Address   string   `json:"peerAddress"`
	Connected bool     `json:"connected"`
}

// StorageStatus is the store's tip.
type StorageStatus struct {
	TipHeight uint64         `json:"tipHeight"`
	TipID     ledger.BlockID `json:"tipBlockId"`
	TipTime   int64          `json:"tipTimestamp"`
}

// MempoolStatus is the mempool's depth.
type MempoolStatus struct {
	Transactions int   `json:"transactions"`
	Bytes        int64 `json:"bytes"`
}

// Bandwidth counts bytes exchanged with peers since start.
type Bandwidth struct {
	InBytes  uint64 `json:"inBytes"`
	OutBytes uint64 `json:"outBytes"`
}

// hexBytes renders bytes as lower-case hex in JSON, and reads them back.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(h))
	for i, b := range h {
		out[2*i], out[2*i+1] = digits[b>>4], digits[b&15]
	}
	return out, nil
}

func (h *hexBytes) UnmarshalText(text []byte) error {
	b, err := hex.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("api: %q is not hex: %w", text, err)
	}
	*h = b
	return nil
}
