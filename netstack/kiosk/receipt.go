package kiosk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Wire constants of the receipt datagram.
const (
	// ReceiptMagic opens every receipt datagram: "HMKR".
	ReceiptMagic uint32 = 0x484D4B52
	// ReceiptVersion is the only receipt version this build speaks.
	ReceiptVersion = 1
	// ReceiptSize is the fixed length of a receipt datagram.
	ReceiptSize = 156
	// receiptSigned is the length of the signed prefix.
	receiptSigned = ReceiptSize - gm.SignatureSize
)

// receiptDomain separates receipt signatures from every other SM2
// signature a node key makes.
const receiptDomain = "hallmark/kiosk-receipt/v1\x00"

// Receipt field offsets. All integers are big-endian.
const (
	offRMagic     = 0
	offRVersion   = 4
	offRFlags     = 5
	offRLength    = 6
	offRTxID      = 8
	offRDigest    = 40
	offRStatus    = 72
	offRReserved  = 73
	offRReason    = 74
	offRNodeKey   = 76
	offRTimestamp = 84
	offRSignature = 92
)

// Status is the outcome a receipt reports.
type Status uint8

// Receipt statuses.
const (
	StatusAccepted  Status = 1 // the node took the transaction into its mempool
	StatusDuplicate Status = 2 // the node already had it (mempool or chain)
	StatusRejected  Status = 3 // refused; Reason says why
)

func (s Status) String() string {
	switch s {
	case StatusAccepted:
		return "accepted"
	case StatusDuplicate:
		return "duplicate"
	case StatusRejected:
		return "rejected"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Reason is a rejection reason code. The space is split by origin:
//
//	0x0000           none (accepted or duplicate)
//	0x0001..0x00FF   the ingress itself (the constants below)
//	0x0100..0x7FFF   reserved for the node runtime (mempool, API)
//	0x8000..0xFFFF   the ledger application: 0x8000 | its own code
//
// Application codes pass through unchanged in their low 15 bits, so a
// kiosk looks them up in the application's own table
// (docs/TRANSACTIONS.md).
type Reason uint16

// Reasons the ingress gives.
const (
	ReasonNone              Reason = 0
	ReasonBadBody           Reason = 1  // body is not a canonical, valid transaction
	ReasonTxIDMismatch      Reason = 2  // header id is not SM3 of the body
	ReasonKeyIDMismatch     Reason = 3  // header key id is not the first signer's
	ReasonTimestampMismatch Reason = 4  // header timestamp is not the transaction's
	ReasonLength            Reason = 5  // header length is not the datagram length
	ReasonVersion           Reason = 6  // header version not spoken
	ReasonBadSignature      Reason = 7  // a signature does not verify
	ReasonNotAdmitted       Reason = 8  // sender key is not an admitted account's
	ReasonFrozen            Reason = 9  // sender account is frozen
	ReasonStale             Reason = 10 // timestamp outside the node's window
	ReasonWrongChain        Reason = 11 // chain id is not this network's
	ReasonBusy              Reason = 12 // node overloaded: retry later
)

// Bounds of the reason code ranges.
const (
	ReasonNodeBase Reason = 0x0100
	ReasonAppBase  Reason = 0x8000
)

// AppReason wraps a ledger application reason code for a receipt. Codes
// must be below 0x8000; larger ones are clamped to 0x7FFF.
func AppReason(code uint16) Reason {
	if code >= uint16(ReasonAppBase) {
		code = uint16(ReasonAppBase) - 1
	}
	return ReasonAppBase | Reason(code)
}

// IsApp reports whether r came from the ledger application, and its code.
func (r Reason) IsApp() (uint16, bool) {
	if r&ReasonAppBase != 0 {
		return uint16(r &^ ReasonAppBase), true
	}
	return 0, false
}

var reasonNames = map[Reason]string{
	ReasonNone: "none", ReasonBadBody: "bad body", ReasonTxIDMismatch: "transaction id mismatch",
	ReasonKeyIDMismatch: "key id mismatch", ReasonTimestampMismatch: "timestamp mismatch",
	ReasonLength: "length mismatch", ReasonVersion: "unsupported version", ReasonBadSignature: "bad signature",
	ReasonNotAdmitted: "sender not admitted", ReasonFrozen: "sender frozen", ReasonStale: "timestamp outside window",
	ReasonWrongChain: "wrong chain", ReasonBusy: "node busy",
}

func (r Reason) String() string {
	if code, ok := r.IsApp(); ok {
		return fmt.Sprintf("application code %d", code)
	}
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason %#04x", uint16(r))
}

// ReasonOf maps a header or body error from [Decode] to its reason code.
func ReasonOf(err error) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrVersion):
		return ReasonVersion
	case errors.Is(err, ErrLength):
		return ReasonLength
	case errors.Is(err, ErrTxIDMismatch):
		return ReasonTxIDMismatch
	case errors.Is(err, ErrKeyIDMismatch):
		return ReasonKeyIDMismatch
	case errors.Is(err, ErrTimestampMismatch):
		return ReasonTimestampMismatch
	}
	return ReasonBadBody
}

// Receipt is the node's signed answer to one transaction datagram.
type Receipt struct {
	TxID ledger.TxID
	// DatagramDigest is SM3 over the whole datagram the node answers. A
	// client believes a rejection only if it names the exact bytes it
	// sent, so a mangled copy injected by someone else cannot make it
	// think its transaction was refused.
	DatagramDigest gm.Digest
	Status         Status
	Reason         Reason
	// NodeKeyID is the short key id of the node's receipt key.
	NodeKeyID ShortKeyID
	// Timestamp is the node's clock when it answered, ms since 1970 UTC.
	Timestamp uint64
}

