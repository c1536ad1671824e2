package app

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"hallmark/ledger"
)

// View is read-only access to world state. Storage implements it over
// bbolt; the node runtime layers speculative blocks on it with [Overlay].
//
// Get returns nil for an absent key (the application never writes an
// empty value, so nil is unambiguous). The returned slice must stay valid
// and unchanged after the call; the application never modifies it.
//
// Scan calls fn for every key that starts with prefix, in ascending byte
// order of the keys, until fn returns false. The slices passed to fn are
// valid only during that call. fn must not call the View.
//
// An error from either method means the state could not be read (an I/O
// fault), never that a key is absent; execution stops and returns it.
type View interface {
	Get(key []byte) ([]byte, error)
	Scan(prefix []byte, fn func(key, value []byte) bool) error
}

// Overlay is a View with pending writes on top of a base View: reads see
// the writes, and the writes are kept in order. Execution stacks one per
// block and one per transaction; the node runtime can stack one per
// speculative block. An Overlay is not safe for concurrent use.
type Overlay struct {
	base   View
	vals   map[string]ledger.Write
	writes []ledger.Write
}

// NewOverlay returns an empty overlay on base.
func NewOverlay(base View) *Overlay {
	return &Overlay{base: base, vals: make(map[string]ledger.Write)}
}

// newOverlaySized is NewOverlay with room for about n writes.
func newOverlaySized(base View, n int) *Overlay {
	return &Overlay{base: base, vals: make(map[string]ledger.Write, n), writes: make([]ledger.Write, 0, n)}
}

// Get implements View.
func (o *Overlay) Get(key []byte) ([]byte, error) {
	if w, ok := o.vals[string(key)]; ok {
		if w.Delete {
			return nil, nil
		}
		return w.Value, nil
	}
	return o.base.Get(key)
}

// Scan implements View, merging the pending writes into the base's scan.
func (o *Overlay) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	var mine []string
	for k := range o.vals {
		if len(k) >= len(prefix) && k[:len(prefix)] == string(prefix) {
			mine = append(mine, k)
		}
	}
	if len(mine) == 0 {
		return o.base.Scan(prefix, fn)
	}
	sort.Strings(mine)
	i := 0
	stopped := false
	// emit sends the pending writes with keys below limit (all of them if
	// limit is nil) and reports whether to go on.
	emit := func(limit []byte) bool {
		for ; i < len(mine); i++ {
			k := mine[i]
			if limit != nil && k >= string(limit) {
				return true
			}
			if w := o.vals[k]; !w.Delete && !fn([]byte(k), w.Value) {
				stopped = true
				return false
			}
		}
		return true
	}
	err := o.base.Scan(prefix, func(key, value []byte) bool {
		if !emit(key) {
			return false
		}
		if i < len(mine) && mine[i] == string(key) { // a pending write shadows the base
			w := o.vals[mine[i]]
			i++
			if w.Delete {
				return true
			}
			value = w.Value
		}
		if !fn(key, value) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil || stopped {
		return err
	}
	emit(nil)
	return nil
}

// Put records a write of value (non-empty) to key.
func (o *Overlay) Put(key, value []byte) {
	w := ledger.Write{Key: slices.Clone(key), Value: value}
	o.vals[string(key)] = w
	o.writes = append(o.writes, w)
}

// Delete records the deletion of key.
func (o *Overlay) Delete(key []byte) {
	w := ledger.Write{Key: slices.Clone(key), Delete: true}
	o.vals[string(key)] = w
	o.writes = append(o.writes, w)
}

// Apply records writes in order.
func (o *Overlay) Apply(writes []ledger.Write) {
	for _, w := range writes {
		if w.Delete {
			o.Delete(w.Key)
		} else {
			o.Put(w.Key, w.Value)
		}
	}
}

// applyOwned is Apply for writes whose keys nobody else holds (those of a
// transaction's own overlay, which is dropped next): it takes the keys
// instead of copying them.
func (o *Overlay) applyOwned(writes []ledger.Write) {
	for _, w := range writes {
		if w.Delete {
			w.Value = nil
		}
		o.vals[string(w.Key)] = w
		o.writes = append(o.writes, w)
	}
}

// Writes returns the pending writes in the order they were made.
func (o *Overlay) Writes() []ledger.Write { return o.writes }

// canonicalWrites returns what ledger.CanonicalWriteSet returns for
// Writes(): the last write to each key, sorted by key. The overlay
// already keeps the last write per key, so this needs no second map.
func (o *Overlay) canonicalWrites() ([]ledger.Write, error) {
	out := make([]ledger.Write, 0, len(o.vals))
	for _, w := range o.vals {
		if len(w.Key) == 0 {
			return nil, fmt.Errorf("%w: state write with an empty key", ledger.ErrMalformed)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b ledger.Write) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// MemStore is world state held in memory: a reference View for tests,
// tools and development nodes. It is not safe for concurrent use.
type MemStore struct {
	vals map[string][]byte
	keys []string // sorted
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{vals: make(map[string][]byte)} }

// Get implements View.
func (m *MemStore) Get(key []byte) ([]byte, error) { return m.vals[string(key)], nil }

// Scan implements View.
func (m *MemStore) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	i := sort.SearchStrings(m.keys, string(prefix))
	for ; i < len(m.keys) && strings.HasPrefix(m.keys[i], string(prefix)); i++ {
		if !fn([]byte(m.keys[i]), m.vals[m.keys[i]]) {
			break
		}
	}
	return nil
}

// Apply applies writes in order.
func (m *MemStore) Apply(writes []ledger.Write) {
	for _, w := range writes {
		k := string(w.Key)
		_, exists := m.vals[k]
		i := sort.SearchStrings(m.keys, k)
		if w.Delete {
			if exists {
				delete(m.vals, k)
				m.keys = slices.Delete(m.keys, i, i+1)
			}
			continue
		}
		if !exists {
			m.keys = slices.Insert(m.keys, i, k)
		}
		m.vals[k] = slices.Clone(w.Value)
	}
}

// Len returns the number of keys.
func (m *MemStore) Len() int { return len(m.keys) }

// Each calls fn for every key and value in key order.
func (m *MemStore) Each(fn func(key, value []byte)) {
	for _, k := range m.keys {
		fn([]byte(k), m.vals[k])
	}
}
