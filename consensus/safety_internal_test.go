package consensus

import "testing"

func TestSafeToVote(t *testing.T) {
	tc := func(round, hqc uint64) *TC { return &TC{Round: round, HighQC: QC{Data: VoteData{Round: hqc}}} }
	for _, c := range []struct {
		name           string
		last           uint64
		round, qcRound uint64
		tc             *TC
		ok             bool
	}{
		{"extends previous round", 4, 5, 4, nil, true},
		{"already voted in round", 5, 5, 4, nil, false},
		{"below last voted", 6, 5, 4, nil, false},
		{"gap without TC", 4, 6, 4, nil, false},
		{"after TC, QC as high as TC's", 4, 6, 3, tc(5, 3), true},
		{"after TC, QC below TC's (the lock)", 4, 6, 2, tc(5, 3), false},
		{"TC of another round", 4, 7, 3, tc(5, 3), false},
	} {
		s := SafetyData{LastVotedRound: c.last}
		if err := s.safeToVote(c.round, c.qcRound, c.tc); (err == nil) != c.ok {
			t.Errorf("%s: got %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestSafeToTimeout(t *testing.T) {
	tc := &TC{Round: 6}
	for _, c := range []struct {
		name           string
		last, oneChain uint64
		round, qcRound uint64
		tc             *TC
		ok             bool
	}{
		{"round after QC", 4, 4, 5, 4, nil, true},
		{"same round as vote", 5, 4, 5, 4, nil, true},
		{"below last voted", 6, 4, 5, 4, nil, false},
		{"QC below one acted on", 4, 5, 6, 4, tc, false},
		{"round after TC", 4, 4, 7, 4, tc, true},
		{"unjustified round", 4, 4, 9, 4, tc, false},
	} {
		s := SafetyData{LastVotedRound: c.last, OneChainRound: c.oneChain}
		if err := s.safeToTimeout(c.round, c.qcRound, c.tc); (err == nil) != c.ok {
			t.Errorf("%s: got %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestTimeoutBackoffFormula(t *testing.T) {
	c := &Core{}
	ep, err := NewEpochVerifier("x", testEpoch(t), BlockRef{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.ep = ep
	c.highQC.Data.Round = 10
	p := ep.Config().Params
	want := []uint64{p.BaseTimeoutMs, p.BaseTimeoutMs * 2, p.BaseTimeoutMs * 4}
	for i, w := range want {
		if got := c.timeoutFor(11 + uint64(i)); got != w {
			t.Errorf("round %d: %d ms, want %d", 11+i, got, w)
		}
	}
	if got := c.timeoutFor(1000); got != p.MaxTimeoutMs {
		t.Errorf("far round: %d ms, want the maximum %d", got, p.MaxTimeoutMs)
	}
}
