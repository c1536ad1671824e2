package main

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
)

// Buckets of hallmark's main store (storage/layout.go). Only those a
// record.put block touches are written; the others exist so that the bbolt
// file has the same shape.
const (
	bucketBlocks = iota
	bucketBlockIDs
	bucketShards
	bucketBodies
	bucketTxs
	bucketState
	bucketCerts
	numWritten
)

var bucketNames = [...][]byte{
	bucketBlocks:   []byte("blocks"),
	bucketBlockIDs: []byte("block_ids"),
	bucketShards:   []byte("shards"),
	bucketBodies:   []byte("bodies"),
	bucketTxs:      []byte("txs"),
	bucketState:    []byte("state"),
	bucketCerts:    []byte("certs"),
}

// otherBuckets are created empty, as storage.Open does.
var otherBuckets = [][]byte{
	[]byte("meta"), []byte("payloads"), []byte("masks"), []byte("erase_pending"),
	[]byte("safety"), []byte("audit"), []byte("audit_time"), []byte("audit_seg"),
}

// op is one write of a block commit.
type op struct {
	bucket int
	key    []byte
	val    []byte // nil with del
	del    bool
	append bool // key is a height: bbolt FillPercent 1.0
}

// block is everything one committed block writes, in the order
// storage.(*Store).putBlock writes it.
type block struct {
	height uint64
	txs    int
	// ops is hallmark's layout: random tx ids and record ids as keys.
	ops []op
	// seqOps is the same data with the three per-transaction index keys
	// (txs, r/, s/) replaced by height ‖ position: time-ordered keys.
	seqOps []op
	// checks are the keys CommitBlocks reads before writing (duplicate
	// block id, duplicate transaction ids), in ops' key form.
	checks    []op
	seqChecks []op
	txIDs     [][32]byte
}

// workload generates hallmark's record.put blocks deterministically.
//
// Sizes follow storage.BenchmarkCommitRecords' blocks of app-executed
// record.puts (4 validators, this node keeps data shard 1): a block record
// of about 400 bytes, a body of about 350 bytes per transaction stored as
// SM3 ‖ body, the node's shard (half the body plus a 2-level Merkle proof),
// a certificate of about 300 bytes and the block id → height entry; per
// transaction a txs index entry (32-byte id → 12 bytes), the record
// r/<id> (about 250 bytes), the subject index s/<subject><id> (1 byte)
// and the replay marker x/<timestamp><id> (8 bytes), every state value
// behind the 8-byte height of its write; per block the touched sender
// accounts a/<address> (about 100 bytes; a block's write set has one
// write per key) and m/tip. Once more than seenWindow markers exist, the
// oldest are deleted (the app's housekeeping), with m/horizon. Bodies
// older than bodyWindow blocks are deleted (storage's pruning).
type workload struct {
	rng        *rand.ChaCha8
	pick       *rand.Rand
	height     uint64
	seq        uint64
	time       uint64 // ms; one transaction per ms
	subjects   [][32]byte
	senders    [][32]byte
	seen       [][]byte // live x/ keys, oldest first
	seenHead   int
	seenWindow int
	bodyWindow uint64
	bodyPerTx  []byte // compressible part of a body (keys, tags, chain id)
	recordTmpl []byte
}

const (
	blockRecordBytes = 400
	bodyBytesPerTx   = 350
	certBytes        = 300
	recordBytes      = 250
	accountBytes     = 100
	shardProofBytes  = 32 * 2 // log2(4 validators) Merkle levels
	shardHeaderBytes = 16
)

func newWorkload(seed uint64, subjects, senders, seenWindow int, bodyWindow uint64) *workload {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	w := &workload{
		rng:        rand.NewChaCha8(s),
		pick:       rand.New(rand.NewPCG(seed, 1)),
		time:       1_700_000_000_000,
		seenWindow: seenWindow,
		bodyWindow: bodyWindow,
	}
	w.subjects = make([][32]byte, subjects)
	for i := range w.subjects {
		w.fill(w.subjects[i][:])
	}
	w.senders = make([][32]byte, senders)
	for i := range w.senders {
		w.fill(w.senders[i][:])
	}
	// About 60 % of a transaction's encoding repeats from one transaction
	// to the next (signer key, chain id, type, CBOR tags, record type); the
	// rest is a signature, digests, nonce and timestamp.
	w.bodyPerTx = bytes.Repeat([]byte("hallmark-chain/record.put/customs.declaration/"), 5)[:bodyBytesPerTx-140]
	w.recordTmpl = bytes.Repeat([]byte("customs.declaration/kind=digest/readers=[]/"), 4)[:recordBytes-96]
	return w
}

func (w *workload) fill(b []byte) { _, _ = w.rng.Read(b) }

