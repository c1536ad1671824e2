package ledger

import (
	"fmt"
	"testing"

	"hallmark/gm"
)

func leaves(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("leaf-%d", i))
	}
	return out
}

// naiveRoot is the RFC 6962 definition written as directly as possible.
func naiveRoot(l [][]byte) gm.Digest {
	switch len(l) {
	case 0:
		return gm.SM3(nil)
	case 1:
		return gm.SM3(append([]byte{0}, l[0]...))
	}
	k := 1
	for k*2 < len(l) {
		k *= 2
	}
	a, b := naiveRoot(l[:k]), naiveRoot(l[k:])
	return gm.SM3(append(append([]byte{1}, a[:]...), b[:]...))
}

func TestMerkleAllSizes(t *testing.T) {
	for n := 0; n <= 70; n++ {
		l := leaves(n)
		root := MerkleRoot(l)
		if root != naiveRoot(l) {
			t.Fatalf("n=%d: root differs from the definition", n)
		}
		for i := 0; i < n; i++ {
			p, err := MerkleProve(l, i)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Verify(root, l[i]); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			if n > 1 {
				if err := p.Verify(root, l[(i+1)%n]); err == nil {
					t.Fatalf("n=%d i=%d: verified a different leaf", n, i)
				}
				q := p
				q.Index = uint64((i + 1) % n)
				if err := q.Verify(root, l[i]); err == nil {
					t.Fatalf("n=%d i=%d: verified at the wrong index", n, i)
				}
				q = p
				q.Path = append([]gm.Digest{{}}, p.Path...)
				if err := q.Verify(root, l[i]); err == nil {
					t.Fatalf("n=%d i=%d: verified with an extra path entry", n, i)
				}
			}
		}
	}
}

func TestMerkleLeafNodeSeparation(t *testing.T) {
	// A two-leaf tree's root must not equal the leaf hash of the
	// concatenation of its children's hashes (the second-preimage trick).
	l := leaves(2)
	root := MerkleRoot(l)
	a, b := MerkleLeafHash(l[0]), MerkleLeafHash(l[1])
	if MerkleLeafHash(append(a[:], b[:]...)) == root {
		t.Fatal("leaf and node hashes collide")
	}
}
