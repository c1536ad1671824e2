package ledger

import (
	"math"

	"hallmark/gm"
	"hallmark/ledger/internal/canon"
)

// txFields is Transaction without its methods, for the generic decoder.
type txFields Transaction

// UnmarshalCBOR implements cbor.Unmarshaler, so that the transactions
// inside a block, a body or a consensus message are read by parseTx too.
// Input parseTx does not take goes to the generic decoder, exactly as
// before; the strict decoder around (Unmarshal) still compares its
// re-encoding of the whole with the input.
func (tx *Transaction) UnmarshalCBOR(data []byte) error {
	if _, ok := parseTx(data, tx); ok {
		return nil
	}
	return canonical.dec.Unmarshal(data, (*txFields)(tx))
}

// parseTx reads the canonical encoding of a transaction without
// reflection. It accepts only input laid out exactly as appendTx writes
// it — every field in key order, fixed-size byte strings of their exact
// size, valid UTF-8 text, integers that fit their fields, one to
// MaxSigners signers and signatures, empty optional fields left out — and
// checks at the end that re-encoding gives the input back, so what it
// accepts is the canonical encoding of the value it returns: the generic
// strict decoder accepts the same bytes and returns the same value
// (txparse_test.go checks both on random and fuzzed input). Anything else
// it leaves to the generic decoder (false), which gives the answer and the
// error it always gave. On success it also returns where the body's
// encoding ends (it starts at txBodyStart).
func parseTx(data []byte, tx *Transaction) (int, bool) {
	p := canon.Parser{B: data}
	fields, ok := p.MapHead(2, 3)
	if !ok || !p.Key(1) {
		return 0, false
	}
	var t Transaction
	if !parseTxBody(&p, &t.Body) {
		return 0, false
	}
	bodyEnd := p.I
	if !p.Key(2) {
		return 0, false
	}
	n, ok := p.ArrayHead(1, MaxSigners)
	if !ok {
		return 0, false
	}
	t.Signatures = make([]gm.Signature, n)
	for i := range t.Signatures {
		if !p.Fixed(t.Signatures[i][:]) {
			return 0, false
		}
	}
	if fields == 3 {
		if !p.Key(3) {
			return 0, false
		}
		b, ok := p.Bytes()
		if !ok || len(b) == 0 {
			return 0, false
		}
		t.Payload = append([]byte(nil), b...)
	}
	if !p.Done() {
		return 0, false
	}
	again, end := appendTxBounds(make([]byte, 0, len(data)), &t)
	if end != bodyEnd || string(again) != string(data) {
		return 0, false
	}
	*tx = t
	return bodyEnd, true
}

func parseTxBody(p *canon.Parser, b *TxBody) bool {
	fields, ok := p.MapHead(7, 8)
	if !ok {
		return false
	}
	var v uint64
	if !p.Key(1) {
		return false
	}
	if v, ok = p.Uint(math.MaxUint16); !ok {
		return false
	}
	b.Version = uint16(v)
	if !p.Key(2) {
		return false
	}
	if b.ChainID, ok = p.Text(); !ok {
		return false
	}
	if !p.Key(3) {
		return false
	}
	if v, ok = p.Uint(math.MaxUint16); !ok {
		return false
	}
	b.Type = TxType(v)
	if !p.Key(4) {
		return false
	}
	if b.Timestamp, ok = p.Int64(); !ok {
		return false
	}
	if !p.Key(5) {
		return false
	}
	if b.Nonce, ok = p.Uint(math.MaxUint64); !ok {
		return false
	}
	if !p.Key(6) {
		return false
	}
	n, ok := p.ArrayHead(1, MaxSigners)
	if !ok {
		return false
	}
	b.Signers = make([]PublicKeyBytes, n)
	for i := range b.Signers {
		if !p.Fixed(b.Signers[i][:]) {
			return false
		}
	}
	if !p.Key(7) || !parseEntity(p, &b.Entity) {
		return false
	}
	if fields == 8 {
		var d gm.Digest
		if !p.Key(8) || !p.Fixed(d[:]) {
			return false
		}
		b.PayloadDigest = &d
	}
	return true
}

func parseEntity(p *canon.Parser, e *Entity) bool {
	fields, ok := p.MapHead(1, 4)
	if !ok || !p.Key(1) || !p.Fixed(e.Sender[:]) {
		return false
	}
	// The optional fields follow in key order; a key is only this map's
	// while fields remain (the next byte may be the enclosing map's key).
	got := uint64(1)
	if got < fields && p.Key(2) {
		var a Address
		if !p.Fixed(a[:]) {
			return false
		}
		e.Recipient = &a
		got++
	}
	if got < fields && p.Key(3) {
		b, ok := p.Bytes()
		if !ok || len(b) == 0 {
			return false
		}
		e.Data = append([]byte(nil), b...)
		got++
	}
	if got < fields && p.Key(4) {
		s, ok := p.Text()
		if !ok || s == "" {
			return false
		}
		e.Memo = s
		got++
	}
	return got == fields
}
