// Package kiosk defines the kiosk datagram wire format: one signed
// transaction per UDP datagram behind a fixed binary header, and the signed
// receipt datagram a node sends back. docs/PROTOCOL.md describes both byte
// by byte.
//
// The package is pure (no sockets, no clocks): the node's ingress
// (package netstack/ingress), the kernel fast path's Go twin (package
// netstack/xdp) and the kiosk SDK (package client) share it.
package kiosk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Wire constants of the transaction datagram.
const (
	// Magic opens every transaction datagram: "HMKT".
	Magic uint32 = 0x484D4B54
	// Version is the only header version this build speaks.
	Version = 1
	// HeaderSize is the length of the fixed header.
	HeaderSize = 56
	// MaxDatagramSize bounds a whole datagram, header included: 1280 (the
	// IPv6 minimum MTU) less 40 bytes of IPv6 and 8 of UDP header.
	MaxDatagramSize = 1232
	// MaxBodySize bounds the CBOR transaction behind the header.
	MaxBodySize = MaxDatagramSize - HeaderSize
)

// Field offsets in the header. All integers are big-endian.
const (
	offMagic     = 0
	offVersion   = 4
	offFlags     = 5
	offLength    = 6
	offKeyID     = 8
	offTxID      = 16
	offTimestamp = 48
)

// Errors of the header and its agreement with the body. Each maps to a
// receipt reason code ([ReasonOf]).
var (
	ErrHeader            = errors.New("kiosk: malformed datagram header")
	ErrVersion           = errors.New("kiosk: unsupported datagram version")
	ErrLength            = errors.New("kiosk: datagram length does not match its header")
	ErrBody              = errors.New("kiosk: body is not a valid transaction")
	ErrTxIDMismatch      = errors.New("kiosk: header transaction id is not the body's id")
	ErrKeyIDMismatch     = errors.New("kiosk: header key id is not the first signer's")
	ErrTimestampMismatch = errors.New("kiosk: header timestamp is not the transaction's")
	ErrTooLarge          = errors.New("kiosk: transaction does not fit in one datagram")
)

// ShortKeyID is the 8-byte key id the header carries: the first 8 bytes
// of SM3 over the signer's 64-byte public key ([gm.KeyID.Short]).
type ShortKeyID [8]byte

// String returns the id in hex.
func (s ShortKeyID) String() string { return fmt.Sprintf("%x", s[:]) }

// Header is the fixed header of a transaction datagram.
type Header struct {
	Version   uint8
	Flags     uint8 // no flag is defined; must be zero
	Length    uint16
	KeyID     ShortKeyID
	TxID      ledger.TxID
	Timestamp uint64 // milliseconds since 1970 UTC, the transaction's own
}

// ParseHeader reads and checks the fixed header of datagram: magic,
// version, zero flags, a length equal to the datagram's and within
// [HeaderSize+1, MaxDatagramSize]. These are exactly the checks the kernel
// fast path makes before it looks at any map.
func ParseHeader(datagram []byte) (Header, error) {
	var h Header
	if len(datagram) < HeaderSize {
		return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrHeader, len(datagram), HeaderSize)
	}
	if m := binary.BigEndian.Uint32(datagram[offMagic:]); m != Magic {
		return h, fmt.Errorf("%w: magic %#08x", ErrHeader, m)
	}
	h.Version = datagram[offVersion]
	h.Flags = datagram[offFlags]
	h.Length = binary.BigEndian.Uint16(datagram[offLength:])
	copy(h.KeyID[:], datagram[offKeyID:offTxID])
	copy(h.TxID[:], datagram[offTxID:offTimestamp])
	h.Timestamp = binary.BigEndian.Uint64(datagram[offTimestamp:])
	if h.Version != Version {
		return h, fmt.Errorf("%w: version %d", ErrVersion, h.Version)
	}
	if h.Flags != 0 {
		return h, fmt.Errorf("%w: undefined flags %#02x", ErrHeader, h.Flags)
	}
	if int(h.Length) != len(datagram) || len(datagram) <= HeaderSize || len(datagram) > MaxDatagramSize {
		return h, fmt.Errorf("%w: header says %d bytes, datagram has %d (limits %d to %d)",
			ErrLength, h.Length, len(datagram), HeaderSize+1, MaxDatagramSize)
	}
	return h, nil
}

