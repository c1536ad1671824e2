package exec

import (
	"bytes"
	"errors"
	"slices"
	"sort"

	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/storage"
)

// SnapshotView is an app.View over a storage snapshot. Values are copied,
// so they stay valid after the snapshot ends (execution may keep them in
// its output). Like the snapshot, it is for one goroutine.
//
// A snapshot never changes, so the view remembers the values it found:
// the keys a block or a batch of transactions reads again and again (the
// senders' accounts) cost one B+tree search and one copy per snapshot.
func SnapshotView(sn *storage.Snapshot) app.View { return &snapView{sn: sn} }

type snapView struct {
	sn    *storage.Snapshot
	found map[string][]byte
}

// snapMemoMax bounds what a snapshot view remembers.
const snapMemoMax = 1 << 14

func (v *snapView) Get(key []byte) ([]byte, error) {
	if val, ok := v.found[string(key)]; ok {
		return val, nil
	}
	val, _, err := v.sn.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	val = bytes.Clone(val)
	if v.found == nil {
		v.found = make(map[string][]byte)
	}
	if len(v.found) < snapMemoMax {
		v.found[string(key)] = val
	}
	return val, nil
}

func (v *snapView) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return v.sn.Scan(prefix, nil, func(k, val []byte, _ uint64) error {
		if !fn(k, val) {
			return storage.SkipRest
		}
		return nil
	})
}

// StoreView is an app.View over the committed state of a store, for reads
// that may run concurrently with commits (API queries, mempool admission):
// each Get and Scan sees one committed block, possibly a later one than
// the previous call.
func StoreView(st *storage.Store) app.View { return storeView{st} }

type storeView struct{ st *storage.Store }

func (v storeView) Get(key []byte) ([]byte, error) {
	val, _, err := v.st.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return val, err
}

func (v storeView) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return v.st.Scan(prefix, nil, func(k, val []byte, _ uint64) error {
		if !fn(k, val) {
			return storage.SkipRest
		}
		return nil
	})
}

// writeSet is one block's canonical writes (sorted by key, one per key),
// searchable by key.
type writeSet []ledger.Write

func (w writeSet) find(key []byte) (ledger.Write, bool) {
	i := sort.Search(len(w), func(i int) bool { return bytes.Compare(w[i].Key, key) >= 0 })
	if i < len(w) && bytes.Equal(w[i].Key, key) {
		return w[i], true
	}
	return ledger.Write{}, false
}

// withPrefix returns the writes whose keys start with prefix.
func (w writeSet) withPrefix(prefix []byte) writeSet {
	lo := sort.Search(len(w), func(i int) bool { return bytes.Compare(w[i].Key, prefix) >= 0 })
	hi := lo
	for hi < len(w) && bytes.HasPrefix(w[hi].Key, prefix) {
		hi++
	}
	return w[lo:hi]
}

// layeredView reads through the write sets of uncommitted blocks (newest
// first) to the committed state below them.
type layeredView struct {
	layers []writeSet // newest first
	base   app.View
}

func (v *layeredView) Get(key []byte) ([]byte, error) {
	for _, l := range v.layers {
		if w, ok := l.find(key); ok {
			if w.Delete {
				return nil, nil
			}
			return w.Value, nil
		}
	}
	return v.base.Get(key)
}

func (v *layeredView) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	// The layers' writes under prefix, newest winning, in key order.
	over := map[string]ledger.Write{}
	for i := len(v.layers) - 1; i >= 0; i-- {
		for _, w := range v.layers[i].withPrefix(prefix) {
			over[string(w.Key)] = w
		}
	}
	if len(over) == 0 {
		return v.base.Scan(prefix, fn)
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	next := 0
	stopped := false
	// emit sends the overrides that sort before limit (all when limit is
	// nil) and reports whether to go on.
	emit := func(limit []byte) bool {
		for next < len(keys) && (limit == nil || keys[next] < string(limit)) {
			w := over[keys[next]]
			next++
			if !w.Delete && !fn(w.Key, w.Value) {
				stopped = true
				return false
			}
		}
		return true
	}
	err := v.base.Scan(prefix, func(k, val []byte) bool {
		if !emit(k) {
			return false
		}
		if w, ok := over[string(k)]; ok {
			next++ // keys[next] is k
			if w.Delete {
				return true
			}
			if !fn(w.Key, w.Value) {
				stopped = true
				return false
			}
			return true
		}
		if !fn(k, val) {
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
