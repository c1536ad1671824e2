// Package reason defines the numbered reason codes that say why a
// transaction or a read was refused. The numbers are stable: they appear in
// block execution results, in the HTTP API's error bodies and on kiosk
// receipts, so a code is never renumbered or reused. docs/TRANSACTIONS.md
// lists them.
//
// Codes are grouped by hundreds: 1xx the form of the transaction, 2xx time
// and replay, 3xx sender and signers, 4xx content filtering, 5xx records,
// certificates, grants, assets and accounts, 6xx governance, 7xx
// supervision and audited reads.
package reason

import (
	"errors"
	"fmt"
	"strconv"
)

// Code is a reason code. Zero means success.
type Code uint16

// Reason codes.
const (
	OK Code = 0

	// The form of the transaction.
	Malformed          Code = 100 // fails the structural checks of the data format
	UnsupportedVersion Code = 101 // transaction format version not spoken here
	WrongChain         Code = 102 // chain id is not this chain's
	UnknownType        Code = 103 // transaction type not defined
	BadBody            Code = 104 // entity data does not decode as the type's body, or breaks its rules
	BadSignature       Code = 105 // a signature does not verify
	BadRecipient       Code = 106 // recipient missing where required or present where not allowed
	PayloadMismatch    Code = 107 // payload digest, size or kind inconsistent with the body
	PayloadMissing     Code = 108 // the transaction names a payload that does not travel with it
	UnexpectedPayload  Code = 109 // a payload on a type that carries none

	// Time and replay.
	TooOld    Code = 200 // timestamp older than the window allows
	TooNew    Code = 201 // timestamp further ahead than the window allows
	Duplicate Code = 202 // transaction id already executed

	// Sender and signers.
	UnknownSender    Code = 300 // sender is not a registered account
	SenderFrozen     Code = 301 // sender's account is frozen
	SenderNotSigner  Code = 302 // sender's current key did not sign
	NotPermitted     Code = 303 // sender's roles do not allow this transaction
	UnexpectedSigner Code = 304 // a signer that this transaction has no use for
	MissingKeyProof  Code = 305 // a key the transaction installs did not sign it
	SignerFrozen     Code = 306 // a co-signing account is frozen
	GovernanceOnly   Code = 307 // the action needs an administrator quorum and the sender is not an administrator

	// Content filtering (内容过滤).
	FilterSender          Code = 400 // sender is on the blocked list
	FilterRecordType      Code = 401 // record type is on the blocked list
	FilterKeyword         Code = 402 // a plaintext field or payload contains a blocked keyword
	FilterSize            Code = 403 // data, memo or payload exceeds the rule set's size limit
	FilterRegulatorReader Code = 404 // an encrypted payload does not include a regulator among its readers
	PayloadErased         Code = 405 // the payload was masked by the regulator and may not return

	// Records and certificates.
	RecordNotFound   Code = 500
	RecordMasked     Code = 501
	RecordSuperseded Code = 502
	NotRecordOwner   Code = 503
	ReaderUnknown    Code = 504 // a listed reader is not a registered account
	CertNotFound     Code = 520
	CertRevoked      Code = 521
	CertDuplicate    Code = 522 // a live certificate already exists for this document digest
	NotCertIssuer    Code = 523

	// Grants.
	GranteeUnknown Code = 540
	GrantNotFound  Code = 541
	GrantExpired   Code = 542 // the grant's end time has passed
	GranteeFrozen  Code = 543

	// Assets.
	AssetExists         Code = 560
	AssetNotFound       Code = 561
	NotAssetIssuer      Code = 562
	SupplyExceeded      Code = 563 // maximum supply or integer range exceeded
	InsufficientBalance Code = 564
	RecipientUnknown    Code = 565
	RecipientFrozen     Code = 566

	// Accounts.
	AccountExists   Code = 580
	AccountNotFound Code = 581
	AlreadyFrozen   Code = 582
	NotFrozen       Code = 583
	KeyInUse        Code = 584 // the key is the current key of another account
	SelfAction      Code = 585 // an account may not do this to itself

	// Governance.
	NotAdmin             Code = 600 // an approval from a key that is not an administrator's
	ProposalNotFound     Code = 601
	AlreadyApproved      Code = 602
	ThresholdUnreachable Code = 603 // the change would leave fewer administrators than the threshold
	NodeExists           Code = 604
	NodeNotFound         Code = 605
	LastValidator        Code = 606
	BadRotation          Code = 607 // node key rotation statement does not verify or does not match
	VersionNotNewer      Code = 608
	ActivationPassed     Code = 609
	BadParams            Code = 610

	// Supervision and audited reads.
	AnchorGap      Code = 700 // an audit anchor does not continue the previous one
	ReadDenied     Code = 710 // no ownership, grant or regulator role covers the read
	ReaderNotFound Code = 711 // the reader is not a registered account
	ReaderFrozen   Code = 712
	PayloadUnavail Code = 713 // the record has no payload to read
	Internal       Code = 900 // an internal error (a state read failed); never a verdict on the transaction
)

