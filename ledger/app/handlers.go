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

// handlers maps each transaction type to its handler. It is filled once
// by init (function values that refer back to the table cannot be a
// variable initialiser) and never changed afterwards.
var handlers map[ledger.TxType]*handler

func init() {
	const writers = ledger.RoleMember | ledger.RoleKiosk | ledger.RoleIssuer
	handlers = map[ledger.TxType]*handler{
		ledger.TxRecordPut:       {roles: writers, apply: applyRecordPut},
		ledger.TxRecordSupersede: {roles: writers, apply: applyRecordSupersede},
		ledger.TxRecordMask:      {roles: ledger.RoleRegulator, apply: applyRecordMask, audited: true},
		ledger.TxAuditAnchor: {
			roles: ledger.RoleOfficer | ledger.RoleAdmin | ledger.RoleRegulator, apply: applyAuditAnchor, audited: true,
		},

		ledger.TxCertIssue:  {roles: ledger.RoleIssuer, apply: applyCertIssue},
		ledger.TxCertRevoke: {roles: ledger.RoleIssuer | ledger.RoleRegulator, apply: applyCertRevoke, audited: true},

		ledger.TxGrantAccess:  {apply: applyGrantAccess, audited: true},
		ledger.TxRevokeAccess: {apply: applyRevokeAccess, audited: true},

		ledger.TxAssetIssue:    {roles: ledger.RoleIssuer, apply: applyAssetIssue},
		ledger.TxAssetMint:     {roles: ledger.RoleIssuer, apply: applyAssetMint},
		ledger.TxAssetAllocate: {roles: ledger.RoleIssuer, apply: applyAssetAllocate},
		ledger.TxAssetTransfer: {apply: applyAssetTransfer},

		ledger.TxAccountRegister: {
			roles: ledger.RoleAdmin, quorum: registerNeedsQuorum, apply: applyAccountRegister, audited: true,
			pop: func(b txs.Body) *ledger.PublicKeyBytes { return &b.(*txs.AccountRegister).PublicKey },
		},
		ledger.TxAccountFreeze: {
			roles: ledger.RoleAdmin | ledger.RoleRegulator, quorum: targetIsPrivileged, apply: applyAccountFreeze, audited: true,
		},
		ledger.TxAccountUnfreeze: {
			roles: ledger.RoleAdmin | ledger.RoleRegulator, quorum: targetIsPrivileged, apply: applyAccountUnfreeze, audited: true,
		},
		ledger.TxAccountRotateKey: {
			quorum: rotationIsRecovery, apply: applyAccountRotateKey, audited: true,
			pop: func(b txs.Body) *ledger.PublicKeyBytes { return &b.(*txs.AccountRotateKey).NewKey },
		},
		ledger.TxAccountSetRoles: {
			roles: ledger.RoleAdmin, quorum: roleChangeIsPrivileged, apply: applyAccountSetRoles, audited: true,
		},

		ledger.TxNodeAdd:         {quorum: always, apply: applyNodeAdd, audited: true},
		ledger.TxNodeRemove:      {quorum: always, apply: applyNodeRemove, audited: true},
		ledger.TxNodeRotateKey:   {quorum: always, apply: applyNodeRotateKey, audited: true},
		ledger.TxParamsChange:    {quorum: always, apply: applyParamsChange, audited: true},
		ledger.TxProtocolUpgrade: {quorum: always, apply: applyProtocolUpgrade, audited: true},
		ledger.TxFilterUpdate:    {quorum: always, apply: applyFilterUpdate, audited: true},
		ledger.TxGovApprove:      {roles: ledger.RoleAdmin, adminSigners: true, apply: applyGovApprove},
	}
}
