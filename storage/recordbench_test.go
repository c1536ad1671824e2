package storage_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/ledgertest"
	"hallmark/ledger/txs"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

// recordChain builds the blocks a node commits under kiosk load: record.put
// transactions from one kiosk account, executed by the ledger application
// (so the state writes are the real ones: the record, its subject index
// entry and the executed-id marker per transaction, and the tip), with the
// body and this node's shard computed beforehand as the node runtime
// passes them. Signatures are not real: execution runs without signature
// checks and storage never verifies them.
type recordChain struct {
	tb     testing.TB
	x      *app.Executor
	kiosk  ledger.PublicKeyBytes
	sender ledger.Address
	parent ledger.Header
	time   int64
	seq    uint64
}

const recordValidators = 4

func newRecordChain(tb testing.TB, s *storage.Store) *recordChain {
	tb.Helper()
	t0 := int64(1_700_000_000_000)
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: ledgertest.ChainID, Time: t0, Params: ledger.DefaultParams()}
	for i := range recordValidators {
		pk := ledger.KeyBytes(ledgertest.Key(tb).PublicKey())
		doc.Validators = append(doc.Validators, ledger.PeerConfig{
			ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "bench", PeerID: pk.ID(),
			Address: fmt.Sprintf("198.18.0.%d:7400", i+1), PublicKey: pk, Organisation: "bench",
		})
	}
	kiosk := ledger.KeyBytes(ledgertest.Key(tb).PublicKey())
	admin := ledger.KeyBytes(ledgertest.Key(tb).PublicKey())
	doc.Accounts = []app.GenesisAccount{
		{PublicKey: admin, Institution: "bench admin", Roles: ledger.RoleAdmin},
		{PublicKey: kiosk, Institution: "bench kiosk", Roles: ledger.RoleKiosk},
	}
	g, err := app.Genesis(doc)
	if err != nil {
		tb.Fatal(err)
	}
	c := &recordChain{
		tb: tb, kiosk: kiosk, time: t0,
		x: app.New(app.WithSignatureCheck(func(*ledger.Transaction) error { return nil })),
	}
	c.sender = ledger.Address(kiosk.ID())
	blk := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: ledgertest.ChainID, Timestamp: t0, StateRoot: g.StateRoot,
	}}
	batch := c.finish(blk)
	batch.Writes = g.Writes
	if err := s.CommitBlock(context.Background(), batch); err != nil {
		tb.Fatal(err)
	}
	c.parent = blk.Header
	return c
}

// finish seals blk, fills its shard root and returns its batch for
// validator 1 without writes.
func (c *recordChain) finish(blk *ledger.Block) *storage.Batch {
	body, err := blk.Seal()
	if err != nil {
		c.tb.Fatal(err)
	}
	shards, root, err := erasure.NewShards(body, recordValidators)
	if err != nil {
		c.tb.Fatal(err)
	}
	blk.Header.ShardRoot = root
	return &storage.Batch{
		Block: blk, Validators: recordValidators, ShardIndex: 1, Shard: &shards[1], Body: body,
		Cert: make([]byte, 400), // about a commit proof of 3 signatures
	}
}

// next returns the next block of n record.puts, executed on base (the
// committed state with any uncommitted earlier blocks' writes on top).
func (c *recordChain) next(base app.View, n int) *storage.Batch {
	c.tb.Helper()
	c.time += int64(max(n, 1)) // 1,000 transactions per second
	list := make([]ledger.Transaction, n)
	for i := range list {
		c.seq++
		doc := gm.SM3(binary.BigEndian.AppendUint64([]byte("bench record "), c.seq))
		data, err := txs.Encode(&txs.RecordPut{RecordType: "customs.declaration", Subject: c.sender, Digest: &doc})
		if err != nil {
			c.tb.Fatal(err)
		}
		list[i] = ledger.Transaction{
			Body: ledger.TxBody{
				Version: ledger.TxVersion, ChainID: ledgertest.ChainID, Type: ledger.TxRecordPut,
				Timestamp: c.time - 500 + int64(i%400), Nonce: c.seq, Signers: []ledger.PublicKeyBytes{c.kiosk},
				Entity: ledger.Entity{Sender: c.sender, Data: data},
			},
			Signatures: make([]gm.Signature, 1),
		}
	}
	blk := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: ledgertest.ChainID, Height: c.parent.Height + 1,
		PrevHash: c.parent.ID(), Timestamp: c.time, Round: c.parent.Height + 1,
	}, Txs: list}
	batch := c.finish(blk)
	out, err := c.x.ExecuteBlock(base, c.parent.StateRoot, blk)
	if err != nil {
		c.tb.Fatal(err)
	}
	for i, r := range out.Results {
		if !r.OK() {
			c.tb.Fatalf("block %d tx %d: %v %s", blk.Header.Height, i, r.Code, r.Detail)
		}
	}
	blk.Header.StateRoot = out.StateRoot
	batch.Writes = out.Writes
	c.parent = blk.Header
	return batch
}

