package sim

import "testing"

// The same seed always gives the same run: a failing seed replays exactly.
func TestReplayIsExact(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		for _, n := range []int{4, 7} {
			a, errA := Run(ConfigFor(seed, n), Options{})
			b, errB := Run(ConfigFor(seed, n), Options{})
			if (errA == nil) != (errB == nil) || a.Events != b.Events || a.Messages != b.Messages ||
				a.MaxHeight != b.MaxHeight || a.VirtualMs != b.VirtualMs {
				t.Errorf("seed %d n %d: runs differ: %d/%d events, %d/%d messages, errors %v / %v",
					seed, n, a.Events, b.Events, a.Messages, b.Messages, errA, errB)
			}
		}
	}
}
