package app

import (
	"fmt"
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func putValidators(o *op, vs *ledger.ValidatorSet) error {
	if err := vs.Validate(); err != nil {
		return reason.New(reason.BadParams, err.Error())
	}
	return putObj(o.st, []byte(keyValidators), vs)
}

func applyNodeAdd(o *op) error {
	b := o.body.(*txs.NodeAdd)
	vs, err := getValidators(o.st)
	if err != nil {
		return err
	}
	if vs.IndexOf(b.Peer.PeerID) >= 0 {
		return reason.Errorf(reason.NodeExists, "validator %s", b.Peer.PeerID)
	}
	vs.Validators = append(vs.Validators, b.Peer)
	if err := putValidators(o, vs); err != nil {
		return err
	}
	o.note = fmt.Sprintf("node %s at %s (%s)", b.Peer.PeerID, b.Peer.Address, b.Peer.Organisation)
	return putObj(o.st, nodeKey(b.Peer.PeerID), &NodeInfo{Peer: b.Peer, Certificate: b.Certificate, Height: o.env.height})
}

func applyNodeRemove(o *op) error {
	b := o.body.(*txs.NodeRemove)
	vs, err := getValidators(o.st)
	if err != nil {
		return err
	}
	i := vs.IndexOf(b.Peer)
	if i < 0 {
		return reason.Errorf(reason.NodeNotFound, "validator %s", b.Peer)
	}
	if vs.N() == 1 {
		return reason.New(reason.LastValidator, "the last validator cannot be removed")
	}
	vs.Validators = slices.Delete(vs.Validators, i, i+1)
	if err := putValidators(o, vs); err != nil {
		return err
	}
	o.st.Delete(nodeKey(b.Peer))
	o.note = "node " + b.Peer.String()
	return nil
}

func applyNodeRotateKey(o *op) error {
	b := o.body.(*txs.NodeRotateKey)
	s := &b.Statement
	if s.ChainID != o.env.chainID {
		return reason.Errorf(reason.BadRotation, "statement for chain %q", s.ChainID)
	}
	vs, err := getValidators(o.st)
	if err != nil {
		return err
	}
	oldID, newID := s.Old.ID(), s.New.ID()
	i := vs.IndexOf(oldID)
	if i < 0 {
		return reason.Errorf(reason.NodeNotFound, "no validator has key %s", oldID)
	}
	if vs.IndexOf(newID) >= 0 {
		return reason.Errorf(reason.NodeExists, "key %s is already a validator's", newID)
	}
	peer := vs.Validators[i]
	peer.PeerID, peer.PublicKey = newID, s.New
	vs.Validators[i] = peer
	if err := putValidators(o, vs); err != nil {
		return err
	}
	info, err := getObj[NodeInfo](o.st, nodeKey(oldID))
	if err != nil {
		return err
	}
	if info == nil {
		info = &NodeInfo{}
	}
	info.Peer, info.Height = peer, o.env.height
	info.Certificate = nil // it certified the old key
	o.st.Delete(nodeKey(oldID))
	if err := putObj(o.st, nodeKey(newID), info); err != nil {
		return err
	}
	o.out.nodeKeys = append(o.out.nodeKeys, NodeKeyChange{Old: oldID, New: s.New})
	o.note = fmt.Sprintf("node key %s -> %s", oldID, newID)
	return nil
}

func applyParamsChange(o *op) error {
	b := o.body.(*txs.ParamsChange)
	admins, err := getUint(o.st, []byte(keyAdmins))
	if err != nil {
		return err
	}
	if uint64(b.Params.GovThreshold) > admins {
		return reason.Errorf(reason.ThresholdUnreachable, "threshold %d with %d active administrators", b.Params.GovThreshold, admins)
	}
	o.note = fmt.Sprintf("threshold %d, window %d ms", b.Params.GovThreshold, b.Params.TxWindowMs)
	return putObj(o.st, []byte(keyParams), &b.Params)
}

func applyProtocolUpgrade(o *op) error {
	b := o.body.(*txs.ProtocolUpgrade)
	ps, err := getProtocol(o.st)
	if err != nil {
		return err
	}
	if ps.Next != 0 && o.env.height >= ps.Activation {
		ps = ProtocolState{Version: ps.Next} // the scheduled upgrade is in force
	}
	if b.Version <= ps.Version || (ps.Next != 0 && b.Version <= ps.Next) {
		return reason.Errorf(reason.VersionNotNewer, "version %d is not above %d", b.Version, max(ps.Version, ps.Next))
	}
	if b.ActivationHeight <= o.env.height {
		return reason.Errorf(reason.ActivationPassed, "activation height %d is not after %d", b.ActivationHeight, o.env.height)
	}
	ps.Next, ps.Activation = b.Version, b.ActivationHeight
	o.note = fmt.Sprintf("protocol %d from height %d", b.Version, b.ActivationHeight)
	return putObj(o.st, []byte(keyProtocol), &ps)
}

func applyFilterUpdate(o *op) error {
	b := o.body.(*txs.FilterUpdate)
	o.note = fmt.Sprintf("%d blocked senders, %d blocked types, %d keywords",
		len(b.Rules.BlockedSenders), len(b.Rules.BlockedRecordTypes), len(b.Rules.Keywords))
	return putObj(o.st, []byte(keyFilter), &b.Rules)
}

// applyGovApprove adds the signers' approvals to a proposal and executes
// it when they reach the threshold. Approvals count only while their
// administrators are active: an approver who lost the role or was frozen
// since approving no longer counts.
func applyGovApprove(o *op) error {
	b := o.body.(*txs.GovApprove)
	p, err := getObj[Proposal](o.st, proposalKey(b.Proposal))
	if err != nil {
		return err
	}
	if p == nil {
		return reason.Errorf(reason.ProposalNotFound, "proposal %s (never made, executed or expired)", b.Proposal)
	}
	signers, err := approvers(o.st, o.signers, nil)
	if err != nil {
		return err
	}
	var fresh []ledger.Address
	for _, a := range signers {
		if _, found := slices.BinarySearchFunc(p.Approvals, a, compareAddr); !found {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) == 0 {
		return reason.New(reason.AlreadyApproved, "every signer has approved already")
	}
	var active []ledger.Address
	for _, a := range p.Approvals {
		acct, err := getAccount(o.st, a)
		if err != nil {
			return err
		}
		if acct != nil && acct.Roles.Has(ledger.RoleAdmin) && !acct.Frozen {
			active = append(active, a)
		}
	}
	approvals := append(active, fresh...)
	slices.SortFunc(approvals, compareAddr)
	id := p.ID
	o.record = nil
	o.note = fmt.Sprintf("proposal %s: %d of %d approvals", p.ID, len(approvals), o.env.params.GovThreshold)
	if uint32(len(approvals)) < o.env.params.GovThreshold {
		p.Approvals = approvals
		if err := putObj(o.st, proposalKey(p.ID), p); err != nil {
			return err
		}
		o.emitFor(EventApproved, p.Type, id, nil)
		return nil
	}

	body, err := txs.Decode(p.Type, p.Data)
	if err != nil {
		return fmt.Errorf("app: stored proposal %s does not decode: %w", p.ID, err)
	}
	proposer, err := getAccount(o.st, p.Sender)
	if err != nil {
		return err
	}
	if proposer == nil {
		return fmt.Errorf("app: proposer %s of %s is not an account", p.Sender, p.ID)
	}
	h, ok := handlerFor(p.Type)
	if !ok {
		return fmt.Errorf("app: stored proposal %s has type %s without a handler", p.ID, p.Type)
	}
	po := &op{
		env: o.env, st: o.st, id: p.ID, txType: p.Type, data: p.Data, sender: proposer,
		recipient: p.Recipient, body: body, out: o.out,
	}
	if err := h.apply(po); err != nil {
		return err
	}
	o.st.Delete(proposalKey(p.ID))
	o.st.Delete(expiryKey(p.Expires, p.ID))
	o.emitFor(EventApproved, p.Type, id, nil)
	po.note = fmt.Sprintf("approved by %d of threshold %d; %s", len(approvals), o.env.params.GovThreshold, po.note)
	po.emit(EventExecuted)
	return nil
}

// emitFor appends an event of o's actor about another transaction.
func (o *op) emitFor(kind EventKind, t ledger.TxType, tx gm.Digest, target *ledger.Address) {
	o.out.events = append(o.out.events, AuditEvent{
		Kind: kind, Time: o.env.time, Height: o.env.height, Actor: o.sender.Address, Type: t,
		Tx: &tx, Target: target, Outcome: reason.OK, Note: o.note,
	})
}
