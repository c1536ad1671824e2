package node

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

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
	if _, err := a.store.TxLocation(tx.ID()); err == nil {
		return reason.New(reason.Duplicate, "the transaction is in a committed block")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	c, err := a.current()
	if err != nil {
		return err
	}
	return c.Check(tx)
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
