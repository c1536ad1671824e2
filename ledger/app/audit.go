package app

import (
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// EventKind says what an audit event records.
type EventKind uint8

// Audit event kinds.
const (
	// EventRead: an account read a record's content through a node
	// (produced by the read path, node-local).
	EventRead EventKind = 1
	// EventExecuted: an administrative or supervisory transaction took
	// effect (produced by execution, identical on every node).
	EventExecuted EventKind = 2
	// EventProposed: a governance action is waiting for approvals.
	EventProposed EventKind = 3
	// EventApproved: approvals were added to a pending proposal.
	EventApproved EventKind = 4
	// EventExpired: a proposal expired without reaching its quorum.
	EventExpired EventKind = 5
)

var eventKindNames = map[EventKind]string{
	EventRead: "read", EventExecuted: "executed", EventProposed: "proposed",
	EventApproved: "approved", EventExpired: "expired",
}

// String returns the kind's name.
func (k EventKind) String() string {
	if n, ok := eventKindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// MarshalText renders the kind by name.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// AuditEvent is one entry of the audit log (监督检查: 日志): who did what,
// when, to which record or account, under which grant, and the outcome.
// Storage keeps the log at least six months and anchors digests of its
// segments on the chain with supervision.audit-anchor transactions.
type AuditEvent struct {
	Kind   EventKind      `cbor:"1,keyasint" json:"kind"`
	Time   int64          `cbor:"2,keyasint" json:"time"`   // ms: block time, or the node's clock for reads
	Height uint64         `cbor:"3,keyasint" json:"height"` // block height, or the state height a read saw
	Actor  ledger.Address `cbor:"4,keyasint" json:"actor"`
	// Type is the transaction type acted out (zero for reads).
	Type    ledger.TxType   `cbor:"5,keyasint,omitempty" json:"transactionType,omitempty"`
	Tx      *gm.Digest      `cbor:"6,keyasint,omitempty" json:"tx,omitempty"` // transaction or proposal id
	Record  *gm.Digest      `cbor:"7,keyasint,omitempty" json:"record,omitempty"`
	Grant   *gm.Digest      `cbor:"8,keyasint,omitempty" json:"grant,omitempty"`
	Target  *ledger.Address `cbor:"9,keyasint,omitempty" json:"target,omitempty"` // the account acted on
	Outcome reason.Code     `cbor:"10,keyasint,omitempty" json:"outcome"`
	Note    string          `cbor:"11,keyasint,omitempty" json:"note,omitempty"` // purpose of a read, reason of an action
	Node    *gm.KeyID       `cbor:"12,keyasint,omitempty" json:"node,omitempty"` // the node that served a read
}

const auditDomain = "hallmark/audit/v1\x00"

// ChainAudit extends an audit log's hash chain by one event:
//
//	head' = SM3("hallmark/audit/v1\x00" ‖ head ‖ SM3(canonical event))
//
// The chain starts from the zero digest. A segment's anchor carries the
// head before its first entry and after its last.
func ChainAudit(head gm.Digest, ev *AuditEvent) (gm.Digest, error) {
	enc, err := ledger.Marshal(ev)
	if err != nil {
		return gm.Digest{}, err
	}
	d := gm.SM3(enc)
	return gm.SM3Concat([]byte(auditDomain), head[:], d[:]), nil
}

// ReadRequest asks to read a record's content.
type ReadRequest struct {
	Reader  ledger.Address // the authenticated account asking
	Record  gm.Digest
	Time    int64    // the node's clock, ms
	Purpose string   // stated by the reader, kept in the log
	Node    gm.KeyID // the node serving the read
}

// ReadBasis says why a read was allowed.
type ReadBasis uint8

// Bases of an allowed read.
const (
	BasisNone      ReadBasis = iota
	BasisOwner               // the reader stored the record
	BasisSubject             // the record is about the reader
	BasisGrant               // the subject granted the reader access
	BasisRegulator           // the reader is a regulator (监管)
)

var basisNames = [...]string{"none", "owner", "subject", "grant", "regulator"}

// String returns the basis's name.
func (b ReadBasis) String() string {
	if int(b) < len(basisNames) {
		return basisNames[b]
	}
	return fmt.Sprintf("basis-%d", uint8(b))
}

// ReadDecision is the verdict on a read and the audit event to record
// for it, whatever the verdict.
type ReadDecision struct {
	Allowed bool
	Basis   ReadBasis
	Record  *Record // nil if the record does not exist
	Grant   *Grant  // the grant relied on, if any
	Event   AuditEvent
}

// AuthorizeRead decides whether req.Reader may read the content of
// req.Record and returns the audit event the node must append to its
// audit log before serving anything. The content is the payload
// (plaintext or envelope) or, for digest-only records, the record itself.
//
// A read is allowed to the record's owner, its subject, an account the
// subject granted the record's type (or every type) until after
// req.Time, and any regulator. Frozen or unknown readers are refused;
// masked payloads are gone and refused to everyone. The error is non-nil
// only when state cannot be read.
func AuthorizeRead(v View, req ReadRequest) (ReadDecision, error) {
	tip, err := getObj[Tip](v, []byte(keyTip))
	if err != nil {
		return ReadDecision{}, err
	}
	node := req.Node
	rec := req.Record
	d := ReadDecision{Event: AuditEvent{
		Kind: EventRead, Time: req.Time, Actor: req.Reader, Record: &rec, Note: req.Purpose, Node: &node,
	}}
	if tip != nil {
		d.Event.Height = tip.Height
	}
	deny := func(c reason.Code) (ReadDecision, error) {
		d.Allowed, d.Basis, d.Event.Outcome = false, BasisNone, c
		return d, nil
	}
	reader, err := getObj[ledger.Account](v, accountKey(req.Reader))
	if err != nil {
		return ReadDecision{}, err
	}
	if reader == nil {
		return deny(reason.ReaderNotFound)
	}
	if reader.Frozen {
		return deny(reason.ReaderFrozen)
	}
	r, err := getObj[Record](v, recordKey(req.Record))
	if err != nil {
		return ReadDecision{}, err
	}
	if r == nil {
		return deny(reason.RecordNotFound)
	}
	d.Record = r
	if r.Masked != nil {
		return deny(reason.RecordMasked)
	}
	if r.HasPayload() {
		erased, err := v.Get(erasedKey(r.Digest))
		if err != nil {
			return ReadDecision{}, err
		}
		if erased != nil {
			return deny(reason.PayloadErased)
		}
	}
	switch {
	case req.Reader == r.Owner:
		d.Basis = BasisOwner
	case req.Reader == r.Subject:
		d.Basis = BasisSubject
	default:
		for _, class := range []string{r.Type, txs.AnyRecordType} {
			g, err := getObj[Grant](v, grantKey(r.Subject, req.Reader, class))
			if err != nil {
				return ReadDecision{}, err
			}
			if g != nil && g.Until > req.Time {
				d.Basis, d.Grant = BasisGrant, g
				id := g.ID
				d.Event.Grant = &id
				break
			}
		}
		if d.Basis == BasisNone && reader.Roles.Has(ledger.RoleRegulator) {
			d.Basis = BasisRegulator
		}
	}
	if d.Basis == BasisNone {
		return deny(reason.ReadDenied)
	}
	d.Allowed = true
	return d, nil
}
