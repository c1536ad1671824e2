package erasure

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/reedsolomon"

	"hallmark/gm"
	"hallmark/ledger"
)

func randomBody(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestDataShards(t *testing.T) {
	for _, c := range []struct{ n, k int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {5, 2}, {7, 3}, {10, 4}, {16, 6}, {256, 86}} {
		if got := DataShards(c.n); got != c.k {
			t.Errorf("DataShards(%d) = %d, want %d", c.n, got, c.k)
		}
	}
}

// subsets calls fn with every subset of {0..n-1} of size k.
func subsets(n, k int, fn func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			fn(cur)
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

func TestRoundTripEveryQuorumOfShards(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 10} {
		for _, size := range []int{0, 1, 2, 99, 1000, 4097} {
			body := randomBody(uint64(n*10000+size), size)
			shards, root, proofs, err := Encode(body, n)
			if err != nil {
				t.Fatalf("n=%d size=%d: %v", n, size, err)
			}
			if len(shards) != n || len(proofs) != n {
				t.Fatalf("n=%d: %d shards, %d proofs", n, len(shards), len(proofs))
			}
			if got := ledger.MerkleRoot(shards); got != root {
				t.Fatalf("n=%d: root is not the Merkle root of the shards", n)
			}
			if r, _ := Root(body, n); r != root {
				t.Fatalf("n=%d: Root disagrees with Encode", n)
			}
			for i := range shards {
				if err := proofs[i].Verify(root, shards[i]); err != nil {
					t.Fatalf("n=%d: proof %d: %v", n, i, err)
				}
			}
			k := DataShards(n)
			subsets(n, k, func(idx []int) {
				in := make([][]byte, n)
				for _, i := range idx {
					in[i] = shards[i]
				}
				got, err := Reconstruct(in, n, uint64(size))
				if err != nil {
					t.Fatalf("n=%d size=%d from %v: %v", n, size, idx, err)
				}
				if !bytes.Equal(got, body) {
					t.Fatalf("n=%d size=%d from %v: body differs", n, size, idx)
				}
				for i := range in {
					if in[i] != nil && !bytes.Equal(in[i], shards[i]) {
						t.Fatalf("Reconstruct modified input shard %d", i)
					}
				}
			})
		}
	}
}

func TestReconstructNeedsKShards(t *testing.T) {
	body := randomBody(7, 5000)
	shards, _, _, err := Encode(body, 7)
	if err != nil {
		t.Fatal(err)
	}
	in := make([][]byte, 7)
	in[1], in[5] = shards[1], shards[5] // k = 3, two given
	if _, err := Reconstruct(in, 7, 5000); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("two of three shards: got %v, want ErrTooFewShards", err)
	}
	in[6] = shards[6][:10]
	if _, err := Reconstruct(in, 7, 5000); !errors.Is(err, ErrShard) {
		t.Fatalf("short shard: got %v, want ErrShard", err)
	}
}