// put writes h into the first HeaderSize bytes of b.
func (h *Header) put(b []byte) {
	binary.BigEndian.PutUint32(b[offMagic:], Magic)
	b[offVersion] = h.Version
	b[offFlags] = h.Flags
	binary.BigEndian.PutUint16(b[offLength:], h.Length)
	copy(b[offKeyID:], h.KeyID[:])
	copy(b[offTxID:], h.TxID[:])
	binary.BigEndian.PutUint64(b[offTimestamp:], h.Timestamp)
}

// HeaderFor returns the header that belongs in front of tx's body of
// bodyLen bytes.
func HeaderFor(tx *ledger.Transaction, bodyLen int) (Header, error) {
	if len(tx.Body.Signers) == 0 {
		return Header{}, fmt.Errorf("%w: no signer", ErrBody)
	}
	if tx.Body.Timestamp <= 0 {
		return Header{}, fmt.Errorf("%w: timestamp %d is not positive", ErrBody, tx.Body.Timestamp)
	}
	n := HeaderSize + bodyLen
	if bodyLen == 0 || n > MaxDatagramSize {
		return Header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, MaxDatagramSize)
	}
	return Header{
		Version:   Version,
		Length:    uint16(n),
		KeyID:     ShortKeyID(tx.Body.Signers[0].ID().Short()),
		TxID:      tx.ID(),
		Timestamp: uint64(tx.Body.Timestamp),
	}, nil
}

// Encode returns the datagram carrying tx: header then the canonical CBOR
// transaction. It fails if the result exceeds [MaxDatagramSize]; larger
// records go over the HTTP API.
func Encode(tx *ledger.Transaction) ([]byte, error) {
	body, err := ledger.EncodeTx(tx)
	if err != nil {
		return nil, fmt.Errorf("kiosk: encoding transaction: %w", err)
	}
	h, err := HeaderFor(tx, len(body))
	if err != nil {
		return nil, err
	}
	out := make([]byte, HeaderSize, int(h.Length))
	h.put(out)
	return append(out, body...), nil
}

// Datagram is a parsed transaction datagram whose header agrees with its
// body. Its signatures are not yet verified.
type Datagram struct {
	Header Header
	Tx     *ledger.Transaction
}

// Decode parses a datagram and checks that its header matches its body:
// the transaction decodes strictly and validates, the header's id is the
// transaction's id, its key id is the first signer's and its timestamp
// the transaction's. The header is returned even when a later check fails,
// so that the caller can answer with a receipt naming the transaction.
func Decode(datagram []byte) (Header, *Datagram, error) {
	h, err := ParseHeader(datagram)
	if err != nil {
		return h, nil, err
	}
	tx, err := ledger.DecodeTx(datagram[HeaderSize:])
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", ErrBody, err)
	}
	if id := tx.ID(); id != h.TxID {
		return h, nil, fmt.Errorf("%w: header %s, body %s", ErrTxIDMismatch, h.TxID, id)
	}
	if k := ShortKeyID(tx.Body.Signers[0].ID().Short()); k != h.KeyID {
		return h, nil, fmt.Errorf("%w: header %s, signer %s", ErrKeyIDMismatch, h.KeyID, k)
	}
	if uint64(tx.Body.Timestamp) != h.Timestamp {
		return h, nil, fmt.Errorf("%w: header %d, body %d", ErrTimestampMismatch, h.Timestamp, tx.Body.Timestamp)
	}
	return h, &Datagram{Header: h, Tx: tx}, nil
}

// SenderKeyID returns the full key id of the transaction's first signer,
// the key whose admission the node checks.
func (d *Datagram) SenderKeyID() gm.KeyID { return d.Tx.Body.Signers[0].ID() }
