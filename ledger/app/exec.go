package app

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// ProposalLifetimeMs is how long a governance proposal waits for its
// quorum, from the timestamp of the block that stored it. An expired
// proposal is removed by the first block whose timestamp reaches its
// expiry.
const ProposalLifetimeMs = 7 * 24 * 60 * 60 * 1000

// maxWindowMs bounds the transaction window in time arithmetic so that
// no sum can overflow (about 35,000 years).
const maxWindowMs = 1 << 50

// Executor executes blocks and checks transactions. It holds no state of
// its own between calls and is safe for concurrent use; every call is a
// pure function of its arguments and the state it reads.
type Executor struct {
	verify func(*ledger.Transaction) error
}

// Option configures an Executor.
type Option func(*Executor)

// WithSignatureCheck replaces the signature check, which by default is
// [ledger.Transaction.VerifySignatures]. The node runtime passes a check
// that consults its cache of transactions it has already verified, so
// that each transaction costs one set of SM2 verifications per node; the
// function must give the same verdict as the default.
func WithSignatureCheck(f func(*ledger.Transaction) error) Option {
	return func(x *Executor) { x.verify = f }
}

// New returns an Executor.
func New(opts ...Option) *Executor {
	x := &Executor{verify: func(tx *ledger.Transaction) error { return tx.VerifySignatures() }}
	for _, o := range opts {
		o(x)
	}
	return x
}

// TxResult is the outcome of one transaction of a block.
type TxResult struct {
	ID   ledger.TxID `cbor:"1,keyasint" json:"transactionId"`
	Code reason.Code `cbor:"2,keyasint,omitempty" json:"code"`
	// Detail explains a failure for people. It is not part of consensus
	// and may change between versions.
	Detail string `cbor:"-" json:"detail,omitempty"`
}

// OK reports whether the transaction took effect.
func (r TxResult) OK() bool { return r.Code == reason.OK }

// PayloadErasure asks storage to erase a payload blob on this node: the
// regulator masked the record that named it. Hashes and proofs do not
// change, because blocks commit to the payload's digest only.
type PayloadErasure struct {
	Record  gm.Digest `json:"record"`
	Payload gm.Digest `json:"payload"`
}

// NodeKeyChange says that the validator with key id Old now uses New.
type NodeKeyChange struct {
	Old gm.KeyID              `json:"old"`
	New ledger.PublicKeyBytes `json:"new"`
}

// Reconfig carries the configuration that governance changed in a block.
// Consensus applies it at an epoch boundary of its choosing, identically
// on every node. Each field is the complete new value, nil if unchanged.
type Reconfig struct {
	// Validators is the validator set after every change so far. Its Epoch
	// is the block's epoch plus one, a hint: consensus sets the epoch in
	// which it takes effect.
	Validators *ledger.ValidatorSet `json:"validators,omitempty"`
	Params     *ledger.Params       `json:"params,omitempty"`
	Protocol   *ProtocolState       `json:"protocol,omitempty"`
	// NodeKeys lists validator key rotations, in order, so the node
	// runtime can switch signing keys and admission.
	NodeKeys []NodeKeyChange `json:"nodeKeys,omitempty"`
}

// Output is the result of executing one block.
type Output struct {
	// Writes is the block's canonical write set (sorted by key, one write
	// per key), which storage applies atomically when the block commits.
	Writes []ledger.Write
	// Results has one entry per transaction, in block order.
	Results []TxResult
	// Events are the audit events of the block, in order.
	Events []AuditEvent
	// Erasures lists payload blobs storage must erase when the block
	// commits.
	Erasures []PayloadErasure
	// Reconfig is nil unless governance changed the validators,
	// parameters or protocol version in this block.
	Reconfig *Reconfig
	// StateRoot is ledger.NextStateRoot(parent root, Writes): the value
	// the block header's StateRoot must have.
	StateRoot gm.Digest
}

// Errors that make a block invalid as a whole (as opposed to a failing
// transaction, which is recorded in its result).
var (
	ErrNoGenesis = errors.New("app: state has no genesis")
	ErrBadBlock  = errors.New("app: block does not fit the state")
)