// ErrReceipt is returned for a receipt datagram that is malformed or whose
// signature does not verify.
var ErrReceipt = errors.New("kiosk: invalid receipt")

func (r *Receipt) check() error {
	switch r.Status {
	case StatusAccepted, StatusDuplicate:
		if r.Reason != ReasonNone {
			return fmt.Errorf("%w: status %s with reason %s", ErrReceipt, r.Status, r.Reason)
		}
	case StatusRejected:
		if r.Reason == ReasonNone {
			return fmt.Errorf("%w: rejection without a reason", ErrReceipt)
		}
	default:
		return fmt.Errorf("%w: unknown status %d", ErrReceipt, uint8(r.Status))
	}
	return nil
}

// signedPart returns the receipt's first 92 bytes, the part the signature
// covers (after the domain tag).
func (r *Receipt) signedPart() []byte {
	b := make([]byte, ReceiptSize)
	binary.BigEndian.PutUint32(b[offRMagic:], ReceiptMagic)
	b[offRVersion] = ReceiptVersion
	b[offRFlags] = 0
	binary.BigEndian.PutUint16(b[offRLength:], ReceiptSize)
	copy(b[offRTxID:], r.TxID[:])
	copy(b[offRDigest:], r.DatagramDigest[:])
	b[offRStatus] = byte(r.Status)
	b[offRReserved] = 0
	binary.BigEndian.PutUint16(b[offRReason:], uint16(r.Reason))
	copy(b[offRNodeKey:], r.NodeKeyID[:])
	binary.BigEndian.PutUint64(b[offRTimestamp:], r.Timestamp)
	return b
}

// ReceiptSignBytes returns the message a node signs for a receipt whose
// first 92 bytes are prefix: the domain tag followed by those bytes.
func ReceiptSignBytes(prefix []byte) []byte {
	msg := make([]byte, 0, len(receiptDomain)+len(prefix))
	msg = append(msg, receiptDomain...)
	return append(msg, prefix...)
}

// SignReceipt fills r.NodeKeyID from signer and returns the 156-byte
// receipt datagram.
func SignReceipt(ctx context.Context, signer gm.Signer, r Receipt) ([]byte, error) {
	r.NodeKeyID = ShortKeyID(signer.PublicKey().ID().Short())
	if err := r.check(); err != nil {
		return nil, err
	}
	b := r.signedPart()
	sig, err := signer.Sign(ctx, ReceiptSignBytes(b[:receiptSigned]))
	if err != nil {
		return nil, fmt.Errorf("kiosk: signing receipt: %w", err)
	}
	copy(b[offRSignature:], sig[:])
	return b, nil
}

// AssembleReceipt returns the receipt datagram for r with a signature made
// elsewhere (for worked examples and other languages' test vectors).
func AssembleReceipt(r Receipt, sig gm.Signature) []byte {
	b := r.signedPart()
	copy(b[offRSignature:], sig[:])
	return b
}

// ParseReceipt reads a receipt datagram without verifying its signature.
func ParseReceipt(b []byte) (Receipt, gm.Signature, error) {
	var r Receipt
	var sig gm.Signature
	if len(b) != ReceiptSize {
		return r, sig, fmt.Errorf("%w: %d bytes, want %d", ErrReceipt, len(b), ReceiptSize)
	}
	if m := binary.BigEndian.Uint32(b[offRMagic:]); m != ReceiptMagic {
		return r, sig, fmt.Errorf("%w: magic %#08x", ErrReceipt, m)
	}
	if b[offRVersion] != ReceiptVersion || b[offRFlags] != 0 || b[offRReserved] != 0 {
		return r, sig, fmt.Errorf("%w: version %d, flags %#02x, reserved %#02x", ErrReceipt, b[offRVersion], b[offRFlags], b[offRReserved])
	}
	if n := binary.BigEndian.Uint16(b[offRLength:]); n != ReceiptSize {
		return r, sig, fmt.Errorf("%w: length field %d", ErrReceipt, n)
	}
	copy(r.TxID[:], b[offRTxID:])
	copy(r.DatagramDigest[:], b[offRDigest:])
	r.Status = Status(b[offRStatus])
	r.Reason = Reason(binary.BigEndian.Uint16(b[offRReason:]))
	copy(r.NodeKeyID[:], b[offRNodeKey:])
	r.Timestamp = binary.BigEndian.Uint64(b[offRTimestamp:])
	copy(sig[:], b[offRSignature:])
	if err := r.check(); err != nil {
		return r, sig, err
	}
	return r, sig, nil
}

// VerifyReceipt parses a receipt datagram and checks its signature under
// the node's public key.
func VerifyReceipt(b []byte, node *gm.PublicKey) (Receipt, error) {
	r, sig, err := ParseReceipt(b)
	if err != nil {
		return r, err
	}
	if r.NodeKeyID != ShortKeyID(node.ID().Short()) {
		return r, fmt.Errorf("%w: signed by key %s, expected %s", ErrReceipt, r.NodeKeyID, ShortKeyID(node.ID().Short()))
	}
	if !node.Verify(ReceiptSignBytes(b[:receiptSigned]), sig) {
		return r, fmt.Errorf("%w: signature does not verify", ErrReceipt)
	}
	return r, nil
}

// Answers reports whether receipt r is an answer the sender of datagram
// (with id txID and SM3 digest digest) should believe: the id must match,
// and a rejection must name the exact bytes sent.
func (r *Receipt) Answers(txID ledger.TxID, digest gm.Digest) bool {
	if r.TxID != txID {
		return false
	}
	if r.Status == StatusRejected {
		return r.DatagramDigest == digest
	}
	return true
}
