// Package sim runs a network of consensus cores in one goroutine, in
// virtual time, from a seed. It injects message loss, delay, duplication
// and reordering, partitions that heal, crashes with restart from stored
// safety data, reconfigurations (key rotations, parameter changes,
// validators removed and added back), and up to f Byzantine validators
// that equivocate, double-vote, vote for invalid blocks, send garbage or
// stay silent. It checks agreement, validity and the safety rules on every
// commit and vote, and liveness once the faults stop.
//
// The nodes run the real core with real message encoding and real SM2
// signatures; only the network, the clock, the application (package
// consensus/internal/testapp) and storage are simulated. The same seed
// always gives the same run.
package sim

import (
	"fmt"
	"math/rand/v2"

	"hallmark/ledger"
)

// Config describes one simulated run.
type Config struct {
	Seed uint64
	N    int
	// Byzantine is the number of Byzantine validators, at most f.
	Byzantine int
	// Behaviours of the Byzantine validators (a bit set of Behaviour).
	Behaviours Behaviour
	// FaultMs is the length of the faulty phase in virtual ms; StableMs
	// bounds the phase after it, in which every honest validator must
	// commit LivenessBlocks blocks beyond the highest height any node had
	// when the faults stopped.
	FaultMs        int64
	StableMs       int64
	LivenessBlocks uint64
	// Network during the faulty phase; afterwards nothing is lost or
	// duplicated and delays are drawn from [MinDelayMs, StableDelayMs].
	DropRate      float64
	DupRate       float64
	MinDelayMs    int64
	MaxDelayMs    int64
	StableDelayMs int64
	Partitions    int
	Crashes       int
	Reconfigs     int
	// ClockSkewMs bounds each node's clock offset (±).
	ClockSkewMs int64
	Params      ledger.Params
}

// Behaviour is a Byzantine behaviour.
type Behaviour uint8

// Byzantine behaviours.
const (
	Silent        Behaviour = 1 << iota // sends nothing
	Equivocate                          // proposes two blocks per round, to different halves
	DoubleVote                          // votes for a second block in every round it votes
	InvalidVote                         // approves every block, proposes blocks with a wrong state root
	Garbage                             // also sends corrupted and random bytes
	Fork                                // after a timeout, proposes a block on an older QC than its highest
	Withhold                            // sends its proposals (and the QCs in them) late
	allBehaviours = Silent | Equivocate | DoubleVote | InvalidVote | Garbage | Fork | Withhold
)

func (b Behaviour) String() string {
	names := []string{"silent", "equivocate", "double-vote", "invalid-vote", "garbage", "fork", "withhold"}
	s := ""
	for i, n := range names {
		if b&(1<<i) != 0 {
			if s != "" {
				s += "+"
			}
			s += n
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// DefaultParams are the chain parameters of simulated runs: short timeouts
// so that many rounds fit a run.
func DefaultParams() ledger.Params {
	p := ledger.DefaultParams()
	p.BaseTimeoutMs = 300
	p.MaxTimeoutMs = 2400
	p.MaxClockSkewMs = 500
	p.EpochLength = 4
	return p
}

// ConfigFor derives a run's fault mix from its seed: every seed exercises
// a different combination, and the same seed always the same one.
func ConfigFor(seed uint64, n int) Config {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	f := (n - 1) / 3
	cfg := Config{
		Seed:           seed,
		N:              n,
		FaultMs:        1500 + rng.Int64N(2500),
		StableMs:       30_000,
		LivenessBlocks: 4,
		MinDelayMs:     1,
		MaxDelayMs:     5 + rng.Int64N(60),
		StableDelayMs:  20,
		ClockSkewMs:    rng.Int64N(150),
		Params:         DefaultParams(),
	}
	if f > 0 {
		cfg.Byzantine = rng.IntN(f + 1)
		if cfg.Byzantine > 0 {
			cfg.Behaviours = Behaviour(1 + rng.IntN(int(allBehaviours)))
		}
	}
	if rng.IntN(4) > 0 {
		cfg.DropRate = rng.Float64() * 0.15
	}
	if rng.IntN(3) == 0 {
		cfg.DupRate = rng.Float64() * 0.1
	}
	cfg.Partitions = rng.IntN(3)
	cfg.Crashes = rng.IntN(3)
	cfg.Reconfigs = rng.IntN(3)
	if rng.IntN(3) == 0 {
		cfg.Params.EpochLength = 0
	}
	return cfg
}

func (c Config) String() string {
	return fmt.Sprintf("seed=%d n=%d byz=%d(%s) fault=%dms drop=%.2f dup=%.2f delay=%d-%dms partitions=%d crashes=%d reconfigs=%d",
		c.Seed, c.N, c.Byzantine, c.Behaviours, c.FaultMs, c.DropRate, c.DupRate, c.MinDelayMs, c.MaxDelayMs,
		c.Partitions, c.Crashes, c.Reconfigs)
}
