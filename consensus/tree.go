package consensus

import (
	"bytes"
	"slices"

	"hallmark/ledger"
)

type validity int

const (
	unvalidated validity = iota // parent not validated yet
	validating                  // ValidateBlock sent
	valid
)

// node is a block in the tree of uncommitted blocks, or the committed root.
type node struct {
	id     ledger.BlockID
	header *ledger.Header
	block  *ledger.Block // nil for a root known by header only
	parent *node
	// round is the block's round in the current epoch: its header's
	// round, or 0 for the epoch's root.
	round    uint64
	justify  *QC // QC on the parent; nil for the root and synced blocks
	tc       *TC // the proposal's TC, if any
	state    validity
	reconfig *EpochConfig
	// suffix is the number of blocks between this one and an
	// uncommitted epoch-ending ancestor (0: none).
	suffix   int
	proposal bool // arrived as a verified proposal of its round
	// kept: this node's own proposal, stored with it (so its vote need
	// not store the block again).
	kept     bool
	children []*node
}

// ref returns the node's block reference.
func (n *node) ref() BlockRef {
	return BlockRef{ID: n.id, Height: n.header.Height, Timestamp: n.header.Timestamp}
}

// endsEpochBelow reports whether this node or an uncommitted ancestor ends
// the epoch, so that children must be empty.
func (n *node) endsEpochBelow() bool { return n.reconfig != nil || n.suffix > 0 }

// orphan is a block waiting for its parent.
type orphan struct {
	block    *ledger.Block
	id       ledger.BlockID
	justify  *QC
	tc       *TC
	proposal bool
}

const (
	maxTreeBlocks = 2048
	maxOrphans    = 256
)

// blockTree holds the committed root and every known block descending from
// it.
type blockTree struct {
	root    *node
	nodes   map[ledger.BlockID]*node
	orphans map[ledger.BlockID][]orphan // by parent id
	norphan int
}

func newTree(root *node) *blockTree {
	root.state = valid
	return &blockTree{
		root:    root,
		nodes:   map[ledger.BlockID]*node{root.id: root},
		orphans: make(map[ledger.BlockID][]orphan),
	}
}

func (t *blockTree) get(id ledger.BlockID) *node { return t.nodes[id] }

// add attaches a block under its parent, which must be in the tree.
func (t *blockTree) add(parent *node, b *ledger.Block, id ledger.BlockID, justify *QC, tc *TC) *node {
	n := &node{id: id, header: &b.Header, block: b, parent: parent, round: b.Header.Round, justify: justify, tc: tc}
	parent.children = append(parent.children, n)
	t.nodes[id] = n
	return n
}

func (t *blockTree) addOrphan(o orphan) bool {
	if t.norphan >= maxOrphans {
		return false
	}
	for _, x := range t.orphans[o.block.Header.PrevHash] {
		if x.id == o.id {
			return true
		}
	}
	t.orphans[o.block.Header.PrevHash] = append(t.orphans[o.block.Header.PrevHash], o)
	t.norphan++
	return true
}

func (t *blockTree) takeOrphans(parent ledger.BlockID) []orphan {
	os := t.orphans[parent]
	if len(os) > 0 {
		delete(t.orphans, parent)
		t.norphan -= len(os)
	}
	return os
}

// remove drops n and every block descending from it.
func (t *blockTree) remove(n *node) {
	if n == t.root {
		return
	}
	if p := n.parent; p != nil {
		for i, ch := range p.children {
			if ch == n {
				p.children = append(p.children[:i:i], p.children[i+1:]...)
				break
			}
		}
	}
	var drop func(*node)
	drop = func(x *node) {
		delete(t.nodes, x.id)
		for _, ch := range x.children {
			drop(ch)
		}
	}
	drop(n)
}

// lowestOrphan returns the orphan with the lowest height (ties broken by
// id), whose parent is the most useful block to fetch.
func (t *blockTree) lowestOrphan() *orphan {
	var best *orphan
	for _, os := range t.orphans {
		for i := range os {
			o := &os[i]
			if best == nil || o.block.Header.Height < best.block.Header.Height ||
				(o.block.Header.Height == best.block.Header.Height && bytes.Compare(o.id[:], best.id[:]) < 0) {
				best = o
			}
		}
	}
	return best
}

// pathFrom returns the blocks from just above the root up to n, oldest
// first, or nil if n does not descend from the root.
func (t *blockTree) pathFrom(n *node) []*node {
	var path []*node
	for ; n != nil && n != t.root; n = n.parent {
		path = append(path, n)
	}
	if n == nil {
		return nil
	}
	slices.Reverse(path)
	return path
}

// advanceRoot makes n the root, drops every block that does not descend
// from it and returns the ids dropped (excluding the blocks on the path
// from the old root, which committed), in a deterministic order.
func (t *blockTree) advanceRoot(n *node, committed []*node) []ledger.BlockID {
	keep := make(map[ledger.BlockID]bool, len(t.nodes))
	var walk func(*node)
	walk = func(x *node) {
		keep[x.id] = true
		for _, c := range x.children {
			walk(c)
		}
	}
	walk(n)
	done := make(map[ledger.BlockID]bool, len(committed))
	for _, c := range committed {
		done[c.id] = true
	}
	var dropped []*node
	for id, x := range t.nodes {
		if !keep[id] {
			delete(t.nodes, id)
			if !done[id] && x != t.root {
				dropped = append(dropped, x)
			}
		}
	}
	n.parent = nil
	t.root = n
	// Orphans at or below the new root's height can never attach.
	for pid, os := range t.orphans {
		kept := os[:0]
		for _, o := range os {
			if o.block.Header.Height > n.header.Height+1 || (o.block.Header.Height == n.header.Height+1 && pid == n.id) {
				kept = append(kept, o)
			}
		}
		t.norphan -= len(os) - len(kept)
		if len(kept) == 0 {
			delete(t.orphans, pid)
		} else {
			t.orphans[pid] = kept
		}
	}
	return sortedIDs(dropped)
}

// reset makes n the only block in the tree (an epoch change) and returns
// the ids of every other block, in a deterministic order.
func (t *blockTree) reset(n *node) []ledger.BlockID {
	var dropped []*node
	for id, x := range t.nodes {
		if id != n.id && x != t.root {
			dropped = append(dropped, x)
		}
	}
	n.parent, n.children, n.round, n.state = nil, nil, 0, valid
	n.reconfig, n.suffix = nil, 0
	t.root = n
	t.nodes = map[ledger.BlockID]*node{n.id: n}
	clear(t.orphans)
	t.norphan = 0
	return sortedIDs(dropped)
}

func sortedIDs(ns []*node) []ledger.BlockID {
	slices.SortFunc(ns, func(a, b *node) int {
		if a.header.Height != b.header.Height {
			if a.header.Height < b.header.Height {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	ids := make([]ledger.BlockID, len(ns))
	for i, n := range ns {
		ids[i] = n.id
	}
	return ids
}
