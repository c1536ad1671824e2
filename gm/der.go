package gm

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// parseDERIntegers reads SEQUENCE { INTEGER, INTEGER } with nothing after it.
func parseDERIntegers(der []byte) (*big.Int, *big.Int, error) {
	var inner cryptobyte.String
	input := cryptobyte.String(der)
	r, s := new(big.Int), new(big.Int)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return nil, nil, fmt.Errorf("%w: malformed ASN.1 signature", ErrSignature)
	}
	return r, s, nil
}

// curveOrder is n, the order of the SM2 base point, as 32 bytes big-endian
// (GB/T 32918.5).
var curveOrder = [coordinateSize]byte{
	0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	0x72, 0x03, 0xDF, 0x6B, 0x21, 0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x23,
}

// scalarInRange reports whether the 32-byte big-endian x satisfies
// 1 <= x <= n-1.
func scalarInRange(x []byte) bool {
	zero := true
	for _, c := range x {
		if c != 0 {
			zero = false
			break
		}
	}
	return !zero && bytes.Compare(x, curveOrder[:]) < 0
}

// appendDERIntegers appends SEQUENCE { r INTEGER, s INTEGER } for two
// non-zero 32-byte big-endian integers: the encoding marshalDERIntegers
// gives, without big.Int (a verification converts every signature).
func appendDERIntegers(out, r, s []byte) []byte {
	r, s = bytes.TrimLeft(r, "\x00"), bytes.TrimLeft(s, "\x00")
	size := func(v []byte) int { return 2 + len(v) + int(v[0]>>7) }
	out = append(out, 0x30, byte(size(r)+size(s))) // at most 70: short form
	for _, v := range [][]byte{r, s} {
		out = append(out, 0x02, byte(len(v)+int(v[0]>>7)))
		if v[0]&0x80 != 0 {
			out = append(out, 0) // keep the integer positive
		}
		out = append(out, v...)
	}
	return out
}

// checkSingleDER reports an error unless der is exactly one DER SEQUENCE
// with nothing after it. The x509 parsers for PKCS#8 ignore trailing bytes;
// gm does not, so that what parses is exactly what re-encodes.
func checkSingleDER(der []byte) error {
	var inner cryptobyte.String
	input := cryptobyte.String(der)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) {
		return errors.New("not a DER SEQUENCE")
	}
	if !input.Empty() {
		return fmt.Errorf("%d bytes after the SEQUENCE", len(input))
	}
	return nil
}
