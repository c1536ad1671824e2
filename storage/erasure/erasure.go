// Package erasure splits an encoded block body into Reed-Solomon shards,
// one per validator, and commits to them with an SM3 Merkle root.
//
// It is a pure, deterministic function of its inputs: the proposer calls
// [Encode] to fill Header.ShardRoot before proposing, every voter calls it
// again to check the root, and every node derives the shard it stores from
// the same call. Any k = f+1 = (n-1)/3+1 shards that verify against the
// root rebuild the body ([Reconstruct]).
//
// Layout, for a body of L bytes and n validators:
//
//	k          = (n-1)/3 + 1                data shards
//	shardSize  = max(1, ceil(L / k))        every shard has this length
//	data shard i (i < k)  = body[i*shardSize : (i+1)*shardSize], the last
//	                        one padded with zero bytes
//	parity shard i (i ≥ k) = Reed-Solomon parity over GF(2^8) with the
//	                        klauspost/reedsolomon default (Vandermonde-
//	                        derived, systematic) matrix for (k, n-k)
//	root       = ledger.MerkleRoot(shards)   (RFC 6962 shape, SM3)
//
// For n = 1 there is a single shard: the body itself (padded to one byte
// if it is empty).
package erasure

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/reedsolomon"

	"hallmark/gm"
	"hallmark/ledger"
)

// MaxShards is the largest validator count the encoding supports (the
// GF(2^8) code has at most 256 shards; ledger.ValidatorSet allows 256).
const MaxShards = 256

// Errors the package returns. Each is wrapped with the details.
var (
	// ErrParams is returned for a validator count or body size out of range.
	ErrParams = errors.New("erasure: invalid parameters")
	// ErrShard is returned for a shard that fails its checks: wrong
	// length or index, or a proof that does not verify against the root.
	ErrShard = errors.New("erasure: shard does not verify")
	// ErrTooFewShards is returned when fewer than k usable shards are given.
	ErrTooFewShards = errors.New("erasure: too few shards to rebuild the body")
	// ErrPadding is returned when decoded shards carry non-zero padding:
	// they are not the encoding of any body of the stated size.
	ErrPadding = errors.New("erasure: non-zero padding after the body")
)

// DataShards returns k, the number of shards that rebuild a body when
// there are n validators: f+1 with f = (n-1)/3.
func DataShards(n int) int { return (n-1)/3 + 1 }

// ShardSize returns the length of every shard of a body of bodySize bytes
// split for n validators.
func ShardSize(bodySize uint64, n int) (int, error) {
	if err := checkParams(bodySize, n); err != nil {
		return 0, err
	}
	k := uint64(DataShards(n))
	size := (bodySize + k - 1) / k
	if size == 0 {
		size = 1
	}
	return int(size), nil
}

func checkParams(bodySize uint64, n int) error {
	if n < 1 || n > MaxShards {
		return fmt.Errorf("%w: %d validators, want 1 to %d", ErrParams, n, MaxShards)
	}
	if bodySize > ledger.MaxBlockBodyBytes {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrParams, bodySize, ledger.MaxBlockBodyBytes)
	}
	return nil
}

// Encode splits body into n shards, returns them with their Merkle root
// and each shard's inclusion proof (proofs[i] proves shards[i]). The
// shards do not alias body.
func Encode(body []byte, n int) (shards [][]byte, root gm.Digest, proofs []ledger.MerkleProof, err error) {
	shards, err = Shards(body, n)
	if err != nil {
		return nil, gm.Digest{}, nil, err
	}
	hashes := leafHashes(shards)
	root = ledger.MerkleRootOfHashes(hashes)
	proofs = make([]ledger.MerkleProof, n)
	for i := range proofs {
		if proofs[i], err = ledger.MerkleProveHashes(hashes, i); err != nil {
			return nil, gm.Digest{}, nil, fmt.Errorf("erasure: proof of shard %d: %w", i, err)
		}
	}
	return shards, root, proofs, nil
}

