// Package txs defines the body of every transaction type: the structure
// that travels, canonically CBOR-encoded, in a transaction's entity data
// (04_003). Each body has stateless checks (Validate) that need nothing but
// the body itself; the checks against world state and the effects live in
// package app.
//
// Body formats are versioned by the transaction format version
// (ledger.TxVersion): a change to any body is a new transaction version or
// a new type code, never a silent reinterpretation.
package txs

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"hallmark/ledger"
)

// ErrBadBody wraps every failure to decode or validate a body.
var ErrBadBody = errors.New("txs: bad transaction body")

// Body is the decoded entity data of one transaction type.
type Body interface {
	// TxType returns the transaction type the body belongs to.
	TxType() ledger.TxType
	// Validate checks the body on its own: formats, ranges, limits and
	// internal consistency.
	Validate() error
	// Text returns the body's free-text fields, which the content filter
	// searches for blocked keywords.
	Text() []string
}

// constructors returns a fresh zero body for each type.
var constructors = map[ledger.TxType]func() Body{
	ledger.TxRecordPut:        func() Body { return new(RecordPut) },
	ledger.TxRecordSupersede:  func() Body { return new(RecordSupersede) },
	ledger.TxCertIssue:        func() Body { return new(CertIssue) },
	ledger.TxCertRevoke:       func() Body { return new(CertRevoke) },
	ledger.TxGrantAccess:      func() Body { return new(GrantAccess) },
	ledger.TxRevokeAccess:     func() Body { return new(RevokeAccess) },
	ledger.TxAssetIssue:       func() Body { return new(AssetIssue) },
	ledger.TxAssetMint:        func() Body { return new(AssetMint) },
	ledger.TxAssetAllocate:    func() Body { return new(AssetAllocate) },
	ledger.TxAssetTransfer:    func() Body { return new(AssetTransfer) },
	ledger.TxAccountRegister:  func() Body { return new(AccountRegister) },
	ledger.TxAccountFreeze:    func() Body { return new(AccountFreeze) },
	ledger.TxAccountUnfreeze:  func() Body { return new(AccountUnfreeze) },
	ledger.TxAccountRotateKey: func() Body { return new(AccountRotateKey) },
	ledger.TxAccountSetRoles:  func() Body { return new(AccountSetRoles) },
	ledger.TxNodeAdd:          func() Body { return new(NodeAdd) },
	ledger.TxNodeRemove:       func() Body { return new(NodeRemove) },
	ledger.TxNodeRotateKey:    func() Body { return new(NodeRotateKey) },
	ledger.TxParamsChange:     func() Body { return new(ParamsChange) },
	ledger.TxProtocolUpgrade:  func() Body { return new(ProtocolUpgrade) },
	ledger.TxGovApprove:       func() Body { return new(GovApprove) },
	ledger.TxFilterUpdate:     func() Body { return new(FilterUpdate) },
	ledger.TxRecordMask:       func() Body { return new(RecordMask) },
	ledger.TxAuditAnchor:      func() Body { return new(AuditAnchor) },
}

// New returns an empty body of type t, or nil if t has none.
func New(t ledger.TxType) Body {
	c, ok := constructors[t]
	if !ok {
		return nil
	}
	return c()
}

// Decode strictly decodes data as the body of type t and validates it.
func Decode(t ledger.TxType, data []byte) (Body, error) {
	b := New(t)
	if b == nil {
		return nil, fmt.Errorf("%w: no body defined for type %s", ErrBadBody, t)
	}
	if len(data) > ledger.MaxDataBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed %d", ErrBadBody, len(data), ledger.MaxDataBytes)
	}
	if t == ledger.TxRecordPut {
		if rp, ok := parseRecordPut(data); ok {
			b = rp
		} else if err := ledger.Unmarshal(data, b); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadBody, t, err)
		}
	} else if err := ledger.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadBody, t, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// Encode returns the canonical encoding of b, the value of Entity.Data.
func Encode(b Body) ([]byte, error) { return ledger.Marshal(b) }

// Recipient says how a transaction type uses the entity's recipient
// (04_002): the account the transaction acts on or gives to.
type Recipient uint8

// Recipient rules.
const (
	RecipientNone     Recipient = iota // must be absent
	RecipientRequired                  // must be present
	RecipientOptional                  // either (see the type's documentation)
)

// RecipientRule returns how type t uses the recipient.
func RecipientRule(t ledger.TxType) Recipient {
	switch t {
	case ledger.TxGrantAccess, ledger.TxRevokeAccess, ledger.TxAssetAllocate, ledger.TxAssetTransfer,
		ledger.TxAccountFreeze, ledger.TxAccountUnfreeze, ledger.TxAccountSetRoles:
		return RecipientRequired
	case ledger.TxAccountRotateKey:
		return RecipientOptional
	}
	return RecipientNone
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadBody, fmt.Sprintf(format, args...))
}

// Limits of body fields.
const (
	MaxRecordTypeLen = 64
	MaxNameLen       = 128 // asset names, certificate serials
	MaxReasonLen     = 512 // reasons for freezing, masking, revoking
	MaxSymbolLen     = 32
	MaxReaders       = 32 // readers of one encrypted payload
	MaxDecimals      = 18
)

// ValidRecordType reports whether s is a valid record type or certificate
// kind: 1 to 64 bytes of lower-case ASCII letters, digits, '.', '_' and
// '-', starting with a letter or digit (e.g. "customs.declaration").
func ValidRecordType(s string) bool {
	if len(s) == 0 || len(s) > MaxRecordTypeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidSymbol reports whether s is a valid asset symbol: 1 to 32 bytes of
// upper-case ASCII letters, digits, '.', '_' and '-', starting with a
// letter or digit (e.g. "EBILL-2024").
func ValidSymbol(s string) bool {
	if len(s) == 0 || len(s) > MaxSymbolLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkText(what, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen || !utf8.ValidString(s) {
		return bad("%s must be UTF-8 of %d to %d bytes", what, minLen, maxLen)
	}
	return nil
}
