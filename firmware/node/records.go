package node

import (
	"errors"
	"fmt"

	"hallmark/consensus"
	"hallmark/firmware/blockrec"
	"hallmark/storage"
)

// readRecord returns the record stored with the block at height, or nil
// if none was (genesis).
func readRecord(st *storage.Store, height uint64) (*blockrec.Record, error) {
	b, err := st.CommitCert(height)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return blockrec.Decode(b)
}

// epochLookup finds the configuration of any epoch from the store: an
// epoch's root is the last block of the epoch before, found by a binary
// search over header epochs (they never decrease with height), and its
// record carries the configuration it started.
type epochLookup struct {
	st    *storage.Store
	first consensus.EpochConfig // epoch 1, from genesis
}

// root returns the height of the last block before epoch e's first
// block, given the committed tip.
func (l *epochLookup) root(e uint64, tip uint64) (uint64, error) {
	lo, hi := uint64(1), tip+1 // find the first height with Epoch >= e in [1, tip]
	for lo < hi {
		mid := lo + (hi-lo)/2
		h, err := l.st.Header(mid)
		if err != nil {
			return 0, err
		}
		if h.Epoch >= e {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo - 1, nil
}

// config returns epoch e's configuration and its root header.
func (l *epochLookup) config(e uint64) (consensus.EpochConfig, *storage.StoredHeader, error) {
	tip, ok := l.st.Tip()
	if !ok {
		return consensus.EpochConfig{}, nil, errors.New("node: empty store")
	}
	if e <= 1 {
		h, err := l.st.Header(0)
		return l.first, h, err
	}
	r, err := l.root(e, tip.Height)
	if err != nil {
		return consensus.EpochConfig{}, nil, err
	}
	if r == 0 {
		return consensus.EpochConfig{}, nil, fmt.Errorf("node: epoch %d has no root block", e)
	}
	rec, err := readRecord(l.st, r)
	if err != nil {
		return consensus.EpochConfig{}, nil, err
	}
	if rec == nil || rec.Next == nil || rec.Next.Validators.Epoch != e {
		return consensus.EpochConfig{}, nil, fmt.Errorf("node: block %d does not record the start of epoch %d", r, e)
	}
	h, err := l.st.Header(r)
	if err != nil {
		return consensus.EpochConfig{}, nil, err
	}
	return rec.Next.Config(), h, nil
}
