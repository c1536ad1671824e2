package storage_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

// txDataFor returns the entity data size that makes an encoded
// transaction (without payload) about size bytes.
func txDataFor(b testing.TB, c *chain, size int) int {
	tx := ledgertest.Tx(b, c.key, ledgertest.TxOptions{Nonce: 1 << 60})
	enc, err := ledger.EncodeTx(&tx)
	if err != nil {
		b.Fatal(err)
	}
	// Entity data of up to 255 bytes costs 2 bytes of CBOR header, more
	// costs 3.
	return max(0, size-len(enc)-3)
}

// BenchmarkCommitBlock measures committed blocks per second with fsync on,
// on the full path: the store encodes the body, computes the shards and
// their root for n = 4, checks the transaction and state roots, and
// writes header, shard, body, index and state in one bbolt transaction.
func BenchmarkCommitBlock(b *testing.B) {
	for _, txs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%dtx", txs), func(b *testing.B) {
			s := openStore(b, b.TempDir(), storage.Options{})
			defer s.Close()
			c := newChain(b, 4)
			data := txDataFor(b, c, 512)
			var bodyBytes int
			for b.Loop() {
				b.StopTimer()
				batch := forNode(c.block(blockSpec{txs: txs, dataSize: data}), 1)
				bodyBytes = int(batch.Block.Header.BodySize)
				b.StartTimer()
				if err := s.CommitBlock(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/sec, "blocks/s")
			b.ReportMetric(float64(b.N*txs)/sec, "tx/s")
			b.ReportMetric(float64(bodyBytes)/float64(txs), "body-B/tx")
		})
	}
}

// BenchmarkCommitBlockPrepared is BenchmarkCommitBlock the way the node
// runtime commits: with the body's encoding and this node's shard, which
// it computed when it validated the block, in the batch. The ratio to
// BenchmarkCommitBlock (tools/benchratio) is what passing them saves.
func BenchmarkCommitBlockPrepared(b *testing.B) {
	for _, txs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%dtx", txs), func(b *testing.B) {
			s := openStore(b, b.TempDir(), storage.Options{})
			defer s.Close()
			c := newChain(b, 4)
			data := txDataFor(b, c, 512)
			for b.Loop() {
				b.StopTimer()
				batch := forNode(c.block(blockSpec{txs: txs, dataSize: data}), 1)
				body, err := ledger.EncodeBody(batch.Block.Txs)
				if err != nil {
					b.Fatal(err)
				}
				shards, _, err := erasure.NewShards(body, 4)
				if err != nil {
					b.Fatal(err)
				}
				batch.Body, batch.Shard = body, &shards[1]
				b.StartTimer()
				if err := s.CommitBlock(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*txs)/sec, "tx/s")
		})
	}
}

// amplification commits blocks to n stores (window 1, so bodies are
// pruned and only shards remain) and returns the bytes stored for block
// bodies across all n nodes divided by the body bytes: the erasure-coded
// figure, next to n for full replication.
func amplification(tb testing.TB, n, blocks int) (shardOnly, withProofs float64) {
	c := newCluster(tb, n, storage.Options{Window: 1})
	var bodyBytes int
	for range blocks {
		batch := c.commit(blockSpec{txs: 100, dataSize: txDataFor(tb, c.chain, 512)})
		bodyBytes += int(batch.Block.Header.BodySize)
	}
	// One more block so that every measured body is outside the window.
	c.commit(blockSpec{txs: 1})
	var data, records int
	for i, s := range c.stores {
		s.Close()
		c.stores[i] = nil
		db, err := bolt.Open(filepath.Join(c.dirs[i], "hallmark.db"), 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			tb.Fatal(err)
		}
		db.View(func(tx *bolt.Tx) error {
			cur := tx.Bucket([]byte("shards")).Cursor()
			for k, v := cur.First(); k != nil; k, v = cur.Next() {
				if bytes.Equal(k, heightKey(uint64(blocks))) {
					continue // the extra block
				}
				sh, err := erasure.DecodeShard(v)
				if err != nil {
					tb.Fatal(err)
				}
				records += len(v)
				data += len(sh.Data)
			}
			return nil
		})
		db.Close()
	}
	return float64(data) / float64(bodyBytes), float64(records) / float64(bodyBytes)
}

func TestStorageAmplification(t *testing.T) {
	for _, n := range []int{4, 7} {
		shard, rec := amplification(t, n, 3)
		k := (n-1)/3 + 1
		t.Logf("n=%d k=%d: body bytes stored across %d nodes = %.3fx the body (%.3fx with proofs and framing); full replication = %dx; n/k = %.3f",
			n, k, n, shard, rec, n, float64(n)/float64(k))
		if shard < float64(n)/float64(k) || shard > float64(n)/float64(k)*1.01 {
			t.Fatalf("n=%d: amplification %.3f is not n/k", n, shard)
		}
	}
}

// BenchmarkStorageAmplification reports the same figure as a metric.
func BenchmarkStorageAmplification(b *testing.B) {
	for _, n := range []int{4, 7} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var shard, rec float64
			for b.Loop() {
				shard, rec = amplification(b, n, 3)
			}
			b.ReportMetric(shard, "stored/body")
			b.ReportMetric(rec, "stored+proofs/body")
			b.ReportMetric(float64(n), "full-replication/body")
		})
	}
}
