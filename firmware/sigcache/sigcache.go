// Package sigcache remembers which transactions this node has verified, so
// that each transaction costs one set of SM2 verifications per node however
// often it is seen: from a kiosk, over HTTP, gossiped by a peer, in a
// proposal, in the leader's own block, at execution.
//
// An entry is the transaction id with a copy of its signatures, not the id
// alone: the id covers the body but not the signatures, and a relay could
// pass on a transaction with a signature altered. The cache is bounded: it
// keeps two generations and drops the older when the newer fills, so the
// most recently verified transactions are remembered.
package sigcache

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"hallmark/gm"
	"hallmark/ledger"
)

// Cache is a bounded set of verified transactions. It is safe for
// concurrent use.
type Cache struct {
	mu       sync.Mutex
	cur, old map[ledger.TxID]sigSet
	gen      int // entries per generation

	verified atomic.Uint64 // transactions verified with SM2
	failed   atomic.Uint64 // of which failed
	hits     atomic.Uint64 // checks answered from the cache
}

// sigSet is a copy of the signatures a transaction was verified with.
// Most transactions have one signer, which fits without an allocation.
type sigSet struct {
	n     int
	first gm.Signature
	rest  []gm.Signature
}

func sigSetOf(sigs []gm.Signature) sigSet {
	s := sigSet{n: len(sigs)}
	if len(sigs) > 0 {
		s.first = sigs[0]
		s.rest = slices.Clone(sigs[1:])
	}
	return s
}

func (s *sigSet) equal(sigs []gm.Signature) bool {
	return s.n == len(sigs) && (s.n == 0 || (s.first == sigs[0] && slices.Equal(s.rest, sigs[1:])))
}

// New returns a cache that remembers at least capacity/2 and at most
// capacity transactions.
func New(capacity int) *Cache {
	gen := max(capacity/2, 1)
	return &Cache{cur: make(map[ledger.TxID]sigSet, gen), old: map[ledger.TxID]sigSet{}, gen: gen}
}

// Has reports whether tx, with exactly these signatures, was verified.
func (c *Cache) Has(tx *ledger.Transaction) bool { return c.has(tx.ID(), tx.Signatures) }

// has compares the signatures byte for byte: an entry is the id and a
// copy of the signatures, not a digest of them, so a lookup costs no
// hashing.
func (c *Cache) has(id ledger.TxID, sigs []gm.Signature) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[id]; ok && s.equal(sigs) {
		return true
	}
	s, ok := c.old[id]
	return ok && s.equal(sigs)
}

// Add records tx as verified; the caller has checked its signatures.
func (c *Cache) Add(tx *ledger.Transaction) { c.add(tx.ID(), tx.Signatures) }

// add remembers id with sigs. The same id verified with other signatures
// before is forgotten (a transaction is normally seen with one set).
func (c *Cache) add(id ledger.TxID, sigs []gm.Signature) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[id]; ok && s.equal(sigs) {
		return
	}
	if _, ok := c.cur[id]; !ok && len(c.cur) >= c.gen {
		c.old, c.cur = c.cur, make(map[ledger.TxID]sigSet, c.gen)
	}
	c.cur[id] = sigSetOf(sigs)
}

// Check verifies tx's signatures unless the cache says they were verified,
// and remembers a success. It gives the same verdict as
// ledger.Transaction.VerifySignatures, which makes it fit
// app.WithSignatureCheck.
func (c *Cache) Check(tx *ledger.Transaction) error {
	id := tx.ID()
	if c.has(id, tx.Signatures) {
		c.hits.Add(1)
		return nil
	}
	c.verified.Add(1)
	if err := tx.VerifySignatures(); err != nil {
		c.failed.Add(1)
		return err
	}
	c.add(id, tx.Signatures)
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
