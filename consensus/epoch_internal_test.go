package consensus

import (
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

func testEpoch(t *testing.T) EpochConfig {
	t.Helper()
	set := ledger.ValidatorSet{Epoch: 1}
	for i := 0; i < 4; i++ {
		d := gm.SM3([]byte{byte(i)})
		k, err := gm.NewPrivateKey(d[:])
		if err != nil {
			t.Fatal(err)
		}
		set.Validators = append(set.Validators, ledger.PeerConfig{ProtocolVersion: "1", SoftwareVersion: "t",
			PeerID: k.PublicKey().ID(), Address: "127.0.0.1:1", PublicKey: ledger.KeyBytes(k.PublicKey())})
	}
	return EpochConfig{Validators: set, Params: ledger.DefaultParams()}
}

func TestLeaderRotation(t *testing.T) {
	ep, err := NewEpochVerifier("x", testEpoch(t), BlockRef{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for r := uint64(1); r <= 4; r++ {
		seen[ep.Leader(r)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("4 consecutive rounds have %d distinct leaders", len(seen))
	}
	// Epoch 1's first round is led by validator (1+1) mod 4.
	if got := ep.Leader(1); got != 2 {
		t.Fatalf("leader of epoch 1 round 1 is %d, want 2", got)
	}
}
