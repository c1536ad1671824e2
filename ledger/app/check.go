package app

import (
	"fmt"
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/envelope"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// Checker checks transactions for admission against one state, without
// applying them: the mempool's check, and the leader's filter before it
// builds a block. It runs exactly the checks of execution — form,
// signatures, time window, replay, sender, content filter, roles, quorum
// and the type's stateful rules — on a scratch overlay that is thrown
// away, plus the payload checks that execution cannot make (see
// [CheckPayload]).
//
// A transaction that passes can still fail in a block, because the block
// may hold other transactions that change the state first (two transfers
// of the same balance) or a later state may differ.
//
// A Checker is safe for concurrent use if its View is.
type Checker struct {
	env  *blockEnv
	base *Overlay // view after the next block's housekeeping; read-only once built
}

// NewChecker returns a Checker for transactions that would go into the
// block after the one view reflects, with timestamp at (ms; the node's
// clock).
func (x *Executor) NewChecker(view View, at int64) (*Checker, error) {
	tip, err := getObj[Tip](view, []byte(keyTip))
	if err != nil {
		return nil, err
	}
	if tip == nil {
		return nil, ErrNoGenesis
	}
	env, err := x.loadEnv(view, tip.Height+1, at, 0)
	if err != nil {
		return nil, err
	}
	// The next block starts with its cleanup (forgetting old ids, dropping
	// expired proposals); check against the state it leaves.
	base := NewOverlay(view)
	if err := env.housekeeping(base, &Output{}); err != nil {
		return nil, err
	}
	return &Checker{env: env, base: base}, nil
}

// Check returns nil if tx would be accepted, a *reason.Error saying why
// not, or another error if state could not be read. A transaction that
// names a payload must carry it.
func (c *Checker) Check(tx *ledger.Transaction) error {
	st := NewOverlay(c.base)
	env := *c.env // a private copy
	id := tx.ID()
	body, err := env.admit(st, tx, id)
	if err != nil {
		return err
	}
	if _, err := env.dispatch(NewOverlay(st), tx, id, body); err != nil {
		return err
	}
	return CheckPayload(env.filter, tx, body)
}

// CheckTx is NewChecker(view, at).Check(tx) for a single transaction.
func (x *Executor) CheckTx(view View, tx *ledger.Transaction, at int64) error {
	c, err := x.NewChecker(view, at)
	if err != nil {
		return err
	}
	return c.Check(tx)
}

// CheckPayload applies the checks that need the payload bytes, which
// execution never sees (blocks are stored and replayed without payloads):
// a payload is attached exactly when the transaction names one, it hashes
// to the named digest, its size is the declared one and within the rule
// set's limit, a plaintext payload contains no blocked keyword, and
// an envelope is well formed and lists exactly the body's readers.
// body is the transaction's decoded body.
func CheckPayload(rules *txs.FilterRules, tx *ledger.Transaction, body txs.Body) error {
	rp := recordBody(body)
	if rp == nil || !rp.HasPayload() || tx.Body.PayloadDigest == nil {
		if tx.Payload != nil {
			return reason.New(reason.UnexpectedPayload, "a payload is attached to a transaction that names none")
		}
		return nil
	}
	if tx.Payload == nil {
		return reason.New(reason.PayloadMissing, "the payload named by the transaction is not attached")
	}
	if gm.SM3(tx.Payload) != *tx.Body.PayloadDigest {
		return reason.New(reason.PayloadMismatch, "the payload does not hash to the transaction's payload digest")
	}
	if uint64(len(tx.Payload)) != rp.Size {
		return reason.Errorf(reason.PayloadMismatch, "payload of %d bytes, body says %d", len(tx.Payload), rp.Size)
	}
	if rules.MaxPayloadBytes != 0 && len(tx.Payload) > int(rules.MaxPayloadBytes) {
		return reason.Errorf(reason.FilterSize, "payload of %d bytes exceeds the rule's %d", len(tx.Payload), rules.MaxPayloadBytes)
	}
	switch rp.Kind {
	case txs.PayloadPlain:
		if k := rules.MatchBytes(tx.Payload); k != "" {
			return reason.Errorf(reason.FilterKeyword, "payload contains the blocked keyword %q", k)
		}
	case txs.PayloadSealed:
		env, err := envelope.Decode(tx.Payload)
		if err != nil {
			return reason.New(reason.PayloadMismatch, err.Error())
		}
		if !slices.Equal(env.Readers(), rp.Readers) {
			return reason.New(reason.PayloadMismatch, "the envelope's readers differ from the record's")
		}
	}
	return nil
}

// CheckProposal checks what a voter must check in a proposed block
// besides executing it: every transaction that names a payload carries
// it, no other transaction carries one, and every payload passes [CheckPayload] under the content-filter
// rules of view (the parent's state). A leader runs it before proposing;
// a voter refuses a block that fails it. Committed blocks replayed
// during catch-up carry no payloads and skip this check.
func CheckProposal(view View, b *ledger.Block) error {
	rules, err := getFilter(view)
	if err != nil {
		return err
	}
	for i := range b.Txs {
		tx := &b.Txs[i]
		if tx.Body.PayloadDigest == nil && tx.Payload == nil {
			continue
		}
		body, err := txs.Decode(tx.Body.Type, tx.Body.Entity.Data)
		if err != nil {
			continue // the transaction fails in execution with bad-body
		}
		if err := CheckPayload(rules, tx, body); err != nil {
			return fmt.Errorf("transaction %d (%s): %w", i, tx.ID(), err)
		}
	}
	return nil
}
