package erasure

import (
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// ShardVersion is the version of the shard encoding.
const ShardVersion = 1

// Shard is one erasure-coded shard with its inclusion proof: the unit a
// node stores for a block and serves to peers that rebuild the body.
type Shard struct {
	Version uint16             `cbor:"1,keyasint"`
	Index   uint16             `cbor:"2,keyasint"`
	Data    []byte             `cbor:"3,keyasint"`
	Proof   ledger.MerkleProof `cbor:"4,keyasint"`
}

// NewShards returns the n shards of body with their proofs, and the root
// they verify against.
func NewShards(body []byte, n int) ([]Shard, gm.Digest, error) {
	data, root, proofs, err := Encode(body, n)
	if err != nil {
		return nil, gm.Digest{}, err
	}
	out := make([]Shard, n)
	for i := range out {
		out[i] = Shard{Version: ShardVersion, Index: uint16(i), Data: data[i], Proof: proofs[i]}
	}
	return out, root, nil
}

// Verify checks that s is shard s.Index of a body of bodySize bytes split
// for n validators under root: the index is in range, the length is the
// shard size, and the proof is for that index in a tree of n leaves and
// verifies. The tree size must come from the caller (the validator count
// of the block's epoch): an RFC 6962 proof does not bind it by itself.
func (s *Shard) Verify(root gm.Digest, n int, bodySize uint64) error {
	size, err := ShardSize(bodySize, n)
	if err != nil {
		return err
	}
	switch {
	case s.Version != ShardVersion:
		return fmt.Errorf("%w: version %d", ErrShard, s.Version)
	case int(s.Index) >= n:
		return fmt.Errorf("%w: index %d for %d validators", ErrShard, s.Index, n)
	case len(s.Data) != size:
		return fmt.Errorf("%w: shard %d is %d bytes, want %d", ErrShard, s.Index, len(s.Data), size)
	case s.Proof.Size != uint64(n) || s.Proof.Index != uint64(s.Index):
		return fmt.Errorf("%w: proof is for leaf %d of %d, want %d of %d",
			ErrShard, s.Proof.Index, s.Proof.Size, s.Index, n)
	}
	if err := s.Proof.Verify(root, s.Data); err != nil {
		return fmt.Errorf("%w: shard %d: %v", ErrShard, s.Index, err)
	}
	return nil
}

// MaxShardEncoding bounds an encoded shard: the largest shard (a maximal
// body for one validator), a proof of up to 64 hashes, and framing.
const MaxShardEncoding = ledger.MaxBlockBodyBytes + 64*gm.DigestSize + 256

// EncodeShard returns the canonical encoding of s: the form stored on disk
// and sent to peers.
func EncodeShard(s *Shard) ([]byte, error) { return ledger.Marshal(s) }

// DecodeShard strictly decodes a shard. It checks the encoding and the
// version; [Shard.Verify] checks it against a block.
func DecodeShard(b []byte) (*Shard, error) {
	if len(b) > MaxShardEncoding {
		return nil, fmt.Errorf("%w: encoded shard of %d bytes", ErrShard, len(b))
	}
	var s Shard
	if err := ledger.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("erasure: decode shard: %w", err)
	}
	if s.Version != ShardVersion {
		return nil, fmt.Errorf("%w: version %d", ErrShard, s.Version)
	}
	if len(s.Proof.Path) > 64 {
		return nil, fmt.Errorf("%w: proof path of %d hashes", ErrShard, len(s.Proof.Path))
	}
	return &s, nil
}
