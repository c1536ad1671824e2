package ledger

import "hallmark/gm"

// A transaction is encoded several times on every node (its id, the strict
// decoder's re-encoding, block bodies, proposals, kept blocks), and the
// generic CBOR encoder walks [32]byte and [64]byte fields one reflected
// byte at a time. The functions here write the same canonical bytes
// directly: deterministic CBOR (RFC 8949 §4.2.1) with the small integer
// keys in ascending order, shortest-form heads, omitempty fields left out
// when empty and nil lists written as empty ones, exactly as the codec's
// options make the generic encoder do. txcodec_test.go checks them
// against the generic encoder on random and fuzzed values.

// CBOR major types, shifted into the head's top three bits.
const (
	cborUint   = 0 << 5
	cborNegInt = 1 << 5
	cborBytes  = 2 << 5
	cborText   = 3 << 5
	cborArray  = 4 << 5
	cborMap    = 5 << 5
)

// appendHead appends a head of major type major with argument n in its
// shortest form.
func appendHead(dst []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= 0xff:
		return append(dst, major|24, byte(n))
	case n <= 0xffff:
		return append(dst, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(dst, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, major|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(dst, cborUint, uint64(v))
	}
	return appendHead(dst, cborNegInt, uint64(-(v + 1)))
}

func appendByteString(dst, b []byte) []byte {
	return append(appendHead(dst, cborBytes, uint64(len(b))), b...)
}

func appendTextString(dst []byte, s string) []byte {
	return append(appendHead(dst, cborText, uint64(len(s))), s...)
}

// appendTxBody appends the canonical encoding of b.
func appendTxBody(dst []byte, b *TxBody) []byte {
	fields := uint64(7)
	if b.PayloadDigest != nil {
		fields++
	}
	dst = appendHead(dst, cborMap, fields)
	dst = appendHead(append(dst, 1), cborUint, uint64(b.Version))
	dst = appendTextString(append(dst, 2), b.ChainID)
	dst = appendHead(append(dst, 3), cborUint, uint64(b.Type))
	dst = appendInt(append(dst, 4), b.Timestamp)
	dst = appendHead(append(dst, 5), cborUint, b.Nonce)
	dst = appendHead(append(dst, 6), cborArray, uint64(len(b.Signers)))
	for i := range b.Signers {
		dst = appendByteString(dst, b.Signers[i][:])
	}
	dst = appendEntity(append(dst, 7), &b.Entity)
	if b.PayloadDigest != nil {
		dst = appendByteString(append(dst, 8), b.PayloadDigest[:])
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
	dst = appendHead(dst, cborMap, fields)
	dst = appendByteString(append(dst, 1), e.Sender[:])
	if e.Recipient != nil {
		dst = appendByteString(append(dst, 2), e.Recipient[:])
	}
	if len(e.Data) > 0 {
		dst = appendByteString(append(dst, 3), e.Data)
	}
	if e.Memo != "" {
		dst = appendTextString(append(dst, 4), e.Memo)
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
	dst = appendHead(dst, cborMap, fields)
	dst = appendTxBody(append(dst, 1), &tx.Body)
	bodyEnd := len(dst)
	dst = appendHead(append(dst, 2), cborArray, uint64(len(tx.Signatures)))
	for i := range tx.Signatures {
		dst = appendByteString(dst, tx.Signatures[i][:])
	}
	if payload {
		dst = appendByteString(append(dst, 3), tx.Payload)
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
