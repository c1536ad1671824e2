package ledger

import (
	"hallmark/gm"
	"hallmark/ledger/internal/canon"
)

// A transaction is encoded several times on every node (its id, the strict
// decoder's re-encoding, block bodies, proposals, kept blocks), and the
// generic CBOR encoder walks [32]byte and [64]byte fields one reflected
// byte at a time. The functions here write the same canonical bytes
// directly: deterministic CBOR (RFC 8949 §4.2.1) with the small integer
// keys in ascending order, shortest-form heads, omitempty fields left out
// when empty and nil lists written as empty ones, exactly as the codec's
// options make the generic encoder do. txcodec_test.go checks them
// against the generic encoder on random and fuzzed values.

// appendTxBody appends the canonical encoding of b.
func appendTxBody(dst []byte, b *TxBody) []byte {
	fields := uint64(7)
	if b.PayloadDigest != nil {
		fields++
	}
	dst = canon.AppendHead(dst, canon.Map, fields)
	dst = canon.AppendHead(append(dst, 1), canon.Uint, uint64(b.Version))
	dst = canon.AppendText(append(dst, 2), b.ChainID)
	dst = canon.AppendHead(append(dst, 3), canon.Uint, uint64(b.Type))
	dst = canon.AppendInt(append(dst, 4), b.Timestamp)
	dst = canon.AppendHead(append(dst, 5), canon.Uint, b.Nonce)
	dst = canon.AppendHead(append(dst, 6), canon.Array, uint64(len(b.Signers)))
	for i := range b.Signers {
		dst = canon.AppendBytes(dst, b.Signers[i][:])
	}
	dst = appendEntity(append(dst, 7), &b.Entity)
	if b.PayloadDigest != nil {
		dst = canon.AppendBytes(append(dst, 8), b.PayloadDigest[:])
	}
	return dst
}

func appendEntity(dst []byte, e *Entity) []byte {
	fields := uint64(1)
	if e.Recipient != nil {
		fields++
	}
	if len(e.Data) > 0 {
		fields++
	}
	if e.Memo != "" {
		fields++
	}
	dst = canon.AppendHead(dst, canon.Map, fields)
	dst = canon.AppendBytes(append(dst, 1), e.Sender[:])
	if e.Recipient != nil {
		dst = canon.AppendBytes(append(dst, 2), e.Recipient[:])
	}
	if len(e.Data) > 0 {
		dst = canon.AppendBytes(append(dst, 3), e.Data)
	}
	if e.Memo != "" {
		dst = canon.AppendText(append(dst, 4), e.Memo)
	}
	return dst
}

// appendTx appends the canonical encoding of tx, with its payload when
// withPayload is set (a block body leaves payloads out).
func appendTx(dst []byte, tx *Transaction, withPayload bool) []byte {
	dst, _ = appendTxWith(dst, tx, withPayload)
	return dst
}

// txBodyStart is where the body's encoding starts in a transaction's: after
// the map head (at most three entries) and key 1.
const txBodyStart = 2

// appendTxBounds appends the canonical encoding of tx, payload included,
// to an empty dst and returns it with the end of the body's encoding,
// which starts at txBodyStart.
func appendTxBounds(dst []byte, tx *Transaction) ([]byte, int) {
	return appendTxWith(dst, tx, true)
}

func appendTxWith(dst []byte, tx *Transaction, withPayload bool) ([]byte, int) {
	payload := withPayload && len(tx.Payload) > 0
	fields := uint64(2)
	if payload {
		fields++
	}
	dst = canon.AppendHead(dst, canon.Map, fields)
	dst = appendTxBody(append(dst, 1), &tx.Body)
	bodyEnd := len(dst)
	dst = canon.AppendHead(append(dst, 2), canon.Array, uint64(len(tx.Signatures)))
	for i := range tx.Signatures {
		dst = canon.AppendBytes(dst, tx.Signatures[i][:])
	}
	if payload {
		dst = canon.AppendBytes(append(dst, 3), tx.Payload)
	}
	return dst, bodyEnd
}

// txBodySize bounds the encoded size of b, for sizing buffers.
func txBodySize(b *TxBody) int {
	return 200 + len(b.ChainID) + len(b.Signers)*(gm.PublicKeySize+2) + len(b.Entity.Data) + len(b.Entity.Memo)
}

// txSize bounds the encoded size of tx.
func txSize(tx *Transaction, withPayload bool) int {
	n := 24 + txBodySize(&tx.Body) + len(tx.Signatures)*(gm.SignatureSize+2)
	if withPayload {
		n += len(tx.Payload)
	}
	return n
}