// Shards that are a valid codeword for a longer body decode, but their
// padding is not zero for a shorter claimed size: they are refused.
func TestReconstructRefusesNonZeroPadding(t *testing.T) {
	body := randomBody(3, 1000)
	shards, _, _, err := Encode(body, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reconstruct(shards, 4, 999); !errors.Is(err, ErrPadding) {
		t.Fatalf("got %v, want ErrPadding", err)
	}
}

func TestShardVerify(t *testing.T) {
	body := randomBody(11, 3000)
	const n = 7
	shards, root, err := NewShards(body, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range shards {
		if err := shards[i].Verify(root, n, uint64(len(body))); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	s := shards[4]
	flipped := s
	flipped.Data = bytes.Clone(s.Data)
	flipped.Data[17] ^= 0x04
	moved := s
	moved.Index = 5
	otherSize := s
	otherSize.Proof.Size = 8
	otherRoot := gm.SM3([]byte("another block"))
	for name, c := range map[string]struct {
		s    Shard
		root gm.Digest
		n    int
		size uint64
	}{
		"flipped bit":      {flipped, root, n, uint64(len(body))},
		"wrong index":      {moved, root, n, uint64(len(body))},
		"proof size":       {otherSize, root, n, uint64(len(body))},
		"other root":       {s, otherRoot, n, uint64(len(body))},
		"other n":          {s, root, 8, uint64(len(body))},
		"other body size":  {s, root, n, uint64(len(body)) + 10},
		"index beyond n":   {Shard{Version: 1, Index: 9, Data: s.Data, Proof: s.Proof}, root, n, uint64(len(body))},
		"unknown version":  {Shard{Version: 2, Index: s.Index, Data: s.Data, Proof: s.Proof}, root, n, uint64(len(body))},
		"zero validators":  {s, root, 0, uint64(len(body))},
		"oversize body":    {s, root, n, ledger.MaxBlockBodyBytes + 1},
		"truncated shard":  {Shard{Version: 1, Index: s.Index, Data: s.Data[:len(s.Data)-1], Proof: s.Proof}, root, n, uint64(len(body))},
		"empty proof path": {Shard{Version: 1, Index: s.Index, Data: s.Data, Proof: ledger.MerkleProof{Index: 4, Size: n}}, root, n, uint64(len(body))},
	} {
		if err := c.s.Verify(c.root, c.n, c.size); err == nil {
			t.Errorf("%s: shard verified", name)
		}
	}
}

// The encoding must not depend on which SIMD path the CPU offers: encode
// with the library's portable code only and compare.
func TestEncodingIndependentOfCPUFeatures(t *testing.T) {
	for _, n := range []int{4, 7, 16} {
		body := randomBody(uint64(n), 1<<16+13)
		got, err := Shards(body, n)
		if err != nil {
			t.Fatal(err)
		}
		k := DataShards(n)
		size := len(got[0])
		want := make([][]byte, n)
		for i := range want {
			want[i] = make([]byte, size)
			if i < k {
				copy(want[i], body[min(len(body), i*size):min(len(body), (i+1)*size)])
			}
		}
		plain, err := reedsolomon.New(k, n-k,
			reedsolomon.WithSSE2(false), reedsolomon.WithSSSE3(false), reedsolomon.WithAVX2(false),
			reedsolomon.WithAVX512(false), reedsolomon.WithGFNI(false), reedsolomon.WithAVXGFNI(false),
			reedsolomon.WithMaxGoroutines(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := plain.Encode(want); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("n=%d: shard %d differs between the SIMD and the portable code", n, i)
			}
		}
	}
}

// Golden roots pin the encoding: if a library upgrade or a code change
// alters any shard byte, nodes running different builds would disagree on
// Header.ShardRoot, so this must fail loudly.
func TestGoldenShardRoots(t *testing.T) {
	body := make([]byte, 10_000)
	for i := range body {
		body[i] = byte(i*7 + i/251)
	}
	want := map[int]string{
		1: "0b7d37d0fa06fe29e4df2c572244e80688cc2296b29d60045c0efcdc4cd9d254",
		4: "4bc7c2d874a22cd79a08e7f03a0af654e9ff3b991cd4784704eab2c8ff0a5bb5",
		7: "b49be51c1d6c2fa54ad08f61baa14379510e78204e3e6e90e1d6daea7d26b856",
	}
	// With one validator the only shard is the body: its root is the leaf hash.
	if want[1] != ledger.MerkleLeafHash(body).String() {
		t.Fatal("n=1 golden root is not the leaf hash of the body")
	}
	for n, hexRoot := range want {
		root, err := Root(body, n)
		if err != nil {
			t.Fatal(err)
		}
		if root.String() != hexRoot {
			t.Errorf("n=%d: shard root %s, pinned %s", n, root, hexRoot)
		}
	}
}

func TestEncodeRefusesBadParams(t *testing.T) {
	for _, n := range []int{0, -1, MaxShards + 1} {
		if _, _, _, err := Encode([]byte("x"), n); !errors.Is(err, ErrParams) {
			t.Errorf("n=%d: got %v, want ErrParams", n, err)
		}
	}
}

func TestShardEncodingRoundTrip(t *testing.T) {
	shards, root, err := NewShards(randomBody(5, 777), 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range shards {
		enc, err := EncodeShard(&shards[i])
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeShard(enc)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Verify(root, 4, 777); err != nil {
			t.Fatalf("decoded shard %d: %v", i, err)
		}
		if _, err := DecodeShard(enc[:len(enc)-1]); err == nil {
			t.Fatalf("truncated encoding of shard %d decoded", i)
		}
	}
}

func FuzzDecodeShard(f *testing.F) {
	shards, _, err := NewShards(randomBody(9, 300), 7)
	if err != nil {
		f.Fatal(err)
	}
	for i := range shards {
		enc, _ := EncodeShard(&shards[i])
		f.Add(enc)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeShard(data)
		if err != nil {
			return
		}
		again, err := EncodeShard(s)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input is not canonical: %v", err)
		}
		_ = s.Verify(gm.Digest{}, 7, 300)
	})
}

func benchSizes() []int { return []int{4, 7} }

func BenchmarkEncodeShards(b *testing.B) {
	body := randomBody(1, 1<<20)
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, _, err := Encode(body, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRebuildBody rebuilds from the last k shards, so every data
// shard is missing and must be decoded: the worst case. The time includes
// verifying the k proofs, as a node does with shards from peers.
func BenchmarkRebuildBody(b *testing.B) {
	body := randomBody(2, 1<<20)
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			shards, root, err := NewShards(body, n)
			if err != nil {
				b.Fatal(err)
			}
			k := DataShards(n)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				in := make([][]byte, n)
				for i := n - k; i < n; i++ {
					if err := shards[i].Verify(root, n, uint64(len(body))); err != nil {
						b.Fatal(err)
					}
					in[i] = shards[i].Data
				}
				got, err := Reconstruct(in, n, uint64(len(body)))
				if err != nil || len(got) != len(body) {
					b.Fatal(err)
				}
			}
		})
	}
}
