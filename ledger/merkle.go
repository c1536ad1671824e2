package ledger

import (
	"errors"
	"fmt"
	"math/bits"

	"hallmark/gm"
)

// The Merkle tree follows the shape of RFC 6962 (Certificate Transparency)
// with SM3 as the hash: a leaf is hashed as SM3(0x00 ‖ data), an inner node
// as SM3(0x01 ‖ left ‖ right), and a tree of n > 1 leaves splits after the
// largest power of two below n. The prefixes keep a leaf from ever being
// mistaken for an inner node (no second preimage), and the split rule means
// no leaf is duplicated to fill the tree. The empty tree's root is SM3 of
// the empty string.
const (
	merkleLeafPrefix = 0x00
	merkleNodePrefix = 0x01
)

// ErrProof is returned for an inclusion proof that does not verify.
var ErrProof = errors.New("ledger: Merkle proof does not verify")

// MerkleLeafHash hashes one leaf.
func MerkleLeafHash(data []byte) gm.Digest {
	return gm.SM3Concat([]byte{merkleLeafPrefix}, data)
}

func merkleNodeHash(left, right gm.Digest) gm.Digest {
	return gm.SM3Concat([]byte{merkleNodePrefix}, left[:], right[:])
}

// MerkleRoot returns the root over leaves, each given as raw data.
func MerkleRoot(leaves [][]byte) gm.Digest {
	hashes := make([]gm.Digest, len(leaves))
	for i, l := range leaves {
		hashes[i] = MerkleLeafHash(l)
	}
	return MerkleRootOfHashes(hashes)
}

// MerkleRootOfHashes returns the root over already-hashed leaves.
func MerkleRootOfHashes(leafHashes []gm.Digest) gm.Digest {
	if len(leafHashes) == 0 {
		return gm.SM3(nil)
	}
	return subtreeRoot(leafHashes)
}

func subtreeRoot(h []gm.Digest) gm.Digest {
	if len(h) == 1 {
		return h[0]
	}
	k := splitPoint(len(h))
	return merkleNodeHash(subtreeRoot(h[:k]), subtreeRoot(h[k:]))
}

// splitPoint returns the largest power of two strictly below n (n > 1).
func splitPoint(n int) int {
	return 1 << (bits.Len(uint(n-1)) - 1)
}

// MerkleProof shows that the leaf at Index is in a tree of Size leaves.
// Path lists sibling hashes from the leaf upwards.
type MerkleProof struct {
	Index uint64      `cbor:"1,keyasint" json:"index"`
	Size  uint64      `cbor:"2,keyasint" json:"size"`
	Path  []gm.Digest `cbor:"3,keyasint" json:"path"`
}

// MerkleProve returns the inclusion proof of leaf index among leaves.
func MerkleProve(leaves [][]byte, index int) (MerkleProof, error) {
	hashes := make([]gm.Digest, len(leaves))
	for i, l := range leaves {
		hashes[i] = MerkleLeafHash(l)
	}
	return MerkleProveHashes(hashes, index)
}

// MerkleProveHashes is MerkleProve over already-hashed leaves.
func MerkleProveHashes(leafHashes []gm.Digest, index int) (MerkleProof, error) {
	if index < 0 || index >= len(leafHashes) {
		return MerkleProof{}, fmt.Errorf("ledger: Merkle proof index %d out of range for %d leaves", index, len(leafHashes))
	}
	var path []gm.Digest
	h, i := leafHashes, index
	// Walk down from the root, collecting the sibling at each split; the
	// path is then reversed so it runs leaf to root.
	for len(h) > 1 {
		k := splitPoint(len(h))
		if i < k {
			path = append(path, subtreeRoot(h[k:]))
			h = h[:k]
		} else {
			path = append(path, subtreeRoot(h[:k]))
			h, i = h[k:], i-k
		}
	}
	for l, r := 0, len(path)-1; l < r; l, r = l+1, r-1 {
		path[l], path[r] = path[r], path[l]
	}
	return MerkleProof{Index: uint64(index), Size: uint64(len(leafHashes)), Path: path}, nil
}

// Verify checks that leafData is at p.Index in the tree with the given root.
func (p MerkleProof) Verify(root gm.Digest, leafData []byte) error {
	return p.VerifyHash(root, MerkleLeafHash(leafData))
}

// VerifyHash checks the proof for an already-hashed leaf.
func (p MerkleProof) VerifyHash(root, leafHash gm.Digest) error {
	if p.Size == 0 || p.Size > 1<<48 || p.Index >= p.Size || len(p.Path) > 64 {
		return fmt.Errorf("%w: index %d, size %d, path %d", ErrProof, p.Index, p.Size, len(p.Path))
	}
	got, used, err := rootFromPath(leafHash, p.Index, p.Size, p.Path)
	if err != nil {
		return err
	}
	if used != len(p.Path) {
		return fmt.Errorf("%w: %d unused path entries", ErrProof, len(p.Path)-used)
	}
	if got != root {
		return ErrProof
	}
	return nil
}

// rootFromPath recomputes the root of a tree of size leaves holding leaf at
// index, consuming path from its end (the root's sibling) inwards. It
// returns the root and how many path entries it used.
func rootFromPath(leaf gm.Digest, index, size uint64, path []gm.Digest) (gm.Digest, int, error) {
	if size == 1 {
		return leaf, 0, nil
	}
	if len(path) == 0 {
		return gm.Digest{}, 0, fmt.Errorf("%w: path too short", ErrProof)
	}
	k := uint64(splitPoint(int(size)))
	sibling := path[len(path)-1]
	rest := path[:len(path)-1]
	if index < k {
		left, used, err := rootFromPath(leaf, index, k, rest)
		if err != nil {
			return gm.Digest{}, 0, err
		}
		return merkleNodeHash(left, sibling), used + 1, nil
	}
	right, used, err := rootFromPath(leaf, index-k, size-k, rest)
	if err != nil {
		return gm.Digest{}, 0, err
	}
	return merkleNodeHash(sibling, right), used + 1, nil
}
