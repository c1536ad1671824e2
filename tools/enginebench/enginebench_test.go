package main

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestWorkloadShape(t *testing.T) {
	w := newWorkload(1, 100, 8, 150, 3)
	b := w.next(80)
	if b.height != 0 || b.txs != 80 || len(b.txIDs) != 80 {
		t.Fatalf("block %d of %d txs, %d ids", b.height, b.txs, len(b.txIDs))
	}
	count := map[int]int{}
	var state [][]byte
	for _, o := range b.ops {
		count[o.bucket]++
		if o.bucket == bucketState {
			state = append(state, o.key)
		}
	}
	// Per tx: txs entry, r/, s/, x/. Per block: record, id, shard, body,
	// certificate, m/tip and 1 to 8 accounts.
	if count[bucketTxs] != 80 || count[bucketBlocks] != 1 || count[bucketBlockIDs] != 1 ||
		count[bucketShards] != 1 || count[bucketBodies] != 1 || count[bucketCerts] != 1 {
		t.Fatalf("ops per bucket: %v", count)
	}
	if n := count[bucketState]; n < 3*80+2 || n > 3*80+9 {
		t.Fatalf("%d state writes, want 3 per tx plus tip and accounts", n)
	}
	if !slices.IsSortedFunc(state, bytes.Compare) {
		t.Fatal("state writes are not in canonical (sorted) order")
	}
	if len(b.checks) != 81 || len(b.seqChecks) != 81 {
		t.Fatalf("%d and %d checks, want the block id and 80 tx ids", len(b.checks), len(b.seqChecks))
	}
	// About 1 KB per transaction, as the brief's sizes add up to.
	if per := b.bytes() / 80; per < 900 || per > 1200 {
		t.Fatalf("%d bytes stored per tx", per)
	}

	// The replay window and body window start deleting.
	var dels, horizon int
	for range 4 {
		b = w.next(80)
	}
	for _, o := range b.ops {
		if o.del && o.bucket == bucketState {
			dels++
		}
		if o.del && o.bucket == bucketBodies && !bytes.Equal(o.key, be64(b.height-3)) {
			t.Fatalf("block %d prunes body %x", b.height, o.key)
		}
		if string(o.key) == "m/horizon" {
			horizon++
		}
	}
	if dels != 80 || horizon != 1 {
		t.Fatalf("block %d deletes %d replay markers (%d horizon writes), want 80 and 1", b.height, dels, horizon)
	}

	// Deterministic from the seed.
	a, c := newWorkload(9, 100, 8, 1000, 1000).next(10), newWorkload(9, 100, 8, 1000, 1000).next(10)
	if len(a.ops) != len(c.ops) {
		t.Fatal("same seed, different blocks")
	}
	for i := range a.ops {
		if !bytes.Equal(a.ops[i].key, c.ops[i].key) || !bytes.Equal(a.ops[i].val, c.ops[i].val) {
			t.Fatalf("same seed, op %d differs", i)
		}
	}
}

// TestEngines commits blocks to every engine, reopens it and finds the
// committed transactions; a repeated block is refused by the indexed ones.
func TestEngines(t *testing.T) {
	for _, name := range specNames() {
		t.Run(name, func(t *testing.T) {
			spec, err := lookupSpec(name)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			e, err := spec.open(dir)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorkload(3, 50, 8, 100, 4)
			var blocks []*block
			for i := range 6 {
				b := w.next(20 + i)
				blocks = append(blocks, b)
				if err := e.commit(b); err != nil {
					t.Fatal(err)
				}
			}
			if got := e.syncs(); got < 6 {
				t.Fatalf("%d syncs for 6 durable commits", got)
			}
			if err := e.settle(); err != nil {
				t.Fatal(err)
			}
			if err := e.close(); err != nil {
				t.Fatal(err)
			}
			if e, err = spec.open(dir); err != nil {
				t.Fatal(err)
			}
			defer e.close()
			for _, b := range blocks {
				for i := range b.txIDs {
					found, err := e.lookup(lookupKey(spec, b, i))
					if err != nil {
						t.Fatal(err)
					}
					if found == spec.noIndex {
						t.Fatalf("block %d tx %d: found %v", b.height, i, found)
					}
				}
			}
			if spec.noIndex {
				return
			}
			if found, err := e.lookup(make([]byte, 32)); err != nil || found {
				t.Fatalf("lookup of an absent id: %v, %v", found, err)
			}
			if err := e.commit(blocks[2]); !errors.Is(err, errDuplicate) {
				t.Fatalf("recommitting a block: %v, want %v", err, errDuplicate)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	if _, err := parseEngines("bbolt,nope"); err == nil {
		t.Fatal("unknown engine accepted")
	}
	if got, err := parseSizes(" 80, 1000 "); err != nil || !slices.Equal(got, []int{80, 1000}) {
		t.Fatalf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x", "-5"} {
		if _, err := parseSizes(bad); err == nil {
			t.Fatalf("block sizes %q accepted", bad)
		}
	}
}