// blockEnv is what every transaction of a block sees of the block, and
// the parts of state that execution consults for every transaction.
type blockEnv struct {
	x       *Executor
	chainID string
	height  uint64
	time    int64
	epoch   uint64
	params  ledger.Params
	filter  *txs.FilterRules
	horizon int64
	// accounts remembers decoded accounts; shared by a Checker's copies.
	accounts *accountMemo
}

func (x *Executor) loadEnv(v View, height uint64, time int64, epoch uint64) (*blockEnv, error) {
	chain, err := v.Get([]byte(keyChain))
	if err != nil {
		return nil, fmt.Errorf("app: reading chain id: %w", err)
	}
	if chain == nil {
		return nil, ErrNoGenesis
	}
	env := &blockEnv{x: x, chainID: string(chain), height: height, time: time, epoch: epoch, accounts: &accountMemo{}}
	if env.params, err = getParams(v); err != nil {
		return nil, err
	}
	if env.filter, err = getFilter(v); err != nil {
		return nil, err
	}
	h, err := getUint(v, []byte(keyHorizon))
	if err != nil {
		return nil, err
	}
	env.horizon = int64(h)
	return env, nil
}

func (env *blockEnv) window() int64 {
	return int64(min(env.params.TxWindowMs, maxWindowMs))
}

// ExecuteBlock executes b on top of the state view, whose root is
// parentRoot (the parent header's StateRoot), and returns the writes,
// results, audit events, erasures, reconfiguration and the new state root.
// It does not modify the view.
//
// A transaction that fails is recorded in its result with a reason code
// and changes nothing, except that its id is consumed (see
// docs/TRANSACTIONS.md, replay protection) when it failed after its
// signatures, time and uniqueness were established. An error means the
// block itself is invalid for this state (wrong chain, height or time, too
// many transactions) or state could not be read; the caller must not
// vote for or commit such a block.
func (x *Executor) ExecuteBlock(view View, parentRoot gm.Digest, b *ledger.Block) (*Output, error) {
	h := &b.Header
	tip, err := getObj[Tip](view, []byte(keyTip))
	if err != nil {
		return nil, err
	}
	if tip == nil {
		return nil, ErrNoGenesis
	}
	env, err := x.loadEnv(view, h.Height, h.Timestamp, h.Epoch)
	if err != nil {
		return nil, err
	}
	switch {
	case h.ChainID != env.chainID:
		return nil, fmt.Errorf("%w: block for chain %q, state is chain %q", ErrBadBlock, h.ChainID, env.chainID)
	case h.Height != tip.Height+1:
		return nil, fmt.Errorf("%w: block height %d on state at height %d", ErrBadBlock, h.Height, tip.Height)
	case h.Timestamp <= tip.Time:
		return nil, fmt.Errorf("%w: block time %d not after the parent's %d", ErrBadBlock, h.Timestamp, tip.Time)
	case len(b.Txs) > int(env.params.MaxBlockTxs):
		return nil, fmt.Errorf("%w: %d transactions exceed the parameter %d", ErrBadBlock, len(b.Txs), env.params.MaxBlockTxs)
	}

	// A record put makes three writes; room for four per transaction
	// spares the map and the list most of their growing.
	st := newOverlaySized(view, 16+4*len(b.Txs))
	out := &Output{Results: make([]TxResult, 0, len(b.Txs))}
	if err := env.housekeeping(st, out); err != nil {
		return nil, err
	}
	var touched struct{ validators, params, protocol bool }
	var nodeKeys []NodeKeyChange
	for i := range b.Txs {
		res, to, err := env.runTx(st, &b.Txs[i])
		if err != nil {
			return nil, fmt.Errorf("app: transaction %d (%s): %w", i, res.ID, err)
		}
		out.Results = append(out.Results, res)
		if to == nil {
			continue
		}
		out.Events = append(out.Events, to.events...)
		out.Erasures = append(out.Erasures, to.erasures...)
		nodeKeys = append(nodeKeys, to.nodeKeys...)
		for _, w := range to.writes {
			switch string(w.Key) {
			case keyValidators:
				touched.validators = true
			case keyParams:
				touched.params = true
				if env.params, err = getParams(st); err != nil {
					return nil, err
				}
			case keyFilter:
				if env.filter, err = getFilter(st); err != nil {
					return nil, err
				}
			case keyProtocol:
				touched.protocol = true
			}
		}
	}

	if touched.validators || touched.params || touched.protocol || len(nodeKeys) > 0 {
		rc := &Reconfig{NodeKeys: nodeKeys}
		if touched.validators {
			if rc.Validators, err = getValidators(st); err != nil {
				return nil, err
			}
			rc.Validators.Epoch = h.Epoch + 1
		}
		if touched.params {
			p := env.params
			rc.Params = &p
		}
		if touched.protocol {
			ps, err := getProtocol(st)
			if err != nil {
				return nil, err
			}
			rc.Protocol = &ps
		}
		out.Reconfig = rc
	}

	newTip := Tip{Height: h.Height, Time: h.Timestamp}
	if newTip.Results, err = digestOf(out.Results); err != nil {
		return nil, err
	}
	if newTip.Events, err = digestOf(out.Events); err != nil {
		return nil, err
	}
	if err := putObj(st, []byte(keyTip), &newTip); err != nil {
		return nil, err
	}
	if out.Writes, err = st.canonicalWrites(); err != nil {
		return nil, err
	}
	if out.StateRoot, err = ledger.NextStateRoot(parentRoot, out.Writes); err != nil {
		return nil, err
	}
	return out, nil
}

