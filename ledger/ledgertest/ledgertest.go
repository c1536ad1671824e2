// Package ledgertest builds valid, signed ledger objects for tests in other
// packages. It uses software keys from package gm.
package ledgertest

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

// ChainID is the chain id the helpers use unless told otherwise.
const ChainID = "hallmark-test"

// Key returns a fresh software key, failing the test on error.
func Key(t testing.TB) *gm.PrivateKey {
	t.Helper()
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return k
}

// TxOptions shape a transaction made by [Tx].
type TxOptions struct {
	ChainID   string
	Type      ledger.TxType
	Timestamp int64
	Nonce     uint64
	Data      []byte
	Memo      string
	Payload   []byte
}

// Tx returns a transaction signed by key, sent from key's own address.
func Tx(t testing.TB, key *gm.PrivateKey, o TxOptions) ledger.Transaction {
	t.Helper()
	tx, err := NewTx(key, o)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// NewTx is Tx without a testing.TB, for benchmarks' setup and fuzzers.
func NewTx(key *gm.PrivateKey, o TxOptions) (ledger.Transaction, error) {
	if o.ChainID == "" {
		o.ChainID = ChainID
	}
	if o.Type == 0 {
		o.Type = ledger.TxRecordPut
	}
	if o.Timestamp == 0 {
		o.Timestamp = 1_700_000_000_000
	}
	tx := ledger.Transaction{
		Body: ledger.TxBody{
			Version:   ledger.TxVersion,
			ChainID:   o.ChainID,
			Type:      o.Type,
			Timestamp: o.Timestamp,
			Nonce:     o.Nonce,
			Signers:   []ledger.PublicKeyBytes{ledger.KeyBytes(key.PublicKey())},
			Entity: ledger.Entity{
				Sender: ledger.AddressOf(key.PublicKey()),
				Data:   o.Data,
				Memo:   o.Memo,
			},
		},
		Payload: o.Payload,
	}
	if o.Payload != nil {
		d := gm.SM3(o.Payload)
		tx.Body.PayloadDigest = &d
	}
	if err := tx.Sign(context.Background(), key); err != nil {
		return ledger.Transaction{}, fmt.Errorf("sign: %w", err)
	}
	return tx, nil
}

// Txs returns n distinct transactions from key, each with dataSize bytes
// of entity data.
func Txs(t testing.TB, key *gm.PrivateKey, n, dataSize int) []ledger.Transaction {
	t.Helper()
	out := make([]ledger.Transaction, n)
	for i := range out {
		data := make([]byte, dataSize)
		if dataSize >= 8 {
			binary.BigEndian.PutUint64(data, uint64(i))
		}
		out[i] = Tx(t, key, TxOptions{Nonce: uint64(i), Data: data})
	}
	return out
}

// Block returns a sealed block at height on top of prev holding txs. The
// shard and state roots are left zero: they belong to storage and
// execution.
func Block(t testing.TB, height uint64, prev ledger.BlockID, txs []ledger.Transaction) *ledger.Block {
	t.Helper()
	b := &ledger.Block{
		Header: ledger.Header{
			Version:   ledger.HeaderVersion,
			ChainID:   ChainID,
			Height:    height,
			PrevHash:  prev,
			Timestamp: 1_700_000_000_000 + int64(height)*1000,
			Round:     height,
		},
		Txs: txs,
	}
	if _, err := b.Seal(); err != nil {
		t.Fatalf("seal block: %v", err)
	}
	return b
}
