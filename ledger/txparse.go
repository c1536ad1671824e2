package ledger

import (
	"math"
	"unicode/utf8"

	"hallmark/gm"
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
	p := cborParser{b: data}
	fields, ok := p.mapHead(2, 3)
	if !ok || !p.key(1) {
		return 0, false
	}
	var t Transaction
	if !p.txBody(&t.Body) {
		return 0, false
	}
	bodyEnd := p.i
	if !p.key(2) {
		return 0, false
	}
	n, ok := p.arrayHead(1, MaxSigners)
	if !ok {
		return 0, false
	}
	t.Signatures = make([]gm.Signature, n)
	for i := range t.Signatures {
		if !p.fixed(t.Signatures[i][:]) {
			return 0, false
		}
	}
	if fields == 3 {
		if !p.key(3) {
			return 0, false
		}
		b, ok := p.byteString()
		if !ok || len(b) == 0 {
			return 0, false
		}
		t.Payload = append([]byte(nil), b...)
	}
	if p.i != len(data) {
		return 0, false
	}
	again, end := appendTxBounds(make([]byte, 0, len(data)), &t)
	if end != bodyEnd || string(again) != string(data) {
		return 0, false
	}
	*tx = t
	return bodyEnd, true
}

func (p *cborParser) txBody(b *TxBody) bool {
	fields, ok := p.mapHead(7, 8)
	if !ok {
		return false
	}
	var v uint64
	if !p.key(1) {
		return false
	}
	if v, ok = p.uint(math.MaxUint16); !ok {
		return false
	}
	b.Version = uint16(v)
	if !p.key(2) {
		return false
	}
	if b.ChainID, ok = p.text(); !ok {
		return false
	}
	if !p.key(3) {
		return false
	}
	if v, ok = p.uint(math.MaxUint16); !ok {
		return false
	}
	b.Type = TxType(v)
	if !p.key(4) {
		return false
	}
	if b.Timestamp, ok = p.int64(); !ok {
		return false
	}
	if !p.key(5) {
		return false
	}
	if b.Nonce, ok = p.uint(math.MaxUint64); !ok {
		return false
	}
	if !p.key(6) {
		return false
	}
	n, ok := p.arrayHead(1, MaxSigners)
	if !ok {
		return false
	}
	b.Signers = make([]PublicKeyBytes, n)
	for i := range b.Signers {
		if !p.fixed(b.Signers[i][:]) {
			return false
		}
	}
	if !p.key(7) || !p.entity(&b.Entity) {
		return false
	}
	if fields == 8 {
		var d gm.Digest
		if !p.key(8) || !p.fixed(d[:]) {
			return false
		}
		b.PayloadDigest = &d
	}
	return true
}

func (p *cborParser) entity(e *Entity) bool {
	fields, ok := p.mapHead(1, 4)
	if !ok || !p.key(1) || !p.fixed(e.Sender[:]) {
		return false
	}
	// The optional fields follow in key order; a key is only this map's
	// while fields remain (the next byte may be the enclosing map's key).
	got := uint64(1)
	if got < fields && p.key(2) {
		var a Address
		if !p.fixed(a[:]) {
			return false
		}
		e.Recipient = &a
		got++
	}
	if got < fields && p.key(3) {
		b, ok := p.byteString()
		if !ok || len(b) == 0 {
			return false
		}
		e.Data = append([]byte(nil), b...)
		got++
	}
	if got < fields && p.key(4) {
		s, ok := p.text()
		if !ok || s == "" {
			return false
		}
		e.Memo = s
		got++
	}
	return got == fields
}

// cborParser reads CBOR items from b at i. Its methods report false for
// anything but the one form they expect; the caller then gives up.
type cborParser struct {
	b []byte
	i int
}

// head reads an item's head: major type (in the top three bits) and
// argument. Indefinite lengths and reserved forms are refused.
func (p *cborParser) head() (major byte, arg uint64, ok bool) {
	if p.i >= len(p.b) {
		return 0, 0, false
	}
	ib := p.b[p.i]
	major, ai := ib&0xe0, ib&0x1f
	p.i++
	if ai < 24 {
		return major, uint64(ai), true
	}
	size := 0
	switch ai {
	case 24:
		size = 1
	case 25:
		size = 2
	case 26:
		size = 4
	case 27:
		size = 8
	default:
		return 0, 0, false
	}
	if len(p.b)-p.i < size {
		return 0, 0, false
	}
	for _, c := range p.b[p.i : p.i+size] {
		arg = arg<<8 | uint64(c)
	}
	p.i += size
	return major, arg, true
}

// key consumes the one-byte map key k if it comes next.
func (p *cborParser) key(k byte) bool {
	if p.i < len(p.b) && p.b[p.i] == k {
		p.i++
		return true
	}
	return false
}

func (p *cborParser) mapHead(lo, hi uint64) (uint64, bool) {
	m, n, ok := p.head()
	return n, ok && m == cborMap && n >= lo && n <= hi
}

func (p *cborParser) arrayHead(lo, hi uint64) (uint64, bool) {
	m, n, ok := p.head()
	return n, ok && m == cborArray && n >= lo && n <= hi
}

func (p *cborParser) uint(max uint64) (uint64, bool) {
	m, n, ok := p.head()
	return n, ok && m == cborUint && n <= max
}

func (p *cborParser) int64() (int64, bool) {
	m, n, ok := p.head()
	if !ok || n > math.MaxInt64 {
		return 0, false
	}
	switch m {
	case cborUint:
		return int64(n), true
	case cborNegInt:
		return -1 - int64(n), true
	}
	return 0, false
}

// raw reads a definite-length string of major type major.
func (p *cborParser) raw(major byte) ([]byte, bool) {
	m, n, ok := p.head()
	if !ok || m != major || n > uint64(len(p.b)-p.i) {
		return nil, false
	}
	s := p.b[p.i : p.i+int(n)]
	p.i += int(n)
	return s, true
}

func (p *cborParser) byteString() ([]byte, bool) { return p.raw(cborBytes) }

func (p *cborParser) text() (string, bool) {
	s, ok := p.raw(cborText)
	if !ok || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// fixed reads a byte string of exactly len(dst) bytes into dst.
func (p *cborParser) fixed(dst []byte) bool {
	s, ok := p.raw(cborBytes)
	if !ok || len(s) != len(dst) {
		return false
	}
	copy(dst, s)
	return true
}
