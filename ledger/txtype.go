package ledger

import (
	"fmt"
	"strings"
)

// TxType is the spec's transaction type (03_002). The high byte names the
// family, the low byte the operation.
type TxType uint16

// Transaction types. docs/TRANSACTIONS.md describes each one.
const (
	// Records (存证).
	TxRecordPut       TxType = 0x0101
	TxRecordSupersede TxType = 0x0102

	// Electronic certificates (电子证照).
	TxCertIssue  TxType = 0x0201
	TxCertRevoke TxType = 0x0202

	// Authorisations (eKYC).
	TxGrantAccess  TxType = 0x0301
	TxRevokeAccess TxType = 0x0302

	// Assets (账本应用, e-bills).
	TxAssetIssue    TxType = 0x0401 // create an asset class
	TxAssetMint     TxType = 0x0402 // increase supply
	TxAssetAllocate TxType = 0x0403 // issuer gives units to a user
	TxAssetTransfer TxType = 0x0404 // user to user

	// Accounts and members.
	TxAccountRegister  TxType = 0x0501
	TxAccountFreeze    TxType = 0x0502
	TxAccountUnfreeze  TxType = 0x0503
	TxAccountRotateKey TxType = 0x0504
	TxAccountSetRoles  TxType = 0x0505

	// Governance, approved by an M-of-N quorum of administrators.
	TxNodeAdd         TxType = 0x0601
	TxNodeRemove      TxType = 0x0602
	TxNodeRotateKey   TxType = 0x0603
	TxParamsChange    TxType = 0x0604
	TxProtocolUpgrade TxType = 0x0605
	TxGovApprove      TxType = 0x0606 // one approval of a pending proposal
	TxFilterUpdate    TxType = 0x0607 // replace the content-filter rule set

	// Supervision.
	TxRecordMask  TxType = 0x0701
	TxAuditAnchor TxType = 0x0702
)

var txTypeNames = map[TxType]string{
	TxRecordPut: "record.put", TxRecordSupersede: "record.supersede",
	TxCertIssue: "cert.issue", TxCertRevoke: "cert.revoke",
	TxGrantAccess: "grant.access", TxRevokeAccess: "grant.revoke",
	TxAssetIssue: "asset.issue", TxAssetMint: "asset.mint", TxAssetAllocate: "asset.allocate", TxAssetTransfer: "asset.transfer",
	TxAccountRegister: "account.register", TxAccountFreeze: "account.freeze", TxAccountUnfreeze: "account.unfreeze",
	TxAccountRotateKey: "account.rotate-key", TxAccountSetRoles: "account.set-roles",
	TxNodeAdd: "gov.node-add", TxNodeRemove: "gov.node-remove", TxNodeRotateKey: "gov.node-rotate-key",
	TxParamsChange: "gov.params", TxProtocolUpgrade: "gov.protocol-upgrade", TxGovApprove: "gov.approve", TxFilterUpdate: "gov.filter",
	TxRecordMask: "supervision.mask", TxAuditAnchor: "supervision.audit-anchor",
}

// Known reports whether t is a defined transaction type.
func (t TxType) Known() bool { _, ok := txTypeNames[t]; return ok }

// String returns the type's name, or its number in hex if unknown.
func (t TxType) String() string {
	if n, ok := txTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%04x", uint16(t))
}

// MarshalText renders the type by name.
func (t TxType) MarshalText() ([]byte, error) {
	if !t.Known() {
		return nil, fmt.Errorf("ledger: unknown transaction type 0x%04x", uint16(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText parses a type name.
func (t *TxType) UnmarshalText(text []byte) error {
	parsed, err := ParseTxType(string(text))
	if err != nil {
		return err
	}
	*t = parsed
	return nil
}

// ParseTxType returns the type with the given name.
func ParseTxType(name string) (TxType, error) {
	name = strings.TrimSpace(name)
	for t, n := range txTypeNames {
		if n == name {
			return t, nil
		}
	}
	return 0, fmt.Errorf("ledger: unknown transaction type %q", name)
}

// TxTypes returns every defined type in numeric order.
func TxTypes() []TxType {
	out := make([]TxType, 0, len(txTypeNames))
	for t := range txTypeNames {
		out = append(out, t)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
