package sim

import (
	"fmt"

	"hallmark/consensus"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSimulatedCommit measures blocks committed per second of CPU by a
// fault-free simulated cluster of four (all four nodes' work counted),
// with real SM2 and with signing and verification replaced by stand-ins,
// so the protocol's own overhead shows apart from the cryptography. The
// network and storage are simulated, so I/O costs nothing here.
func BenchmarkSimulatedCommit(b *testing.B) {
	const blocksPerRun = 200
	for _, fake := range []bool{false, true} {
		name := "sm2"
		if fake {
			name = "no-crypto"
		}
		b.Run(fmt.Sprintf("n=4/%s", name), func(b *testing.B) {
			cfg := Config{Seed: 1, N: 4, FaultMs: 1, StableMs: 10_000_000, LivenessBlocks: blocksPerRun,
				MinDelayMs: 1, MaxDelayMs: 5, StableDelayMs: 5, Params: DefaultParams()}
			var blocks uint64
			start := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg.Seed = uint64(i + 1)
				opts := Options{FakeCrypto: fake}
				if !fake {
					opts.Verifier = consensus.GMVerifier{} // every node verifies for itself
				}
				res, err := Run(cfg, opts)
				if err != nil {
					b.Fatal(err)
				}
				blocks += res.MaxHeight
			}
			b.StopTimer()
			cpu := (cpuTime() - start).Seconds()
			b.ReportMetric(float64(blocks)/cpu, "blocks/cpu-s")
			b.ReportMetric(cpu*1e6/float64(blocks)/4, "cpu-µs/block/node")
		})
	}
}
