package txs

import (
	"bytes"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// PayloadKind says where a record's content is and whether it is
// encrypted.
type PayloadKind uint8

// Payload kinds.
const (
	// PayloadDigestOnly: no payload travels; the body names the SM3 digest
	// of a document kept elsewhere.
	PayloadDigestOnly PayloadKind = 0
	// PayloadPlain: the transaction's payload is the document in plaintext.
	PayloadPlain PayloadKind = 1
	// PayloadSealed: the transaction's payload is an envelope (package
	// envelope): SM4-GCM ciphertext with the data key wrapped by SM2 for
	// each reader listed in the body.
	PayloadSealed PayloadKind = 2
)

var payloadKindNames = [...]string{"digest", "plain", "sealed"}

// String returns "digest", "plain" or "sealed".
func (k PayloadKind) String() string {
	if int(k) < len(payloadKindNames) {
		return payloadKindNames[k]
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// MarshalText renders the kind by name.
func (k PayloadKind) MarshalText() ([]byte, error) {
	if int(k) >= len(payloadKindNames) {
		return nil, fmt.Errorf("txs: unknown payload kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText parses a kind name.
func (k *PayloadKind) UnmarshalText(text []byte) error {
	for i, n := range payloadKindNames {
		if n == string(text) {
			*k = PayloadKind(i)
			return nil
		}
	}
	return fmt.Errorf("txs: unknown payload kind %q", text)
}

// RecordPut (record.put) stores a record (存证): a typed statement about a
// subject, with its document as a digest, a plaintext payload or an
// encrypted payload. The record's id is the transaction id.
//
// For PayloadPlain and PayloadSealed the transaction's PayloadDigest names
// the payload and Size is its length; for PayloadDigestOnly the
// transaction carries no payload and Digest names the document.
type RecordPut struct {
	RecordType string         `cbor:"1,keyasint" json:"recordType"`
	Subject    ledger.Address `cbor:"2,keyasint" json:"subject"`
	Kind       PayloadKind    `cbor:"3,keyasint,omitempty" json:"payloadKind"`
	Digest     *gm.Digest     `cbor:"4,keyasint,omitempty" json:"documentDigest,omitempty"`
	Size       uint64         `cbor:"5,keyasint,omitempty" json:"payloadSize,omitempty"`
	// Readers are the accounts the sealed payload's data key is wrapped
	// for, in ascending byte order without repeats.
	Readers []ledger.Address `cbor:"6,keyasint,omitempty" json:"readers,omitempty"`
}

// TxType implements Body.
func (*RecordPut) TxType() ledger.TxType { return ledger.TxRecordPut }

// Text implements Body.
func (b *RecordPut) Text() []string { return []string{b.RecordType} }

// Validate implements Body.
func (b *RecordPut) Validate() error {
	if !ValidRecordType(b.RecordType) {
		return bad("record type %q: want 1 to %d bytes of [a-z0-9._-]", b.RecordType, MaxRecordTypeLen)
	}
	if b.Subject.IsZero() {
		return bad("record subject is empty")
	}
	switch b.Kind {
	case PayloadDigestOnly:
		if b.Digest == nil || b.Digest.IsZero() {
			return bad("digest-only record without a document digest")
		}
		if b.Size != 0 || len(b.Readers) != 0 {
			return bad("digest-only record with a payload size or readers")
		}
	case PayloadPlain, PayloadSealed:
		if b.Digest != nil {
			return bad("%s record names its payload through the transaction's payload digest, not the body", b.Kind)
		}
		if b.Size == 0 || b.Size > ledger.MaxPayloadBytes {
			return bad("payload size %d: want 1 to %d", b.Size, ledger.MaxPayloadBytes)
		}
		if b.Kind == PayloadPlain && len(b.Readers) != 0 {
			return bad("plaintext record lists readers")
		}
		if b.Kind == PayloadSealed {
			if err := checkAddressSet("reader", b.Readers, 1, MaxReaders); err != nil {
				return err
			}
		}
	default:
		return bad("unknown payload kind %d", b.Kind)
	}
	return nil
}

// HasPayload reports whether the record's content travels as the
// transaction's payload.
func (b *RecordPut) HasPayload() bool { return b.Kind == PayloadPlain || b.Kind == PayloadSealed }

// checkAddressSet checks that addrs are non-zero, strictly ascending and
// between min and max in number.
func checkAddressSet(what string, addrs []ledger.Address, minN, maxN int) error {
	if len(addrs) < minN || len(addrs) > maxN {
		return bad("%d %ss, want %d to %d", len(addrs), what, minN, maxN)
	}
	for i := range addrs {
		if addrs[i].IsZero() {
			return bad("%s %d is empty", what, i)
		}
		if i > 0 && bytes.Compare(addrs[i-1][:], addrs[i][:]) >= 0 {
			return bad("%ss must be in ascending order without repeats", what)
		}
	}
	return nil
}

// RecordSupersede (record.supersede) stores a new version of a record. The
// new record gets the transaction id as its id; the previous one is marked
// superseded by it. Only the owner of the previous record may send it.
type RecordSupersede struct {
	Previous gm.Digest `cbor:"1,keyasint" json:"previous"`
	Record   RecordPut `cbor:"2,keyasint" json:"record"`
}

// TxType implements Body.
func (*RecordSupersede) TxType() ledger.TxType { return ledger.TxRecordSupersede }

// Text implements Body.
func (b *RecordSupersede) Text() []string { return b.Record.Text() }

// Validate implements Body.
func (b *RecordSupersede) Validate() error {
	if b.Previous.IsZero() {
		return bad("superseded record id is empty")
	}
	return b.Record.Validate()
}

// RecordMask (supervision.mask) is the regulator's order to mask a record:
// the record keeps its digest and metadata and is marked masked (by whom,
// when, why); its payload is erased from every node.
type RecordMask struct {
	Record gm.Digest `cbor:"1,keyasint" json:"record"`
	Reason string    `cbor:"2,keyasint" json:"reason"`
}

// TxType implements Body.
func (*RecordMask) TxType() ledger.TxType { return ledger.TxRecordMask }

// Text implements Body.
func (b *RecordMask) Text() []string { return []string{b.Reason} }

// Validate implements Body.
func (b *RecordMask) Validate() error {
	if b.Record.IsZero() {
		return bad("record id is empty")
	}
	return checkText("mask reason", b.Reason, 1, MaxReasonLen)
}

// AuditAnchor (supervision.audit-anchor) anchors the digest of a segment
// of one node's audit log on the chain. Segments of a log must follow each
// other without gaps: FirstSeq is one past the previous anchor's LastSeq
// and Prev is the previous anchor's Head.
type AuditAnchor struct {
	// Log names the audit log, normally the key id of the node keeping it.
	Log      gm.KeyID  `cbor:"1,keyasint" json:"log"`
	FirstSeq uint64    `cbor:"2,keyasint" json:"firstSeq"`
	LastSeq  uint64    `cbor:"3,keyasint" json:"lastSeq"`
	From     int64     `cbor:"4,keyasint" json:"from"` // ms, time of the first entry
	To       int64     `cbor:"5,keyasint" json:"to"`   // ms, time of the last entry
	Prev     gm.Digest `cbor:"6,keyasint" json:"prev"` // chain digest before FirstSeq (zero for the first segment)
	Head     gm.Digest `cbor:"7,keyasint" json:"head"` // chain digest after LastSeq
}

// TxType implements Body.
func (*AuditAnchor) TxType() ledger.TxType { return ledger.TxAuditAnchor }

// Text implements Body.
func (*AuditAnchor) Text() []string { return nil }

// Validate implements Body.
func (b *AuditAnchor) Validate() error {
	switch {
	case gm.Digest(b.Log).IsZero():
		return bad("audit log id is empty")
	case b.FirstSeq == 0 || b.LastSeq < b.FirstSeq:
		return bad("sequence range %d..%d: want 1 <= first <= last", b.FirstSeq, b.LastSeq)
	case b.From <= 0 || b.To < b.From:
		return bad("time range %d..%d is not ordered", b.From, b.To)
	case b.Head.IsZero():
		return bad("segment head digest is empty")
	}
	return nil
}
