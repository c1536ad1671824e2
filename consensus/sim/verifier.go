package sim

import (
	"sync"

	"hallmark/gm"
)

// CachedVerifier verifies SM2 signatures with package gm and remembers
// each verdict by the SM3 of (key, signature, message). The simulator
// shares one between its nodes, as every node checks the same signatures:
// each distinct signature is still verified once, for real. It is safe for
// concurrent use and bounded in size.
type CachedVerifier struct {
	mu    sync.Mutex
	seen  map[gm.Digest]bool
	Calls int // verifications actually performed
}

const maxCached = 1 << 16

// NewCachedVerifier returns an empty cache.
func NewCachedVerifier() *CachedVerifier {
	return &CachedVerifier{seen: make(map[gm.Digest]bool)}
}

// Verify reports whether sig is key's signature of msg.
func (c *CachedVerifier) Verify(key *gm.PublicKey, msg []byte, sig gm.Signature) bool {
	d := gm.SM3Concat(key.Bytes(), sig[:], msg)
	c.mu.Lock()
	ok, hit := c.seen[d]
	c.mu.Unlock()
	if hit {
		return ok
	}
	ok = key.Verify(msg, sig)
	c.mu.Lock()
	if len(c.seen) >= maxCached {
		clear(c.seen)
	}
	c.seen[d] = ok
	c.Calls++
	c.mu.Unlock()
	return ok
}