func digestOf(v any) (gm.Digest, error) {
	enc, err := ledger.Marshal(v)
	if err != nil {
		return gm.Digest{}, err
	}
	return gm.SM3(enc), nil
}

// housekeeping runs the block's deterministic cleanup before its
// transactions: it forgets executed transaction ids that the window
// already refuses, and removes expired proposals.
func (env *blockEnv) housekeeping(st *Overlay, out *Output) error {
	if cutoff := env.time - env.window(); cutoff > env.horizon {
		var dead [][]byte
		err := st.Scan([]byte(prefixSeen), func(k, _ []byte) bool {
			if len(k) < len(prefixSeen)+8 || int64(beUint64(k[len(prefixSeen):])) >= cutoff {
				return false
			}
			dead = append(dead, slices.Clone(k))
			return true
		})
		if err != nil {
			return fmt.Errorf("app: scanning executed ids: %w", err)
		}
		for _, k := range dead {
			st.Delete(k)
		}
		env.horizon = cutoff
		st.Put([]byte(keyHorizon), be64(uint64(cutoff)))
	}

	var expired [][]byte
	err := st.Scan([]byte(prefixExpiry), func(k, _ []byte) bool {
		if len(k) < len(prefixExpiry)+8 || int64(beUint64(k[len(prefixExpiry):])) > env.time {
			return false
		}
		expired = append(expired, slices.Clone(k))
		return true
	})
	if err != nil {
		return fmt.Errorf("app: scanning proposal expiries: %w", err)
	}
	for _, k := range expired {
		id := gm.Digest(k[len(prefixExpiry)+8:])
		p, err := getObj[Proposal](st, proposalKey(id))
		if err != nil {
			return err
		}
		st.Delete(k)
		if p == nil {
			continue
		}
		st.Delete(proposalKey(id))
		out.Events = append(out.Events, AuditEvent{
			Kind: EventExpired, Time: env.time, Height: env.height, Actor: p.Sender, Type: p.Type, Tx: &id,
			Outcome: reason.OK, Note: fmt.Sprintf("%d approvals", len(p.Approvals)),
		})
	}
	return nil
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// txOut is what a transaction produces besides state writes.
type txOut struct {
	writes   []ledger.Write
	events   []AuditEvent
	erasures []PayloadErasure
	nodeKeys []NodeKeyChange
}

// runTx executes one transaction on st. A failing transaction returns a
// result with its code and a nil txOut; a non-nil error means state could
// not be read and the block cannot be executed.
func (env *blockEnv) runTx(st *Overlay, tx *ledger.Transaction) (TxResult, *txOut, error) {
	id := tx.ID()
	res := TxResult{ID: id}
	fail := func(err error) (TxResult, *txOut, error) {
		var re *reason.Error
		if errors.As(err, &re) {
			res.Code, res.Detail = re.Code, re.Detail
			return res, nil, nil
		}
		return res, nil, err
	}
	body, err := env.admit(st, tx, id)
	if err != nil {
		return fail(err)
	}
	// From here on the transaction is authentic, timely and new: its id
	// is consumed whatever the outcome, so that it cannot be replayed.
	st.Put(seenKey(tx.Body.Timestamp, id), be64(env.height))
	txst := NewOverlay(st)
	o, err := env.dispatch(txst, tx, id, body)
	if err != nil {
		return fail(err)
	}
	o.out.writes = txst.Writes()
	st.applyOwned(o.out.writes)
	return res, o.out, nil
}

// admit runs the checks whose failure leaves no trace: form, chain, body,
// payload rules, time window, uniqueness and signatures.
func (env *blockEnv) admit(st View, tx *ledger.Transaction, id ledger.TxID) (txs.Body, error) {
	b := &tx.Body
	if b.Version != ledger.TxVersion {
		return nil, reason.Errorf(reason.UnsupportedVersion, "transaction version %d", b.Version)
	}
	if !b.Type.Known() {
		return nil, reason.Errorf(reason.UnknownType, "type 0x%04x", uint16(b.Type))
	}
	// Execution never looks at the payload: blocks replayed from storage
	// have none, and must execute exactly as they did with them. The
	// payload checks are CheckPayload's, made by the mempool and voters.
	stripped := tx.WithoutPayload()
	if err := stripped.Validate(); err != nil {
		return nil, reason.New(reason.Malformed, err.Error())
	}
	if b.ChainID != env.chainID {
		return nil, reason.Errorf(reason.WrongChain, "chain %q", b.ChainID)
	}
	body, err := txs.Decode(b.Type, b.Entity.Data)
	if err != nil {
		return nil, reason.New(reason.BadBody, err.Error())
	}
	switch txs.RecipientRule(b.Type) {
	case txs.RecipientNone:
		if b.Entity.Recipient != nil {
			return nil, reason.Errorf(reason.BadRecipient, "%s takes no recipient", b.Type)
		}
	case txs.RecipientRequired:
		if b.Entity.Recipient == nil || b.Entity.Recipient.IsZero() {
			return nil, reason.Errorf(reason.BadRecipient, "%s needs a recipient", b.Type)
		}
	case txs.RecipientOptional:
		if b.Entity.Recipient != nil && b.Entity.Recipient.IsZero() {
			return nil, reason.Errorf(reason.BadRecipient, "recipient is the zero address")
		}
	}
	if err := checkPayloadRule(tx, body); err != nil {
		return nil, err
	}
	w := env.window()
	switch {
	case b.Timestamp < env.time-w || b.Timestamp < env.horizon:
		return nil, reason.Errorf(reason.TooOld, "timestamp %d, block time %d, window %d ms", b.Timestamp, env.time, w)
	case b.Timestamp > clampAdd(env.time, w):
		return nil, reason.Errorf(reason.TooNew, "timestamp %d, block time %d, window %d ms", b.Timestamp, env.time, w)
	}
	seen, err := st.Get(seenKey(b.Timestamp, id))
	if err != nil {
		return nil, fmt.Errorf("app: reading executed ids: %w", err)
	}
	if seen != nil {
		return nil, reason.New(reason.Duplicate, "transaction id already executed")
	}
	if err := env.x.verify(tx); err != nil {
		return nil, reason.New(reason.BadSignature, err.Error())
	}
	return body, nil
}

// recordBody returns the record a body stores, if it stores one.
func recordBody(body txs.Body) *txs.RecordPut {
	switch b := body.(type) {
	case *txs.RecordPut:
		return b
	case *txs.RecordSupersede:
		return &b.Record
	}
	return nil
}

// checkPayloadRule checks that a payload digest appears exactly on
// records whose content is a payload.
func checkPayloadRule(tx *ledger.Transaction, body txs.Body) error {
	rp := recordBody(body)
	if rp == nil || !rp.HasPayload() {
		if tx.Body.PayloadDigest != nil {
			return reason.Errorf(reason.UnexpectedPayload, "%s carries no payload", tx.Body.Type)
		}
		return nil
	}
	if tx.Body.PayloadDigest == nil {
		return reason.Errorf(reason.PayloadMismatch, "%s record without a payload digest", rp.Kind)
	}
	return nil
}

// op is one action being executed: a transaction, or a proposal whose
// quorum was reached.
type op struct {
	env       *blockEnv
	st        *Overlay
	id        gm.Digest // transaction id, or the proposal's id
	txType    ledger.TxType
	data      []byte // the encoded body
	sender    *ledger.Account
	recipient *ledger.Address
	body      txs.Body
	payload   *gm.Digest // the transaction's payload digest
	signers   []ledger.PublicKeyBytes
	out       *txOut

	// Filled by the handler for the audit event.
	target *ledger.Address
	record *gm.Digest
	grant  *gm.Digest
	note   string
}

// dispatch runs the checks that need the sender's account and the
// handler of the type, and applies the effects to st.
func (env *blockEnv) dispatch(st *Overlay, tx *ledger.Transaction, id ledger.TxID, body txs.Body) (*op, error) {
	e := &tx.Body.Entity
	sender, err := env.account(st, e.Sender)
	if err != nil {
		return nil, err
	}
	if sender == nil {
		return nil, reason.Errorf(reason.UnknownSender, "%s", e.Sender)
	}
	if sender.Frozen {
		return nil, reason.Errorf(reason.SenderFrozen, "%s", e.Sender)
	}
	if !slices.Contains(tx.Body.Signers, sender.PublicKey) {
		return nil, reason.New(reason.SenderNotSigner, "the sender's current key did not sign")
	}
	if err := env.filterBody(tx, body); err != nil {
		return nil, err
	}
	h, ok := handlerFor(tx.Body.Type)
	if !ok {
		return nil, reason.Errorf(reason.UnknownType, "no handler for %s", tx.Body.Type)
	}
	o := &op{
		env: env, st: st, id: id, txType: tx.Body.Type, data: e.Data, sender: sender,
		recipient: e.Recipient, body: body, payload: tx.Body.PayloadDigest,
		signers: tx.Body.Signers, out: &txOut{},
	}
	var pop *ledger.PublicKeyBytes
	if h.pop != nil {
		pop = h.pop(body)
		if !slices.Contains(tx.Body.Signers, *pop) {
			return nil, reason.New(reason.MissingKeyProof, "the key being installed did not sign")
		}
	}
	needQuorum := false
	if h.quorum != nil {
		if needQuorum, err = h.quorum(o); err != nil {
			return nil, err
		}
	}
	if needQuorum {
		return o, env.govern(&h, o, pop)
	}
	if !h.adminSigners {
		for _, s := range tx.Body.Signers {
			if s != sender.PublicKey && (pop == nil || s != *pop) {
				return nil, reason.Errorf(reason.UnexpectedSigner, "signer %s", s.ID())
			}
		}
	}
	if h.roles != 0 && sender.Roles&h.roles == 0 {
		return nil, reason.Errorf(reason.NotPermitted, "%s needs one of the roles %v", tx.Body.Type, h.roles.Names())
	}
	return o, env.execute(&h, o)
}

// execute applies a handler and records its audit event.
func (env *blockEnv) execute(h *handler, o *op) error {
	if err := h.apply(o); err != nil {
		return err
	}
	if h.audited {
		o.emit(EventExecuted)
	}
	return nil
}

// emit appends an audit event describing o.
func (o *op) emit(kind EventKind) {
	id := o.id
	o.out.events = append(o.out.events, AuditEvent{
		Kind: kind, Time: o.env.time, Height: o.env.height, Actor: o.sender.Address, Type: o.txType,
		Tx: &id, Record: o.record, Grant: o.grant, Target: o.target, Outcome: reason.OK, Note: o.note,
	})
}

// filterBody applies the content-filter rules that concern the body and
// entity: blocked senders and record types, size limits and keywords in
// plaintext fields. Governance transactions are exempt so that the rules
// can always be repaired; supervision transactions are exempt from the
// keyword check because a mask reason may need to quote what it masks.
func (env *blockEnv) filterBody(tx *ledger.Transaction, body txs.Body) error {
	r := env.filter
	fam := tx.Body.Type >> 8
	if fam == ledger.TxNodeAdd>>8 {
		return nil
	}
	e := &tx.Body.Entity
	if r.SenderBlocked(e.Sender) {
		return reason.Errorf(reason.FilterSender, "sender %s is blocked", e.Sender)
	}
	if r.MaxDataBytes != 0 && len(e.Data) > int(r.MaxDataBytes) {
		return reason.Errorf(reason.FilterSize, "data of %d bytes exceeds the rule's %d", len(e.Data), r.MaxDataBytes)
	}
	if r.MaxMemoBytes != 0 && len(e.Memo) > int(r.MaxMemoBytes) {
		return reason.Errorf(reason.FilterSize, "memo of %d bytes exceeds the rule's %d", len(e.Memo), r.MaxMemoBytes)
	}
	var class string
	switch b := body.(type) {
	case *txs.CertIssue:
		class = b.Kind
	default:
		if rp := recordBody(body); rp != nil {
			class = rp.RecordType
		}
	}
	if class != "" && r.RecordTypeBlocked(class) {
		return reason.Errorf(reason.FilterRecordType, "record type %q is blocked", class)
	}
	if fam == ledger.TxRecordMask>>8 {
		return nil
	}
	if k := r.MatchText(e.Memo); k != "" {
		return reason.Errorf(reason.FilterKeyword, "memo contains the blocked keyword %q", k)
	}
	for _, s := range body.Text() {
		if k := r.MatchText(s); k != "" {
			return reason.Errorf(reason.FilterKeyword, "a text field contains the blocked keyword %q", k)
		}
	}
	return nil
}

// approvers returns the administrator accounts behind signers (skipping
// skip), in ascending address order. Every other signer must be the
// current key of an unfrozen administrator.
func approvers(st View, signers []ledger.PublicKeyBytes, skip *ledger.PublicKeyBytes) ([]ledger.Address, error) {
	out := make([]ledger.Address, 0, len(signers))
	for _, s := range signers {
		if skip != nil && s == *skip {
			continue
		}
		acct, err := accountByKey(st, s)
		if err != nil {
			return nil, err
		}
		if acct == nil || !acct.Roles.Has(ledger.RoleAdmin) {
			return nil, reason.Errorf(reason.NotAdmin, "signer %s is not an administrator", s.ID())
		}
		if acct.Frozen {
			return nil, reason.Errorf(reason.SignerFrozen, "administrator %s is frozen", acct.Address)
		}
		out = append(out, acct.Address)
	}
	slices.SortFunc(out, compareAddr)
	return slices.Compact(out), nil
}

func compareAddr(a, b ledger.Address) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// govern handles an action that needs an administrator quorum: it
// executes now if the transaction's own signers reach the threshold, and
// otherwise stores a proposal that gov.approve transactions complete.
func (env *blockEnv) govern(h *handler, o *op, pop *ledger.PublicKeyBytes) error {
	if !o.sender.Roles.Has(ledger.RoleAdmin) {
		return reason.Errorf(reason.GovernanceOnly, "%s needs an administrator quorum; the sender is not an administrator", o.txType)
	}
	approvals, err := approvers(o.st, o.signers, pop)
	if err != nil {
		return err
	}
	if uint32(len(approvals)) >= env.params.GovThreshold {
		if err := h.apply(o); err != nil {
			return err
		}
		o.note = fmt.Sprintf("approved by %d of threshold %d; %s", len(approvals), env.params.GovThreshold, o.note)
		o.emit(EventExecuted)
		return nil
	}
	// Try the action now, so that a proposal that could not execute is
	// refused at once rather than after its approvals.
	trial := *o
	trial.st = NewOverlay(o.st)
	trial.out = &txOut{}
	if err := h.apply(&trial); err != nil {
		return err
	}
	o.target, o.record, o.grant = trial.target, trial.record, trial.grant
	p := Proposal{
		ID: o.id, Type: o.txType, Data: o.data, Sender: o.sender.Address, Recipient: o.recipient,
		Approvals: approvals, Height: env.height, Time: env.time, Expires: env.time + ProposalLifetimeMs,
	}
	if err := putObj(o.st, proposalKey(p.ID), &p); err != nil {
		return err
	}
	o.st.Put(expiryKey(p.Expires, p.ID), present)
	o.note = fmt.Sprintf("%d of %d approvals", len(approvals), env.params.GovThreshold)
	o.emit(EventProposed)
	return nil
}

// clampAdd returns a+b saturated to the int64 range.
func clampAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
