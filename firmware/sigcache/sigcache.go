// Package sigcache remembers which transactions this node has verified, so
// that each transaction costs one set of SM2 verifications per node however
// often it is seen: from a kiosk, over HTTP, gossiped by a peer, in a
// proposal, in the leader's own block, at execution.
//
// An entry is keyed by the transaction id and its signatures, not the id
// alone: the id covers the body but not the signatures, and a relay could
// pass on a transaction with a signature altered. The cache is bounded: it
// keeps two generations and drops the older when the newer fills, so the
// most recently verified transactions are remembered.
package sigcache

import (
	"runtime"
	"sync"
	"sync/atomic"

	"hallmark/gm"
	"hallmark/ledger"
)

// Cache is a bounded set of verified transactions. It is safe for
// concurrent use.
type Cache struct {
	mu       sync.Mutex
	cur, old map[gm.Digest]struct{}
	gen      int // entries per generation

	verified atomic.Uint64 // transactions verified with SM2
	failed   atomic.Uint64 // of which failed
	hits     atomic.Uint64 // checks answered from the cache
}

// New returns a cache that remembers at least capacity/2 and at most
// capacity transactions.
func New(capacity int) *Cache {
	gen := max(capacity/2, 1)
	return &Cache{cur: make(map[gm.Digest]struct{}, gen), old: map[gm.Digest]struct{}{}, gen: gen}
}

// Key identifies a transaction with its signatures.
func Key(id ledger.TxID, sigs []gm.Signature) gm.Digest {
	parts := make([][]byte, 0, 1+len(sigs))
	parts = append(parts, id[:])
	for i := range sigs {
		parts = append(parts, sigs[i][:])
	}
	return gm.SM3Concat(parts...)
}

// KeyOf is Key for tx: its signed digest, which a decoded transaction
// computes once however often the node asks.
func KeyOf(tx *ledger.Transaction) gm.Digest { return tx.SignedDigest() }

// Has reports whether tx, with exactly these signatures, was verified.
func (c *Cache) Has(tx *ledger.Transaction) bool { return c.has(KeyOf(tx)) }

func (c *Cache) has(k gm.Digest) bool {
	c.mu.Lock()
	_, ok := c.cur[k]
	if !ok {
		_, ok = c.old[k]
	}
	c.mu.Unlock()
	return ok
}

// Add records tx as verified; the caller has checked its signatures.
func (c *Cache) Add(tx *ledger.Transaction) { c.add(KeyOf(tx)) }

func (c *Cache) add(k gm.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[k]; ok {
		return
	}
	if len(c.cur) >= c.gen {
		c.old, c.cur = c.cur, make(map[gm.Digest]struct{}, c.gen)
	}
	c.cur[k] = struct{}{}
}

// Check verifies tx's signatures unless the cache says they were verified,
// and remembers a success. It gives the same verdict as
// ledger.Transaction.VerifySignatures, which makes it fit
// app.WithSignatureCheck.
func (c *Cache) Check(tx *ledger.Transaction) error {
	k := KeyOf(tx)
	if c.has(k) {
		c.hits.Add(1)
		return nil
	}
	c.verified.Add(1)
	if err := tx.VerifySignatures(); err != nil {
		c.failed.Add(1)
		return err
	}
	c.add(k)
	return nil
}

// CheckAll checks txs on up to workers goroutines (0: one per core) and
// returns one error per transaction (nil for a good one).
func (c *Cache) CheckAll(txs []*ledger.Transaction, workers int) []error {
	errs := make([]error, len(txs))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(txs))
	if workers <= 1 {
		for i, tx := range txs {
			errs[i] = c.Check(tx)
		}
		return errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(txs) {
					return
				}
				errs[i] = c.Check(txs[i])
			}
		})
	}
	wg.Wait()
	return errs
}

// Stats are the cache's counters.
type Stats struct {
	Verified uint64 // transactions whose signatures were verified with SM2
	Failed   uint64 // of which at least one signature failed
	Hits     uint64 // checks answered from the cache
	Size     int    // transactions remembered now
}

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	size := len(c.cur) + len(c.old)
	c.mu.Unlock()
	return Stats{Verified: c.verified.Load(), Failed: c.failed.Load(), Hits: c.hits.Load(), Size: size}
}
