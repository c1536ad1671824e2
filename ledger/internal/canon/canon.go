// Package canon writes and reads the deterministic CBOR (RFC 8949 §4.2.1)
// that package ledger's codec produces, without reflection, for the few
// structures every node encodes or decodes per transaction. Callers build
// an exact encoder or a narrow reader for one type from these pieces and
// prove, by tests against the generic codec, that they agree with it.
package canon

import (
	"math"
	"unicode/utf8"
)

// Major types, shifted into the head's top three bits.
const (
	Uint   = 0 << 5
	NegInt = 1 << 5
	Bytes  = 2 << 5
	Text   = 3 << 5
	Array  = 4 << 5
	Map    = 5 << 5
)

// True is the encoding of the boolean true.
const True = 0xf5

// AppendHead appends a head of major type major with argument n in its
// shortest form.
func AppendHead(dst []byte, major byte, n uint64) []byte {
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

// AppendUint appends an unsigned integer.
func AppendUint(dst []byte, v uint64) []byte { return AppendHead(dst, Uint, v) }

// AppendInt appends a signed integer.
func AppendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return AppendHead(dst, Uint, uint64(v))
	}
	return AppendHead(dst, NegInt, uint64(-(v + 1)))
}

// AppendBytes appends a byte string.
func AppendBytes(dst, b []byte) []byte {
	return append(AppendHead(dst, Bytes, uint64(len(b))), b...)
}

// AppendText appends a text string.
func AppendText(dst []byte, s string) []byte {
	return append(AppendHead(dst, Text, uint64(len(s))), s...)
}

// Parser reads items from B at I. Its methods report false for anything
// but the one form they expect; the caller then gives up (and leaves the
// input to the generic decoder).
type Parser struct {
	B []byte
	I int
}

// Head reads an item's head: major type (in the top three bits) and
// argument. Indefinite lengths and reserved forms are refused.
func (p *Parser) Head() (major byte, arg uint64, ok bool) {
	if p.I >= len(p.B) {
		return 0, 0, false
	}
	ib := p.B[p.I]
	major, ai := ib&0xe0, ib&0x1f
	p.I++
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
	if len(p.B)-p.I < size {
		return 0, 0, false
	}
	for _, c := range p.B[p.I : p.I+size] {
		arg = arg<<8 | uint64(c)
	}
	p.I += size
	return major, arg, true
}

// Key consumes the one-byte map key k (an integer below 24) if it comes
// next.
func (p *Parser) Key(k byte) bool {
	if p.I < len(p.B) && p.B[p.I] == k {
		p.I++
		return true
	}
	return false
}

// MapHead reads a map head with lo to hi entries.
func (p *Parser) MapHead(lo, hi uint64) (uint64, bool) {
	m, n, ok := p.Head()
	return n, ok && m == Map && n >= lo && n <= hi
}

// ArrayHead reads an array head with lo to hi elements.
func (p *Parser) ArrayHead(lo, hi uint64) (uint64, bool) {
	m, n, ok := p.Head()
	return n, ok && m == Array && n >= lo && n <= hi
}

// Uint reads an unsigned integer of at most max.
func (p *Parser) Uint(max uint64) (uint64, bool) {
	m, n, ok := p.Head()
	return n, ok && m == Uint && n <= max
}

// Int64 reads an integer that fits an int64.
func (p *Parser) Int64() (int64, bool) {
	m, n, ok := p.Head()
	if !ok || n > math.MaxInt64 {
		return 0, false
	}
	switch m {
	case Uint:
		return int64(n), true
	case NegInt:
		return -1 - int64(n), true
	}
	return 0, false
}

// raw reads a definite-length string of major type major, sharing B.
func (p *Parser) raw(major byte) ([]byte, bool) {
	m, n, ok := p.Head()
	if !ok || m != major || n > uint64(len(p.B)-p.I) {
		return nil, false
	}
	s := p.B[p.I : p.I+int(n)]
	p.I += int(n)
	return s, true
}

// Bytes reads a byte string; the result shares B.
func (p *Parser) Bytes() ([]byte, bool) { return p.raw(Bytes) }

// Text reads a text string of valid UTF-8.
func (p *Parser) Text() (string, bool) {
	s, ok := p.raw(Text)
	if !ok || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// Fixed reads a byte string of exactly len(dst) bytes into dst.
func (p *Parser) Fixed(dst []byte) bool {
	s, ok := p.raw(Bytes)
	if !ok || len(s) != len(dst) {
		return false
	}
	copy(dst, s)
	return true
}

// Done reports whether all of B was read.
func (p *Parser) Done() bool { return p.I == len(p.B) }