func (w *workload) random(n int) []byte {
	b := make([]byte, n)
	w.fill(b)
	return b
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func stateValue(height uint64, v []byte) []byte {
	return append(be64(height), v...)
}

// next returns the next block of n transactions.
func (w *workload) next(n int) *block {
	h := w.height
	w.height++
	b := &block{height: h, txs: n, txIDs: make([][32]byte, n)}
	hk := be64(h)

	var id [32]byte
	w.fill(id[:])
	body := make([]byte, 32, 32+n*bodyBytesPerTx)
	w.fill(body) // SM3(body)
	for range n {
		body = append(body, w.bodyPerTx...)
		body = append(body, w.random(140)...)
	}
	shard := make([]byte, 0, shardHeaderBytes+len(body)/2+shardProofBytes)
	shard = append(shard, w.random(shardHeaderBytes)...)
	shard = append(shard, body[32:32+(len(body)-32)/2]...)
	shard = append(shard, w.random(shardProofBytes)...)

	head := []op{
		{bucket: bucketBlocks, key: hk, val: w.random(blockRecordBytes), append: true},
		{bucket: bucketBlockIDs, key: id[:], val: hk},
		{bucket: bucketShards, key: hk, val: shard, append: true},
		{bucket: bucketBodies, key: hk, val: body, append: true},
	}
	b.checks = append(b.checks, op{bucket: bucketBlockIDs, key: id[:]})
	b.seqChecks = append(b.seqChecks, op{bucket: bucketBlockIDs, key: id[:]})
	b.ops = append(b.ops, head...)
	b.seqOps = append(b.seqOps, head...)

	var state, seqState []op
	touched := make(map[int]bool)
	for i := range n {
		w.seq++
		w.time++
		var tid [32]byte
		w.fill(tid[:])
		b.txIDs[i] = tid
		pos := binary.BigEndian.AppendUint32(be64(h), uint32(i))
		subject := w.subjects[w.pick.IntN(len(w.subjects))]
		touched[w.pick.IntN(len(w.senders))] = true

		b.ops = append(b.ops, op{bucket: bucketTxs, key: tid[:], val: pos})
		b.checks = append(b.checks, op{bucket: bucketTxs, key: tid[:]})
		b.seqOps = append(b.seqOps, op{bucket: bucketTxs, key: pos, val: tid[:], append: true})
		b.seqChecks = append(b.seqChecks, op{bucket: bucketTxs, key: pos})

		record := make([]byte, 0, recordBytes)
		record = append(record, tid[:]...)       // record id
		record = append(record, w.random(32)...) // document digest
		record = append(record, subject[:]...)   // subject
		record = append(record, w.recordTmpl...) // type, owner, kind, height, time
		rv := stateValue(h, record)
		sv := stateValue(h, []byte{1})
		seenKey := append(append([]byte("x/"), be64(w.time)...), tid[:]...)
		seenVal := stateValue(h, hk)

		state = append(state,
			op{bucket: bucketState, key: append([]byte("r/"), tid[:]...), val: rv},
			op{bucket: bucketState, key: append(append([]byte("s/"), subject[:]...), tid[:]...), val: sv},
			op{bucket: bucketState, key: seenKey, val: seenVal})
		seqState = append(seqState,
			op{bucket: bucketState, key: append([]byte("r/"), pos...), val: rv},
			op{bucket: bucketState, key: append(append([]byte("s/"), pos...), subject[:]...), val: sv},
			op{bucket: bucketState, key: seenKey, val: seenVal})
		w.seen = append(w.seen, seenKey)
	}
	var shared []op
	for i := range w.senders {
		if touched[i] {
			shared = append(shared, op{bucket: bucketState,
				key: append([]byte("a/"), w.senders[i][:]...), val: stateValue(h, w.random(accountBytes))})
		}
	}
	shared = append(shared, op{bucket: bucketState, key: []byte("m/tip"), val: stateValue(h, w.random(24))})
	if live := len(w.seen) - w.seenHead; live > w.seenWindow {
		for _, k := range w.seen[w.seenHead : w.seenHead+live-w.seenWindow] {
			shared = append(shared, op{bucket: bucketState, key: k, del: true})
		}
		w.seenHead += live - w.seenWindow
		shared = append(shared, op{bucket: bucketState, key: []byte("m/horizon"), val: stateValue(h, w.random(8))})
		if w.seenHead > len(w.seen)/2 {
			w.seen = slices.Clone(w.seen[w.seenHead:])
			w.seenHead = 0
		}
	}
	state = append(state, shared...)
	seqState = append(seqState, shared...)
	// A block's write set is canonical: sorted by key.
	byKey := func(a, b op) int { return bytes.Compare(a.key, b.key) }
	slices.SortFunc(state, byKey)
	slices.SortFunc(seqState, byKey)
	b.ops = append(b.ops, state...)
	b.seqOps = append(b.seqOps, seqState...)

	tail := []op{{bucket: bucketCerts, key: hk, val: w.random(certBytes), append: true}}
	if h >= w.bodyWindow {
		tail = append(tail, op{bucket: bucketBodies, key: be64(h - w.bodyWindow), del: true})
	}
	b.ops = append(b.ops, tail...)
	b.seqOps = append(b.seqOps, tail...)
	return b
}

// bytes returns the bytes a block puts (keys and values).
func (b *block) bytes() int {
	n := 0
	for _, o := range b.ops {
		n += len(o.key) + len(o.val)
	}
	return n
}
