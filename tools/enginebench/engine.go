package main

import (
	"errors"
	"fmt"
	"sort"
)

// engine stores committed blocks durably. commit returns once the block
// is on stable storage.
type engine interface {
	// commit stores one block in one atomic, durable write.
	commit(b *block) error
	// lookup finds a transaction's index entry (by tx id, or for the
	// time-ordered layout by height ‖ position).
	lookup(key []byte) (bool, error)
	// syncs counts fsync/fdatasync calls since open, background ones
	// included.
	syncs() int64
	// pageWrites counts page writes (bbolt only; -1 otherwise).
	pageWrites() int64
	// settle waits for background work the commits started (flushes,
	// compactions) to finish.
	settle() error
	close() error
}

// engineSpec names an engine and how to open it in a directory.
type engineSpec struct {
	name string
	desc string
	open func(dir string) (engine, error)
	// seqKeys: the engine is fed the time-ordered layout.
	seqKeys bool
	// noIndex: the engine cannot look anything up.
	noIndex bool
}

var specs = map[string]engineSpec{
	"bbolt": {
		name: "bbolt", desc: "bbolt v1.5.0 as storage.Open configures it (random keys)",
		open: func(dir string) (engine, error) { return openBolt(dir, false) },
	},
	"bbolt-seq": {
		name: "bbolt-seq", desc: "bbolt, same options, txs/r/s keys = height‖position",
		open: func(dir string) (engine, error) { return openBolt(dir, true) }, seqKeys: true,
	},
	"pebble": {
		name: "pebble", desc: "pebble v2.1.7, one batch per block, Sync",
		open: openPebble,
	},
	"log": {
		name: "log", desc: "append-only log: one pwrite + one fdatasync per block",
		open: openLog, noIndex: true,
	},
}

func specNames() []string {
	var out []string
	for n := range specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var errDuplicate = errors.New("duplicate key")

func lookupSpec(name string) (engineSpec, error) {
	s, ok := specs[name]
	if !ok {
		return s, fmt.Errorf("unknown engine %q (have %v)", name, specNames())
	}
	return s, nil
}
