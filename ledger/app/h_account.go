package app

import (
	"fmt"

	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func registerNeedsQuorum(o *op) (bool, error) {
	return o.body.(*txs.AccountRegister).Roles&txs.PrivilegedRoles != 0, nil
}

// targetIsPrivileged: freezing or unfreezing an administrator, regulator
// or officer needs a quorum, so that no single administrator can lock the
// others out of governance.
func targetIsPrivileged(o *op) (bool, error) {
	acct, err := getAccount(o.st, *o.recipient)
	if err != nil {
		return false, err
	}
	if acct == nil {
		return false, reason.Errorf(reason.AccountNotFound, "account %s", *o.recipient)
	}
	return acct.Roles&txs.PrivilegedRoles != 0, nil
}

// rotationIsRecovery: rotating another account's key is the recovery of a
// lost key and needs a quorum.
func rotationIsRecovery(o *op) (bool, error) {
	return o.recipient != nil && *o.recipient != o.sender.Address, nil
}

func roleChangeIsPrivileged(o *op) (bool, error) {
	acct, err := getAccount(o.st, *o.recipient)
	if err != nil {
		return false, err
	}
	if acct == nil {
		return false, reason.Errorf(reason.AccountNotFound, "account %s", *o.recipient)
	}
	return (acct.Roles^o.body.(*txs.AccountSetRoles).Roles)&txs.PrivilegedRoles != 0, nil
}

// adjustAdmins changes the count of active (unfrozen) administrators by
// delta and refuses a count below the governance threshold, so that a
// quorum always remains possible.
func adjustAdmins(o *op, delta int) error {
	if delta == 0 {
		return nil
	}
	n, err := getUint(o.st, []byte(keyAdmins))
	if err != nil {
		return err
	}
	next := int64(n) + int64(delta)
	if next < int64(o.env.params.GovThreshold) {
		return reason.Errorf(reason.ThresholdUnreachable, "%d administrators would remain for a threshold of %d", next, o.env.params.GovThreshold)
	}
	o.st.Put([]byte(keyAdmins), be32(uint32(next)))
	return nil
}

func applyAccountRegister(o *op) error {
	b := o.body.(*txs.AccountRegister)
	addr := ledger.Address(b.PublicKey.ID())
	existing, err := getAccount(o.st, addr)
	if err != nil {
		return err
	}
	if existing != nil {
		return reason.Errorf(reason.AccountExists, "account %s", addr)
	}
	holder, err := accountByKey(o.st, b.PublicKey)
	if err != nil {
		return err
	}
	if holder != nil {
		return reason.Errorf(reason.KeyInUse, "the key belongs to account %s", holder.Address)
	}
	a := &ledger.Account{
		Address: addr, PublicKey: b.PublicKey, Certificate: b.Certificate, Institution: b.Institution,
		Roles: b.Roles, KeyHeight: o.env.height,
	}
	if err := putObj(o.st, accountKey(addr), a); err != nil {
		return err
	}
	o.st.Put(keyIndexKey(b.PublicKey.ID()), addr[:])
	if b.Roles.Has(ledger.RoleAdmin) {
		if err := adjustAdmins(o, 1); err != nil {
			return err
		}
	}
	o.target, o.note = &addr, fmt.Sprintf("roles %v, institution %q", b.Roles.Names(), b.Institution)
	return nil
}

// target loads the recipient account.
func target(o *op) (*ledger.Account, error) {
	acct, err := getAccount(o.st, *o.recipient)
	if err != nil {
		return nil, err
	}
	if acct == nil {
		return nil, reason.Errorf(reason.AccountNotFound, "account %s", *o.recipient)
	}
	addr := acct.Address
	o.target = &addr
	return acct, nil
}

func applyAccountFreeze(o *op) error {
	acct, err := target(o)
	if err != nil {
		return err
	}
	if acct.Address == o.sender.Address {
		return reason.New(reason.SelfAction, "an account cannot freeze itself")
	}
	if acct.Frozen {
		return reason.New(reason.AlreadyFrozen, "already frozen")
	}
	if acct.Roles.Has(ledger.RoleAdmin) {
		if err := adjustAdmins(o, -1); err != nil {
			return err
		}
	}
	acct.Frozen = true
	o.note = o.body.(*txs.AccountFreeze).Reason
	return putObj(o.st, accountKey(acct.Address), acct)
}

func applyAccountUnfreeze(o *op) error {
	acct, err := target(o)
	if err != nil {
		return err
	}
	if !acct.Frozen {
		return reason.New(reason.NotFrozen, "not frozen")
	}
	if acct.Roles.Has(ledger.RoleAdmin) {
		if err := adjustAdmins(o, 1); err != nil {
			return err
		}
	}
	acct.Frozen = false
	o.note = o.body.(*txs.AccountUnfreeze).Reason
	return putObj(o.st, accountKey(acct.Address), acct)
}

func applyAccountRotateKey(o *op) error {
	b := o.body.(*txs.AccountRotateKey)
	acct := o.sender
	if o.recipient != nil {
		var err error
		if acct, err = target(o); err != nil {
			return err
		}
	} else {
		addr := acct.Address
		o.target = &addr
	}
	if acct.PublicKey == b.NewKey {
		return reason.New(reason.KeyInUse, "the new key is the current key")
	}
	holder, err := accountByKey(o.st, b.NewKey)
	if err != nil {
		return err
	}
	if holder != nil {
		return reason.Errorf(reason.KeyInUse, "the key belongs to account %s", holder.Address)
	}
	o.st.Delete(keyIndexKey(acct.PublicKey.ID()))
	o.st.Put(keyIndexKey(b.NewKey.ID()), acct.Address[:])
	next := *acct
	next.PublicKey = b.NewKey
	next.KeyHeight = o.env.height
	next.Certificate = nil // it certified the old key
	o.note = "new key " + b.NewKey.ID().String()
	return putObj(o.st, accountKey(next.Address), &next)
}

func applyAccountSetRoles(o *op) error {
	b := o.body.(*txs.AccountSetRoles)
	acct, err := target(o)
	if err != nil {
		return err
	}
	was, is := acct.Roles.Has(ledger.RoleAdmin), b.Roles.Has(ledger.RoleAdmin)
	switch {
	case acct.Frozen: // frozen administrators are not counted
	case was && !is:
		err = adjustAdmins(o, -1)
	case !was && is:
		err = adjustAdmins(o, 1)
	}
	if err != nil {
		return err
	}
	o.note = fmt.Sprintf("roles %v -> %v", acct.Roles.Names(), b.Roles.Names())
	acct.Roles = b.Roles
	return putObj(o.st, accountKey(acct.Address), acct)
}
