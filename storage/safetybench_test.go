package storage_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"hallmark/ledger"
	"hallmark/storage"
)

// writtenBytes is the process's write(2) byte count (wchar in
// /proc/self/io), or -1 where that is not available.
func writtenBytes(tb testing.TB) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("wchar: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	return -1
}

// BenchmarkSaveSafety measures what a vote costs before it may leave: one
// SaveSafety with the safety record (≈300 bytes) and the block voted for
// (25 KB is a block of ≈80 transactions, 100 KB one of ≈320), fsync on.
// The main store's tip follows two heights behind, so each save also
// drops the kept block that committed, as in the node. "vote" saves a new
// block each time; "propose" saves the same block twice, as a leader
// does when it signs its proposal and then its vote for it. It reports
// page writes, bytes written, wall and CPU microseconds per save.
func BenchmarkSaveSafety(b *testing.B) {
	for _, size := range []int{25_000, 100_000} {
		for _, saves := range []int{1, 2} {
			name := fmt.Sprintf("vote/%dKB", size/1000)
			if saves == 2 {
				name = fmt.Sprintf("propose/%dKB", size/1000)
			}
			b.Run(name, func(b *testing.B) {
				s := openStore(b, b.TempDir(), storage.Options{})
				defer s.Close()
				c := newChain(b, 1)
				commit(b, s, c.block(blockSpec{}))
				record := make([]byte, 300)
				data := make([]byte, size)
				rand.Read(data)
				var cpu time.Duration
				var pages, written int64
				height := uint64(0)
				for b.Loop() {
					b.StopTimer()
					height++
					if height > 2 {
						commit(b, s, c.block(blockSpec{}))
					}
					var id ledger.BlockID
					rand.Read(id[:])
					rand.Read(data[:64])
					kb := storage.KeptBlock{Height: height + 1, ID: id, Data: data}
					p0, w0, c0 := s.SafetyPageWrites(), writtenBytes(b), cpuTime(b)
					b.StartTimer()
					for range saves {
						if err := s.SaveSafety(ctx, record, kb); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					cpu += cpuTime(b) - c0
					pages += s.SafetyPageWrites() - p0
					written += writtenBytes(b) - w0
					b.StartTimer()
				}
				n := float64(b.N * saves)
				b.ReportMetric(float64(pages)/n, "pages/save")
				b.ReportMetric(float64(written)/n, "bytes/save")
				b.ReportMetric(b.Elapsed().Seconds()*1e6/n, "µs/save")
				b.ReportMetric(cpu.Seconds()*1e6/n, "cpu-µs/save")
			})
		}
	}
}
