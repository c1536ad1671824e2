package storage_test

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"hallmark/ledger"
	"hallmark/storage"
)

// writeIO returns the process's write(2)-family byte and call counts
// (wchar and syscw in /proc/self/io), or -1, -1 where that is not
// available.
func writeIO(tb testing.TB) (bytes, calls int64) {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1, -1
	}
	bytes, calls = -1, -1
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		switch name {
		case "wchar":
			bytes = n
		case "syscw":
			calls = n
		}
	}
	return bytes, calls
}

// BenchmarkSaveSafety measures what a vote costs before it may leave: one
// SaveSafety with the safety record (≈300 bytes) and the block voted for
// (25 KB is a block of ≈80 transactions, 100 KB one of ≈320), fdatasync
// on. The main store's tip follows two heights behind, so each save also
// drops the kept block that committed, as in the node. "vote" saves a new
// block each time; "propose" saves the same block twice, as a leader
// does when it signs its proposal and then its vote for it. It reports
// per save: bytes written and write calls (from /proc/self/io), the safety
// log's fdatasyncs, wall and CPU microseconds. Compactions (every 64 MiB
// of log) are part of the figures.
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
				var written, calls int64
				st0 := s.SafetyStats()
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
					w0, n0 := writeIO(b)
					c0 := cpuTime(b)
					b.StartTimer()
					for range saves {
						if err := s.SaveSafety(ctx, record, kb); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					cpu += cpuTime(b) - c0
					w1, n1 := writeIO(b)
					written += w1 - w0
					calls += n1 - n0
					b.StartTimer()
				}
				st := s.SafetyStats()
				n := float64(b.N * saves)
				b.ReportMetric(float64(written)/n, "bytes/save")
				b.ReportMetric(float64(calls)/n, "writes/save")
				b.ReportMetric(float64(st.Syncs-st0.Syncs)/n, "fdatasyncs/save")
				b.ReportMetric(b.Elapsed().Seconds()*1e6/n, "µs/save")
				b.ReportMetric(cpu.Seconds()*1e6/n, "cpu-µs/save")
			})
		}
	}
}