// Root returns only the shard root of body for n validators: what a
// proposer puts in Header.ShardRoot and a voter compares against it.
func Root(body []byte, n int) (gm.Digest, error) {
	shards, err := Shards(body, n)
	if err != nil {
		return gm.Digest{}, err
	}
	return ledger.MerkleRootOfHashes(leafHashes(shards)), nil
}

// Shards returns the n shards of body without their proofs.
func Shards(body []byte, n int) ([][]byte, error) {
	size, err := ShardSize(uint64(len(body)), n)
	if err != nil {
		return nil, err
	}
	k := DataShards(n)
	// One allocation holds all shards; each shard is a capped sub-slice so
	// an append by a caller cannot spill into its neighbour.
	buf := make([]byte, n*size)
	copy(buf, body)
	shards := make([][]byte, n)
	for i := range shards {
		shards[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	if n == k {
		return shards, nil // no parity (n = 1)
	}
	enc, err := newCoder(k, n)
	if err != nil {
		return nil, err
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("erasure: encode %d+%d shards: %w", k, n-k, err)
	}
	return shards, nil
}

func newCoder(k, n int) (reedsolomon.Encoder, error) {
	enc, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, fmt.Errorf("erasure: coder for %d+%d shards: %w", k, n-k, err)
	}
	return enc, nil
}

// parallelHashBytes is the total shard size above which the leaves are
// hashed on several cores: SM3 dominates encoding (about 2.6 ms per MiB).
const parallelHashBytes = 256 << 10

func leafHashes(shards [][]byte) []gm.Digest {
	h := make([]gm.Digest, len(shards))
	workers := min(runtime.GOMAXPROCS(0), len(shards))
	if workers < 2 || len(shards)*len(shards[0]) < parallelHashBytes {
		for i, s := range shards {
			h[i] = ledger.MerkleLeafHash(s)
		}
		return h
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(shards); i += workers {
				h[i] = ledger.MerkleLeafHash(shards[i])
			}
		}()
	}
	wg.Wait()
	return h
}

// Reconstruct rebuilds a body of bodySize bytes from shards, a slice of n
// entries in which missing shards are nil. At least k entries must be
// present, each of the right length. The caller verifies shards against
// the root first ([Shard.Verify]); Reconstruct checks only lengths and
// that the padding after the body is zero. It does not modify shards.
func Reconstruct(shards [][]byte, n int, bodySize uint64) ([]byte, error) {
	size, err := ShardSize(bodySize, n)
	if err != nil {
		return nil, err
	}
	if len(shards) != n {
		return nil, fmt.Errorf("%w: %d shard slots for %d validators", ErrParams, len(shards), n)
	}
	k := DataShards(n)
	work := make([][]byte, n)
	have := 0
	for i, s := range shards {
		if s == nil {
			continue
		}
		if len(s) != size {
			return nil, fmt.Errorf("%w: shard %d is %d bytes, want %d", ErrShard, i, len(s), size)
		}
		work[i] = s
		have++
	}
	if have < k {
		return nil, fmt.Errorf("%w: have %d of the %d needed", ErrTooFewShards, have, k)
	}
	missingData := false
	for i := range k {
		if work[i] == nil {
			missingData = true
			break
		}
	}
	if missingData {
		enc, err := newCoder(k, n)
		if err != nil {
			return nil, err
		}
		// ReconstructData fills the nil data slots with new slices and
		// leaves the caller's shards untouched.
		if err := enc.ReconstructData(work); err != nil {
			return nil, fmt.Errorf("erasure: rebuild %d+%d shards: %w", k, n-k, err)
		}
	}
	body := make([]byte, 0, k*size)
	for i := range k {
		body = append(body, work[i]...)
	}
	for _, b := range body[bodySize:] {
		if b != 0 {
			return nil, ErrPadding
		}
	}
	return body[:bodySize:bodySize], nil
}
