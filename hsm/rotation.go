package hsm

import (
	"context"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// A key rotation is stated in the chain's own format: the body of a
// gov.node-rotate-key transaction (txs.NodeRotateKey), a
// txs.NodeKeyStatement signed by the old and the new key over
// "hallmark/node-key-rotation/v1\x00" ‖ canonical CBOR. Rotate produces
// it, and ParseRotation reads it back; the ledger verifies the same bytes
// when administrators put it on chain.

// MaxRotationBytes bounds an encoded rotation statement.
const MaxRotationBytes = 1024

// ErrRotation is wrapped by every rotation-statement failure.
var ErrRotation = errors.New("invalid key rotation statement")

// SignRotation builds the statement handing old's role to next for the
// chain chainID, stamped with timestamp (ms), and has both keys sign it.
func SignRotation(ctx context.Context, chainID, reason string, timestamp int64, old, next gm.Signer) (*txs.NodeRotateKey, error) {
	s := txs.NodeKeyStatement{
		ChainID: chainID, Old: ledger.KeyBytes(old.PublicKey()), New: ledger.KeyBytes(next.PublicKey()),
		Timestamp: timestamp, Reason: reason,
	}
	b, err := txs.SignNodeRotation(ctx, s, old, next)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w: %v", ErrRotation, err)
	}
	return b, nil
}

// EncodeRotation returns the statement's canonical CBOR: the entity data
// of a gov.node-rotate-key transaction.
func EncodeRotation(b *txs.NodeRotateKey) ([]byte, error) { return txs.Encode(b) }

// ParseRotation strictly decodes a statement and verifies both
// signatures.
func ParseRotation(enc []byte) (*txs.NodeRotateKey, error) {
	if len(enc) > MaxRotationBytes {
		return nil, fmt.Errorf("hsm: %w: %d bytes exceeds %d", ErrRotation, len(enc), MaxRotationBytes)
	}
	b, err := txs.Decode(ledger.TxNodeRotateKey, enc)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w: %v", ErrRotation, err)
	}
	return b.(*txs.NodeRotateKey), nil
}