// nextBlocks returns k blocks of n transactions, each executed on top of
// the store's committed state and the blocks before it.
func (c *recordChain) nextBlocks(s *storage.Store, k, n int) []*storage.Batch {
	c.tb.Helper()
	var out []*storage.Batch
	err := s.View(func(sn *storage.Snapshot) error {
		ov := app.NewOverlay(snapView{sn})
		for range k {
			b := c.next(ov, n)
			ov.Apply(b.Writes)
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		c.tb.Fatal(err)
	}
	return out
}

// snapView is the app.View the node runtime puts over a storage snapshot.
type snapView struct{ sn *storage.Snapshot }

func (v snapView) Get(key []byte) ([]byte, error) {
	val, _, err := v.sn.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return append([]byte(nil), val...), err
}

func (v snapView) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return v.sn.Scan(prefix, nil, func(k, val []byte, _ uint64) error {
		if !fn(k, val) {
			return storage.SkipRest
		}
		return nil
	})
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// copyDir copies the regular files of a store directory (one level of
// subdirectories: the payload segments).
func copyDir(tb testing.TB, from, to string) {
	tb.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkCommitRecords commits blocks of app-executed record.puts to a
// store that already holds 200,000 of them (random-key inserts cost more
// as the trees grow), fsync on, the way the node runtime does it.
//
// "single", "group2" and "group4" commit blocks of 1,000 transactions
// (the saturation regime), one operation being four blocks: one bbolt
// transaction each, or two and four blocks per transaction (CommitBlocks,
// what the committer does when blocks queue up). They report page writes
// and microseconds per transaction.
//
// "tx0", "tx80" and "tx320" commit blocks of that many transactions one
// per bbolt transaction (an idle chain, the half-load regime, a busy
// one), sixteen blocks per operation, and report the cost per block as
// well: the empty block is the fixed cost of a commit, and the others
// show how much of a small block's cost is fixed.
func BenchmarkCommitRecords(b *testing.B) {
	const (
		prefillTxs = 200_000
		blockTxs   = 1000
		opBlocks   = 4
	)
	template := b.TempDir()
	s := openStore(b, template, storage.Options{})
	c := newRecordChain(b, s)
	for range prefillTxs / blockTxs / opBlocks {
		for _, batch := range c.nextBlocks(s, opBlocks, blockTxs) {
			commit(b, s, batch)
		}
	}
	for name, st := range s.BucketPages() {
		b.Logf("bucket %-14s leaf %6d branch %4d overflow %6d keys %7d", name, st[0], st[1], st[2], st[3])
	}
	free, pending, flBytes := s.FreelistPages()
	b.Logf("freelist: %d free, %d pending pages, %d bytes", free, pending, flBytes)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	run := func(name string, blocks, txs, group int, perBlock bool) {
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			copyDir(b, template, dir)
			t0 := time.Now()
			s := openStore(b, dir, storage.Options{})
			b.Logf("open took %s", time.Since(t0))
			defer s.Close()
			cc := *c
			cc.tb = b
			w0 := s.PageWrites()
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				batches := cc.nextBlocks(s, blocks, txs)
				c0 := cpuTime(b)
				b.StartTimer()
				for i := 0; i < len(batches); i += group {
					if err := s.CommitBlocks(context.Background(), batches[i:i+group]); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cpu += cpuTime(b) - c0
				b.StartTimer()
			}
			pages := float64(s.PageWrites() - w0)
			if txs > 0 {
				txCount := float64(b.N * blocks * txs)
				b.ReportMetric(pages/txCount, "pages/tx")
				b.ReportMetric(b.Elapsed().Seconds()*1e6/txCount, "µs/tx")
				b.ReportMetric(cpu.Seconds()*1e6/txCount, "cpu-µs/tx")
			}
			if perBlock {
				blockCount := float64(b.N * blocks)
				b.ReportMetric(pages/blockCount, "pages/block")
				b.ReportMetric(b.Elapsed().Seconds()*1e6/blockCount, "µs/block")
				b.ReportMetric(cpu.Seconds()*1e6/blockCount, "cpu-µs/block")
			}
		})
	}
	for _, group := range []int{1, 2, 4} {
		name := "single"
		if group > 1 {
			name = fmt.Sprintf("group%d", group)
		}
		run(name, opBlocks, blockTxs, group, false)
	}
	for _, txs := range []int{0, 80, 320} {
		run(fmt.Sprintf("tx%d", txs), 16, txs, 1, true)
	}
}
