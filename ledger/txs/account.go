package txs

import (
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// PrivilegedRoles are the roles whose grant or removal needs an
// administrator quorum: they carry governance, supervision and key
// ceremony powers.
const PrivilegedRoles = ledger.RoleAdmin | ledger.RoleRegulator | ledger.RoleOfficer

// AccountRegister (account.register) admits a member (成员身份增加): an
// account for a public key, with its institution, an optional SM2 X.509
// certificate for that key, and its roles. An administrator sends it and
// the new key co-signs (proof of possession). Registering an account with
// a privileged role needs an administrator quorum.
type AccountRegister struct {
	PublicKey   ledger.PublicKeyBytes `cbor:"1,keyasint" json:"publicKey"`
	Institution string                `cbor:"2,keyasint" json:"institution"`
	Certificate []byte                `cbor:"3,keyasint,omitempty" json:"certificate,omitempty"`
	Roles       ledger.Role           `cbor:"4,keyasint" json:"roles"`
}

// TxType implements Body.
func (*AccountRegister) TxType() ledger.TxType { return ledger.TxAccountRegister }

// Text implements Body.
func (b *AccountRegister) Text() []string { return []string{b.Institution} }

// Validate implements Body.
func (b *AccountRegister) Validate() error {
	a := ledger.Account{
		Address: ledger.Address(b.PublicKey.ID()), PublicKey: b.PublicKey,
		Certificate: b.Certificate, Institution: b.Institution, Roles: b.Roles,
	}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	if b.Institution == "" {
		return bad("institution is empty: a member must be identified")
	}
	if b.Roles == 0 {
		return bad("an account needs at least one role")
	}
	return checkCertificateKey(b.Certificate, b.PublicKey)
}

// checkCertificateKey checks that a DER certificate, if present, parses
// and certifies key.
func checkCertificateKey(der []byte, key ledger.PublicKeyBytes) error {
	if len(der) == 0 {
		return nil
	}
	if len(der) > ledger.MaxCertBytes {
		return bad("certificate of %d bytes exceeds %d", len(der), ledger.MaxCertBytes)
	}
	cert, err := gm.ParseCertificate(der)
	if err != nil {
		return bad("certificate: %v", err)
	}
	if ledger.KeyBytes(cert.PublicKey()) != key {
		return bad("certificate is for another key")
	}
	return nil
}

// AccountFreeze (account.freeze) freezes the recipient account (冻结): its
// transactions are refused until it is unfrozen. An administrator or the
// regulator sends it; freezing an account with a privileged role needs an
// administrator quorum.
type AccountFreeze struct {
	Reason string `cbor:"1,keyasint" json:"reason"`
}

// TxType implements Body.
func (*AccountFreeze) TxType() ledger.TxType { return ledger.TxAccountFreeze }

// Text implements Body.
func (b *AccountFreeze) Text() []string { return []string{b.Reason} }

// Validate implements Body.
func (b *AccountFreeze) Validate() error {
	return checkText("freeze reason", b.Reason, 1, MaxReasonLen)
}

// AccountUnfreeze (account.unfreeze) restores a frozen account (恢复),
// under the same rules as freezing.
type AccountUnfreeze struct {
	Reason string `cbor:"1,keyasint" json:"reason"`
}

// TxType implements Body.
func (*AccountUnfreeze) TxType() ledger.TxType { return ledger.TxAccountUnfreeze }

// Text implements Body.
func (b *AccountUnfreeze) Text() []string { return []string{b.Reason} }

// Validate implements Body.
func (b *AccountUnfreeze) Validate() error {
	return checkText("unfreeze reason", b.Reason, 1, MaxReasonLen)
}

// AccountRotateKey (account.rotate-key) replaces an account's key; its
// address stays. Without a recipient it rotates the sender's own key and
// must be signed by the current and the new key. With a recipient it is a
// recovery of a lost key (密钥丢失后的恢复): an administrator proposes it,
// the new key co-signs, and it needs an administrator quorum.
type AccountRotateKey struct {
	NewKey ledger.PublicKeyBytes `cbor:"1,keyasint" json:"newKey"`
}

// TxType implements Body.
func (*AccountRotateKey) TxType() ledger.TxType { return ledger.TxAccountRotateKey }

// Text implements Body.
func (*AccountRotateKey) Text() []string { return nil }

// Validate implements Body.
func (b *AccountRotateKey) Validate() error {
	if _, err := b.NewKey.Parse(); err != nil {
		return bad("new key: %v", err)
	}
	return nil
}

// AccountSetRoles (account.set-roles) replaces the recipient's roles
// (权限设置). An administrator sends it; a change to a privileged role needs
// an administrator quorum.
type AccountSetRoles struct {
	Roles ledger.Role `cbor:"1,keyasint" json:"roles"`
}

// TxType implements Body.
func (*AccountSetRoles) TxType() ledger.TxType { return ledger.TxAccountSetRoles }

// Text implements Body.
func (*AccountSetRoles) Text() []string { return nil }

// Validate implements Body.
func (b *AccountSetRoles) Validate() error {
	all := ledger.RoleMember | ledger.RoleKiosk | ledger.RoleIssuer | PrivilegedRoles
	if b.Roles&^all != 0 {
		return bad("unknown role bits %#x", uint32(b.Roles&^all))
	}
	return nil
}
