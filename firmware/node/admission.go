package node

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"hallmark/firmware/exec"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/netstack/ingress"
	"hallmark/storage"
)

// admitter runs the ledger's admission checks for the mempool against
// committed state. It keeps one app.Checker and rebuilds it when a block
// commits or its clock reading gets old.
type admitter struct {
	x     *app.Executor
	view  app.View
	store *storage.Store
	now   func() time.Time

	mu      sync.Mutex
	checker *app.Checker
	tip     uint64
	built   time.Time
}

const checkerMaxAge = 500 * time.Millisecond

// Check implements the mempool's Admit.
func (a *admitter) Check(tx *ledger.Transaction) error {
	if err := notCommitted(a.store.TxLocation, tx); err != nil {
		return err
	}
	c, err := a.current()
	if err != nil {
		return err
	}
	return c.Check(tx)
}

// CheckAll implements the mempool's AdmitAll: Check for each transaction,
// all against one snapshot of committed state, so that a gossiped batch
// costs one read transaction instead of several per transaction.
func (a *admitter) CheckAll(txs []*ledger.Transaction) []error {
	errs := make([]error, len(txs))
	at := a.now().UnixMilli()
	err := a.store.View(func(sn *storage.Snapshot) error {
		c, err := a.x.NewChecker(exec.SnapshotView(sn), at)
		if err != nil {
			return fmt.Errorf("node: admission checker: %w", err)
		}
		for i, tx := range txs {
			if errs[i] = notCommitted(sn.TxLocation, tx); errs[i] == nil {
				errs[i] = c.Check(tx)
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// committedTxs reports for each id whether the store's transaction index
// holds it, in one read transaction.
func (n *Node) committedTxs(ids []ledger.TxID) []bool {
	out := make([]bool, len(ids))
	n.store.View(func(sn *storage.Snapshot) error {
		for i, id := range ids {
			_, err := sn.TxLocation(id)
			out[i] = err == nil
		}
		return nil
	})
	return out
}

// notCommitted refuses a transaction the transaction index already holds.
func notCommitted(locate func(ledger.TxID) (storage.TxLocation, error), tx *ledger.Transaction) error {
	if _, err := locate(tx.ID()); err == nil {
		return reason.New(reason.Duplicate, "the transaction is in a committed block")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

func (a *admitter) current() (*app.Checker, error) {
	tip, _ := a.store.Tip()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.checker != nil && a.tip == tip.Height && now.Sub(a.built) < checkerMaxAge {
		return a.checker, nil
	}
	c, err := a.x.NewChecker(a.view, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("node: admission checker: %w", err)
	}
	a.checker, a.tip, a.built = c, tip.Height, now
	return c, nil
}

var (
	prefixAccount = []byte("a/")
	prefixKey     = []byte("k/")
	keyFilter     = []byte("m/filter")
	keyParams     = []byte("m/params")
	keyValidators = []byte("m/validators")
)

func senderState(a *ledger.Account) ingress.SenderState {
	if a.Frozen {
		return ingress.Frozen
	}
	return ingress.Admitted
}

// loadAdmission fills the kiosk admission table (and through it the fast
// path's sender map) from every account in committed state.
func (n *Node) loadAdmission() error {
	count := 0
	err := n.store.Scan(prefixAccount, nil, func(_, v []byte, _ uint64) error {
		a, err := ledger.DecodeAccount(v)
		if err != nil {
			return fmt.Errorf("node: account in state: %w", err)
		}
		count++
		return n.admission.Set(a.PublicKey.ID(), senderState(a))
	})
	if err != nil {
		return err
	}
	n.log.Info("kiosk admission loaded", "accounts", count)
	return nil
}

// applyAdmission updates the admission table from a committed block's
// writes and returns the accounts whose state changed.
func (n *Node) applyAdmission(writes []ledger.Write) map[ledger.Address]bool {
	touched := map[ledger.Address]bool{}
	for _, w := range writes {
		switch {
		case bytes.HasPrefix(w.Key, prefixAccount) && len(w.Key) == len(prefixAccount)+32:
			var addr ledger.Address
			copy(addr[:], w.Key[len(prefixAccount):])
			touched[addr] = true
			if w.Delete {
				continue
			}
			a, err := ledger.DecodeAccount(w.Value)
			if err != nil {
				n.log.Error("committed account does not decode", "account", addr, "err", err)
				continue
			}
			if err := n.admission.Set(a.PublicKey.ID(), senderState(a)); err != nil {
				n.log.Warn("updating kiosk admission", "err", err)
			}
		case bytes.HasPrefix(w.Key, prefixKey) && len(w.Key) == len(prefixKey)+32 && w.Delete:
			// A key no longer names an account (rotated away).
			var id gm.KeyID
			copy(id[:], w.Key[len(prefixKey):])
			if err := n.admission.Set(id, ingress.NotAdmitted); err != nil {
				n.log.Warn("updating kiosk admission", "err", err)
			}
		}
	}
	return touched
}
