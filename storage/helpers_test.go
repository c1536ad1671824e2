package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

// chain builds a valid chain of batches: sealed blocks with shard and
// state roots filled in, state writes, and optional payloads.
type chain struct {
	t         testing.TB
	key       *gm.PrivateKey
	n         int // validators
	prevID    ledger.BlockID
	stateRoot gm.Digest
	next      uint64 // height of the next block
	nonce     uint64
	rng       *rand.Rand
}

func newChain(t testing.TB, n int) *chain {
	t.Helper()
	return &chain{
		t: t, key: ledgertest.Key(t), n: n,
		stateRoot: ledger.GenesisStateRoot(ledgertest.ChainID),
		rng:       rand.New(rand.NewPCG(uint64(n), 42)),
	}
}

// blockSpec shapes one block.
type blockSpec struct {
	txs      int
	dataSize int
	payloads [][]byte // one transaction each, in addition to txs
}

func (c *chain) randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(c.rng.Uint32())
	}
	return b
}

// block returns the next batch (ShardIndex 0; callers set their own).
func (c *chain) block(spec blockSpec) *storage.Batch {
	c.t.Helper()
	var txs []ledger.Transaction
	for range spec.txs {
		c.nonce++
		txs = append(txs, ledgertest.Tx(c.t, c.key, ledgertest.TxOptions{Nonce: c.nonce, Data: c.randomBytes(spec.dataSize)}))
	}
	for _, p := range spec.payloads {
		c.nonce++
		txs = append(txs, ledgertest.Tx(c.t, c.key, ledgertest.TxOptions{Nonce: c.nonce, Payload: p}))
	}
	return c.seal(txs)
}

// seal turns txs into the next block with matching roots and writes.
func (c *chain) seal(txs []ledger.Transaction) *storage.Batch {
	c.t.Helper()
	b := ledgertest.Block(c.t, c.next, c.prevID, txs)
	body, err := ledger.EncodeBody(txs)
	if err != nil {
		c.t.Fatal(err)
	}
	if b.Header.ShardRoot, err = erasure.Root(body, c.n); err != nil {
		c.t.Fatal(err)
	}
	writes := []ledger.Write{
		{Key: []byte("height"), Value: binary.BigEndian.AppendUint64(nil, c.next)},
		{Key: fmt.Appendf(nil, "prev/%08d", c.next), Value: bytes.Clone(c.prevID[:])},
	}
	for i := range txs {
		id := txs[i].ID()
		writes = append(writes, ledger.Write{Key: fmt.Appendf(nil, "tx/%x", id[:]), Value: fmt.Appendf(nil, "%d/%d", c.next, i)})
	}
	if b.Header.StateRoot, err = ledger.NextStateRoot(c.stateRoot, writes); err != nil {
		c.t.Fatal(err)
	}
	c.stateRoot = b.Header.StateRoot
	c.prevID = b.ID()
	c.next++
	return &storage.Batch{
		Block:      b,
		Validators: c.n,
		Writes:     writes,
		Cert:       fmt.Appendf(nil, "qc-for-%d", b.Header.Height),
	}
}

// forNode returns a copy of batch for the validator at index.
func forNode(b *storage.Batch, index int) *storage.Batch {
	c := *b
	c.ShardIndex = index
	return &c
}

func openStore(t testing.TB, dir string, o storage.Options) *storage.Store {
	t.Helper()
	if o.ChainID == "" {
		o.ChainID = ledgertest.ChainID
	}
	s, err := storage.Open(dir, o)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

func commit(t testing.TB, s *storage.Store, b *storage.Batch) {
	t.Helper()
	if err := s.CommitBlock(context.Background(), b); err != nil {
		t.Fatalf("commit block %d: %v", b.Block.Header.Height, err)
	}
}

// cluster is n stores, one per validator, fed the same blocks.
type cluster struct {
	t      testing.TB
	chain  *chain
	dirs   []string
	stores []*storage.Store
	opts   storage.Options
}

func newCluster(t testing.TB, n int, o storage.Options) *cluster {
	t.Helper()
	c := &cluster{t: t, chain: newChain(t, n), opts: o}
	root := t.TempDir()
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		c.dirs = append(c.dirs, dir)
		c.stores = append(c.stores, openStore(t, dir, o))
	}
	t.Cleanup(func() {
		for _, s := range c.stores {
			if s != nil {
				s.Close()
			}
		}
	})
	return c
}

func (c *cluster) commit(spec blockSpec) *storage.Batch {
	c.t.Helper()
	b := c.chain.block(spec)
	for i, s := range c.stores {
		commit(c.t, s, forNode(b, i))
	}
	return b
}

func (c *cluster) reopen(i int) {
	c.t.Helper()
	if err := c.stores[i].Close(); err != nil {
		c.t.Fatal(err)
	}
	c.stores[i] = openStore(c.t, c.dirs[i], c.opts)
}

// fetcher serves shards from the other stores of a cluster, in process:
// the network layer's part, reduced to direct calls. Peers listed in
// corrupt serve shards with a flipped bit; peers in offline fail.
type fetcher struct {
	mu       sync.Mutex
	stores   []*storage.Store
	corrupt  map[int]bool
	offline  map[int]bool
	reported []int
	fetched  []int
}

func (c *cluster) fetcher() *fetcher {
	return &fetcher{stores: c.stores, corrupt: map[int]bool{}, offline: map[int]bool{}}
}

func (f *fetcher) FetchShard(ctx context.Context, req storage.ShardRequest) (*erasure.Shard, error) {
	f.mu.Lock()
	f.fetched = append(f.fetched, req.Index)
	off, bad := f.offline[req.Index], f.corrupt[req.Index]
	f.mu.Unlock()
	if off || req.Index >= len(f.stores) {
		return nil, fmt.Errorf("peer %d unreachable", req.Index)
	}
	sh, err := f.stores[req.Index].Shard(req.Height)
	if err != nil {
		return nil, err
	}
	if bad {
		sh.Data[len(sh.Data)/2] ^= 0x10
	}
	return sh, nil
}

func (f *fetcher) ReportBadShard(req storage.ShardRequest, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported = append(f.reported, req.Index)
}

func (f *fetcher) FetchPayload(ctx context.Context, d gm.Digest) ([]byte, error) {
	var errs []error
	for _, s := range f.stores {
		p, err := s.Payload(d)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// scanDir reads every regular file under dir and reports those that
// contain needle.
func scanDir(t testing.TB, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
