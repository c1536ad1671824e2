package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"hallmark/gm"
	"hallmark/ledger/internal/canon"
)

// Write is one change to world state: Value nil deletes Key.
type Write struct {
	Key   []byte `cbor:"1,keyasint"`
	Value []byte `cbor:"2,keyasint,omitempty"`
	// Delete distinguishes deleting a key from writing an empty value.
	Delete bool `cbor:"3,keyasint,omitempty"`
}

// stateDomain tags the state root chain.
const stateDomain = "hallmark/state/v1\x00"

// NextStateRoot returns the state root after applying writes to the state
// whose root is prev:
//
//	root' = SM3(domain ‖ prev ‖ SM3(canonical write set))
//
// where the write set is the writes sorted by key, the last write to a key
// winning. The root commits to the whole history of state changes: two
// nodes that applied the same blocks in the same order have the same root,
// and any difference in any write makes the roots differ from that block
// on. It does not support proofs of single keys (it is a hash chain, not a
// Merkle trie); the transaction root and inclusion proofs serve that need.
func NextStateRoot(prev gm.Digest, writes []Write) (gm.Digest, error) {
	set := writes
	if !isCanonicalWriteSet(writes) {
		var err error
		if set, err = CanonicalWriteSet(writes); err != nil {
			return gm.Digest{}, err
		}
	}
	ws := gm.SM3(appendWriteSet(make([]byte, 0, writeSetSize(set)), set))
	return gm.SM3Concat([]byte(stateDomain), prev[:], ws[:]), nil
}

// CanonicalWriteSet sorts writes by key and keeps the last write to each
// key. It refuses empty keys.
func CanonicalWriteSet(writes []Write) ([]Write, error) {
	if isCanonicalWriteSet(writes) {
		// Already sorted with one write per key (execution's output,
		// checked again by storage): the same set, without the map and
		// the sort.
		return slices.Clone(writes), nil
	}
	last := make(map[string]int, len(writes))
	for i, w := range writes {
		if len(w.Key) == 0 {
			return nil, fmt.Errorf("%w: state write with an empty key", ErrMalformed)
		}
		if w.Delete && w.Value != nil {
			return nil, fmt.Errorf("%w: state delete of %q carries a value", ErrMalformed, w.Key)
		}
		last[string(w.Key)] = i
	}
	out := make([]Write, 0, len(last))
	for _, i := range last {
		out = append(out, writes[i])
	}
	slices.SortFunc(out, func(a, b Write) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// GenesisStateRoot is the root of the empty state before genesis is applied.
func GenesisStateRoot(chainID string) gm.Digest {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(chainID)))
	return gm.SM3Concat([]byte(stateDomain), n[:], []byte(chainID))
}

// isCanonicalWriteSet reports whether writes is what CanonicalWriteSet
// returns for it: keys non-empty and strictly ascending, and no delete
// carrying a value.
func isCanonicalWriteSet(writes []Write) bool {
	for i := range writes {
		w := &writes[i]
		if len(w.Key) == 0 || (w.Delete && w.Value != nil) {
			return false
		}
		if i > 0 && bytes.Compare(writes[i-1].Key, w.Key) >= 0 {
			return false
		}
	}
	return true
}

// appendWriteSet appends the canonical encoding of writes (what Marshal
// writes for the slice, by reflection), as txcodec.go does for
// transactions; state_test.go checks the two agree.
func appendWriteSet(dst []byte, writes []Write) []byte {
	dst = canon.AppendHead(dst, canon.Array, uint64(len(writes)))
	for i := range writes {
		w := &writes[i]
		fields := uint64(1)
		if len(w.Value) > 0 {
			fields++
		}
		if w.Delete {
			fields++
		}
		dst = canon.AppendBytes(append(canon.AppendHead(dst, canon.Map, fields), 1), w.Key)
		if len(w.Value) > 0 {
			dst = canon.AppendBytes(append(dst, 2), w.Value)
		}
		if w.Delete {
			dst = append(dst, 3, canon.True)
		}
	}
	return dst
}

// writeSetSize bounds the encoded size of writes.
func writeSetSize(writes []Write) int {
	n := 9
	for i := range writes {
		n += 24 + len(writes[i].Key) + len(writes[i].Value)
	}
	return n
}
