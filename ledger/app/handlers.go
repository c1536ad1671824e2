package app

import (
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// handler describes how one transaction type is authorised and applied.
type handler struct {
	// roles: the sender needs at least one of them (0: any registered
	// account). Not consulted when the action needs a quorum.
	roles ledger.Role
	// quorum reports whether this transaction needs an administrator
	// quorum (nil: never).
	quorum func(o *op) (bool, error)
	// pop returns the key the transaction installs, which must co-sign
	// it (proof of possession); nil if none.
	pop func(b txs.Body) *ledger.PublicKeyBytes
	// adminSigners: every signer is an administrator approving (the
	// handler checks them); otherwise only the sender and the pop key may
	// sign.
	adminSigners bool
	// apply checks the action against state and applies it to o.st.
	apply func(o *op) error
	// audited: a successful execution is recorded as an audit event.
	audited bool
}

func always(*op) (bool, error) { return true, nil }

// handlerFor returns the handler of type t, or false for a type without
// one.
func handlerFor(t ledger.TxType) (handler, bool) {
	const writers = ledger.RoleMember | ledger.RoleKiosk | ledger.RoleIssuer
	switch t {
	case ledger.TxRecordPut:
		return handler{roles: writers, apply: applyRecordPut}, true
	case ledger.TxRecordSupersede:
		return handler{roles: writers, apply: applyRecordSupersede}, true
	case ledger.TxRecordMask:
		return handler{roles: ledger.RoleRegulator, apply: applyRecordMask, audited: true}, true
	case ledger.TxAuditAnchor:
		return handler{roles: ledger.RoleOfficer | ledger.RoleAdmin | ledger.RoleRegulator, apply: applyAuditAnchor, audited: true}, true

	case ledger.TxCertIssue:
		return handler{roles: ledger.RoleIssuer, apply: applyCertIssue}, true
	case ledger.TxCertRevoke:
		return handler{roles: ledger.RoleIssuer | ledger.RoleRegulator, apply: applyCertRevoke, audited: true}, true

	case ledger.TxGrantAccess:
		return handler{apply: applyGrantAccess, audited: true}, true
	case ledger.TxRevokeAccess:
		return handler{apply: applyRevokeAccess, audited: true}, true

	case ledger.TxAssetIssue:
		return handler{roles: ledger.RoleIssuer, apply: applyAssetIssue}, true
	case ledger.TxAssetMint:
		return handler{roles: ledger.RoleIssuer, apply: applyAssetMint}, true
	case ledger.TxAssetAllocate:
		return handler{roles: ledger.RoleIssuer, apply: applyAssetAllocate}, true
	case ledger.TxAssetTransfer:
		return handler{apply: applyAssetTransfer}, true

	case ledger.TxAccountRegister:
		return handler{
			roles: ledger.RoleAdmin, quorum: registerNeedsQuorum, apply: applyAccountRegister, audited: true,
			pop: func(b txs.Body) *ledger.PublicKeyBytes { return &b.(*txs.AccountRegister).PublicKey },
		}, true
	case ledger.TxAccountFreeze:
		return handler{roles: ledger.RoleAdmin | ledger.RoleRegulator, quorum: targetIsPrivileged, apply: applyAccountFreeze, audited: true}, true
	case ledger.TxAccountUnfreeze:
		return handler{roles: ledger.RoleAdmin | ledger.RoleRegulator, quorum: targetIsPrivileged, apply: applyAccountUnfreeze, audited: true}, true
	case ledger.TxAccountRotateKey:
		return handler{
			quorum: rotationIsRecovery, apply: applyAccountRotateKey, audited: true,
			pop: func(b txs.Body) *ledger.PublicKeyBytes { return &b.(*txs.AccountRotateKey).NewKey },
		}, true
	case ledger.TxAccountSetRoles:
		return handler{roles: ledger.RoleAdmin, quorum: roleChangeIsPrivileged, apply: applyAccountSetRoles, audited: true}, true

	case ledger.TxNodeAdd:
		return handler{quorum: always, apply: applyNodeAdd, audited: true}, true
	case ledger.TxNodeRemove:
		return handler{quorum: always, apply: applyNodeRemove, audited: true}, true
	case ledger.TxNodeRotateKey:
		return handler{quorum: always, apply: applyNodeRotateKey, audited: true}, true
	case ledger.TxParamsChange:
		return handler{quorum: always, apply: applyParamsChange, audited: true}, true
	case ledger.TxProtocolUpgrade:
		return handler{quorum: always, apply: applyProtocolUpgrade, audited: true}, true
	case ledger.TxFilterUpdate:
		return handler{quorum: always, apply: applyFilterUpdate, audited: true}, true
	case ledger.TxGovApprove:
		return handler{roles: ledger.RoleAdmin, adminSigners: true, apply: applyGovApprove}, true
	}
	return handler{}, false
}
