package ingress

import (
	"fmt"
	"sync"

	"hallmark/gm"
	"hallmark/netstack/kiosk"
	"hallmark/netstack/xdp"
)

// SenderState is what ledger state says of a sender key.
type SenderState uint8

// Sender states.
const (
	NotAdmitted SenderState = iota // unknown key, or its account lacks the right
	Admitted                       // may submit
	Frozen                         // its account is frozen
)

// Admission answers, from ledger state, whether a signing key may submit.
// The node runtime implements it (or feeds an [AdmissionTable]).
type Admission interface {
	SenderState(id gm.KeyID) SenderState
}

// AdmissionTable is an [Admission] the node runtime fills from committed
// state. It mirrors every change into the fast path's sender map, keyed by
// the 8-byte short id the datagram header carries.
//
// Several full keys may share a short id. The table then writes the most
// permissive state any of them has (admitted over frozen over absent), so
// the fast path can never drop a datagram that user space would accept;
// user space decides exactly, by full key id.
type AdmissionTable struct {
	mu      sync.Mutex
	byKey   map[gm.KeyID]SenderState
	byShort map[kiosk.ShortKeyID]map[gm.KeyID]struct{}
	filter  xdp.Filter
}

// NewAdmissionTable returns an empty table mirrored into filter (which may
// be nil when no fast path runs).
func NewAdmissionTable(filter xdp.Filter) *AdmissionTable {
	return &AdmissionTable{
		byKey:   make(map[gm.KeyID]SenderState),
		byShort: make(map[kiosk.ShortKeyID]map[gm.KeyID]struct{}),
		filter:  filter,
	}
}

// SenderState implements [Admission].
func (a *AdmissionTable) SenderState(id gm.KeyID) SenderState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byKey[id]
}

// Set records the state of key id; NotAdmitted removes it.
func (a *AdmissionTable) Set(id gm.KeyID, s SenderState) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	short := kiosk.ShortKeyID(id.Short())
	if s == NotAdmitted {
		delete(a.byKey, id)
		if set := a.byShort[short]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(a.byShort, short)
			}
		}
	} else {
		a.byKey[id] = s
		if a.byShort[short] == nil {
			a.byShort[short] = make(map[gm.KeyID]struct{})
		}
		a.byShort[short][id] = struct{}{}
	}
	return a.mirror(short)
}

// mirror writes the fast path's entry for one short id.
func (a *AdmissionTable) mirror(short kiosk.ShortKeyID) error {
	if a.filter == nil {
		return nil
	}
	best := NotAdmitted
	for id := range a.byShort[short] {
		switch a.byKey[id] {
		case Admitted:
			best = Admitted
		case Frozen:
			if best == NotAdmitted {
				best = Frozen
			}
		}
	}
	var err error
	switch best {
	case Admitted:
		err = a.filter.SetSender(short, xdp.SenderAdmitted)
	case Frozen:
		err = a.filter.SetSender(short, xdp.SenderFrozen)
	default:
		err = a.filter.DeleteSender(short)
	}
	if err != nil {
		return fmt.Errorf("ingress: mirroring sender %s into the fast path: %w", short, err)
	}
	return nil
}
