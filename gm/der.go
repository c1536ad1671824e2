package gm

import (
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

// marshalDERIntegers writes SEQUENCE { r INTEGER, s INTEGER }.
func marshalDERIntegers(r, s *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
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
