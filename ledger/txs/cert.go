package txs

import (
	"hallmark/gm"
	"hallmark/ledger"
)

// CertIssue (cert.issue) records an electronic certificate (电子证照)
// issued to a holder: its kind, its validity and the SM3 digest of the
// certificate document. The certificate's id is the transaction id. Only
// an account with the issuer role may send it.
type CertIssue struct {
	Holder    ledger.Address `cbor:"1,keyasint" json:"holder"`
	Kind      string         `cbor:"2,keyasint" json:"kind"`
	Serial    string         `cbor:"3,keyasint,omitempty" json:"serial,omitempty"`
	Document  gm.Digest      `cbor:"4,keyasint" json:"documentDigest"`
	NotBefore int64          `cbor:"5,keyasint" json:"notBefore"` // ms
	NotAfter  int64          `cbor:"6,keyasint" json:"notAfter"`  // ms, exclusive
}

// TxType implements Body.
func (*CertIssue) TxType() ledger.TxType { return ledger.TxCertIssue }

// Text implements Body.
func (b *CertIssue) Text() []string { return []string{b.Kind, b.Serial} }

// Validate implements Body.
func (b *CertIssue) Validate() error {
	switch {
	case b.Holder.IsZero():
		return bad("certificate holder is empty")
	case !ValidRecordType(b.Kind):
		return bad("certificate kind %q: want 1 to %d bytes of [a-z0-9._-]", b.Kind, MaxRecordTypeLen)
	case b.Document.IsZero():
		return bad("certificate document digest is empty")
	case b.NotBefore <= 0 || b.NotAfter <= b.NotBefore:
		return bad("validity %d..%d: want 0 < notBefore < notAfter", b.NotBefore, b.NotAfter)
	}
	return checkText("certificate serial", b.Serial, 0, MaxNameLen)
}

// CertRevoke (cert.revoke) revokes a certificate. Its issuer or a
// regulator may send it.
type CertRevoke struct {
	Certificate gm.Digest `cbor:"1,keyasint" json:"certificate"`
	Reason      string    `cbor:"2,keyasint" json:"reason"`
}

// TxType implements Body.
func (*CertRevoke) TxType() ledger.TxType { return ledger.TxCertRevoke }

// Text implements Body.
func (b *CertRevoke) Text() []string { return []string{b.Reason} }

// Validate implements Body.
func (b *CertRevoke) Validate() error {
	if b.Certificate.IsZero() {
		return bad("certificate id is empty")
	}
	return checkText("revocation reason", b.Reason, 1, MaxReasonLen)
}

// AnyRecordType is the grant class that covers every record type.
const AnyRecordType = "*"

// GrantAccess (grant.access) is a subject's authorisation (eKYC) for the
// recipient organisation to read the sender's records of one type (or of
// every type, with "*") until a time. A later grant for the same
// recipient and class replaces the earlier one.
type GrantAccess struct {
	RecordType string `cbor:"1,keyasint" json:"recordType"`
	Until      int64  `cbor:"2,keyasint" json:"until"` // ms, exclusive
}

// TxType implements Body.
func (*GrantAccess) TxType() ledger.TxType { return ledger.TxGrantAccess }

// Text implements Body.
func (*GrantAccess) Text() []string { return nil }

// Validate implements Body.
func (b *GrantAccess) Validate() error {
	if b.RecordType != AnyRecordType && !ValidRecordType(b.RecordType) {
		return bad("grant class %q: want a record type or %q", b.RecordType, AnyRecordType)
	}
	if b.Until <= 0 {
		return bad("grant end time must be positive milliseconds")
	}
	return nil
}

// RevokeAccess (grant.revoke) withdraws the sender's grant to the
// recipient for one class.
type RevokeAccess struct {
	RecordType string `cbor:"1,keyasint" json:"recordType"`
}

// TxType implements Body.
func (*RevokeAccess) TxType() ledger.TxType { return ledger.TxRevokeAccess }

// Text implements Body.
func (*RevokeAccess) Text() []string { return nil }

// Validate implements Body.
func (b *RevokeAccess) Validate() error {
	if b.RecordType != AnyRecordType && !ValidRecordType(b.RecordType) {
		return bad("grant class %q: want a record type or %q", b.RecordType, AnyRecordType)
	}
	return nil
}