var names = map[Code]string{
	OK: "ok",

	Malformed: "malformed", UnsupportedVersion: "unsupported-version", WrongChain: "wrong-chain",
	UnknownType: "unknown-type", BadBody: "bad-body", BadSignature: "bad-signature",
	BadRecipient: "bad-recipient", PayloadMismatch: "payload-mismatch", PayloadMissing: "payload-missing",
	UnexpectedPayload: "unexpected-payload",

	TooOld: "too-old", TooNew: "too-new", Duplicate: "duplicate",

	UnknownSender: "unknown-sender", SenderFrozen: "sender-frozen", SenderNotSigner: "sender-not-signer",
	NotPermitted: "not-permitted", UnexpectedSigner: "unexpected-signer", MissingKeyProof: "missing-key-proof",
	SignerFrozen: "signer-frozen", GovernanceOnly: "governance-only",

	FilterSender: "filter-sender", FilterRecordType: "filter-record-type", FilterKeyword: "filter-keyword",
	FilterSize: "filter-size", FilterRegulatorReader: "filter-regulator-reader", PayloadErased: "payload-erased",

	RecordNotFound: "record-not-found", RecordMasked: "record-masked", RecordSuperseded: "record-superseded",
	NotRecordOwner: "not-record-owner", ReaderUnknown: "reader-unknown",
	CertNotFound: "cert-not-found", CertRevoked: "cert-revoked", CertDuplicate: "cert-duplicate",
	NotCertIssuer: "not-cert-issuer",

	GranteeUnknown: "grantee-unknown", GrantNotFound: "grant-not-found", GrantExpired: "grant-expired",
	GranteeFrozen: "grantee-frozen",

	AssetExists: "asset-exists", AssetNotFound: "asset-not-found", NotAssetIssuer: "not-asset-issuer",
	SupplyExceeded: "supply-exceeded", InsufficientBalance: "insufficient-balance",
	RecipientUnknown: "recipient-unknown", RecipientFrozen: "recipient-frozen",

	AccountExists: "account-exists", AccountNotFound: "account-not-found", AlreadyFrozen: "already-frozen",
	NotFrozen: "not-frozen", KeyInUse: "key-in-use", SelfAction: "self-action",

	NotAdmin: "not-admin", ProposalNotFound: "proposal-not-found", AlreadyApproved: "already-approved", ThresholdUnreachable: "threshold-unreachable",
	NodeExists: "node-exists", NodeNotFound: "node-not-found", LastValidator: "last-validator",
	BadRotation: "bad-rotation", VersionNotNewer: "version-not-newer", ActivationPassed: "activation-passed",
	BadParams: "bad-params",

	AnchorGap: "anchor-gap", ReadDenied: "read-denied", ReaderNotFound: "reader-not-found",
	ReaderFrozen: "reader-frozen",
	Internal:     "internal",
}

// Known reports whether c is a defined code.
func (c Code) Known() bool { _, ok := names[c]; return ok }

// String returns the code's stable name, e.g. "insufficient-balance".
func (c Code) String() string {
	if n, ok := names[c]; ok {
		return n
	}
	return "code-" + strconv.Itoa(int(c))
}

// Codes returns every defined code in numeric order.
func Codes() []Code {
	out := make([]Code, 0, len(names))
	for c := Code(0); c <= Internal; c++ {
		if _, ok := names[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// Parse returns the code with the given name.
func Parse(name string) (Code, error) {
	for c, n := range names {
		if n == name {
			return c, nil
		}
	}
	return 0, fmt.Errorf("reason: unknown code %q", name)
}

// Error is a refusal with its code and a human-readable detail. The detail
// is for logs and operators; only the code is part of consensus.
type Error struct {
	Code   Code
	Detail string
}

// Error renders "name (code): detail".
func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%s (%d)", e.Code, uint16(e.Code))
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, uint16(e.Code), e.Detail)
}

// Is matches another *Error with the same code, so that
// errors.Is(err, reason.New(reason.Duplicate, "")) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// New returns an error with code c.
func New(c Code, detail string) *Error { return &Error{Code: c, Detail: detail} }

// Errorf returns an error with code c and a formatted detail.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Detail: fmt.Sprintf(format, args...)}
}

// Of returns the code of err: OK for nil, the code of a wrapped *Error,
// and Internal for any other error.
func Of(err error) Code {
	if err == nil {
		return OK
	}
	var re *Error
	if errors.As(err, &re) {
		return re.Code
	}
	return Internal
}
