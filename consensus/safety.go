package consensus

import (
	"fmt"

	"hallmark/ledger"
)

// SafetyData is what a validator must never forget, or it could sign two
// conflicting messages: the highest round it voted or timed out in, the
// highest certified round it has acted on, the last round it proposed in,
// and its highest certificates (so that after a restart it rejoins the
// round it left).
//
// The core hands the driver a copy with every [Sign] effect. The driver
// stores it durably (fsync, or the TPM's NV counter for the round) before
// it signs, and the core sends the signed message only after the [Signed]
// event comes back, so a message can never leave ahead of its safety data.
type SafetyData struct {
	Version uint16 `cbor:"1,keyasint"`
	Epoch   uint64 `cbor:"2,keyasint"`
	// LastVotedRound is the highest round this validator voted in or
	// timed out in. It votes only in higher rounds.
	LastVotedRound uint64 `cbor:"3,keyasint"`
	// PreferredRound is the highest parent round of a QC it acted on
	// (the two-chain lock; kept for audit, the rules below use
	// OneChainRound).
	PreferredRound uint64 `cbor:"4,keyasint"`
	// OneChainRound is the highest QC round it acted on. It times out
	// only with a QC at least that high.
	OneChainRound       uint64 `cbor:"5,keyasint"`
	HighestTimeoutRound uint64 `cbor:"6,keyasint"`
	LastProposedRound   uint64 `cbor:"7,keyasint"`
	HighQC              *QC    `cbor:"8,keyasint,omitempty"`
	HighTC              *TC    `cbor:"9,keyasint,omitempty"`
}

// EncodeSafetyData returns the canonical encoding.
func EncodeSafetyData(s *SafetyData) ([]byte, error) { return ledger.Marshal(s) }

// DecodeSafetyData strictly decodes stored safety data.
func DecodeSafetyData(data []byte) (*SafetyData, error) {
	if len(data) > MaxSafetyBytes {
		return nil, fmt.Errorf("%w: safety data of %d bytes", ErrMalformed, len(data))
	}
	var s SafetyData
	if err := ledger.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if s.Version != Version {
		return nil, fmt.Errorf("%w: safety data version %d", ErrMalformed, s.Version)
	}
	if s.HighQC != nil {
		if err := s.HighQC.check(); err != nil {
			return nil, err
		}
	}
	if s.HighTC != nil {
		if err := s.HighTC.check(); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func (s *SafetyData) clone() SafetyData {
	c := *s
	if s.HighQC != nil {
		q := *s.HighQC
		c.HighQC = &q
	}
	if s.HighTC != nil {
		t := *s.HighTC
		c.HighTC = &t
	}
	return c
}

// observeQC records that the validator acts on qc.
func (s *SafetyData) observeQC(qc *QC) {
	s.OneChainRound = max(s.OneChainRound, qc.Data.Round)
	s.PreferredRound = max(s.PreferredRound, qc.Data.ParentRound)
}

// safeToVote is the two-chain voting rule: a round not voted in yet, and a
// block that extends the previous round's QC, or, after a timeout, a QC at
// least as high as every QC the timeout certificate's signers knew.
func (s *SafetyData) safeToVote(round, qcRound uint64, tc *TC) error {
	if round <= s.LastVotedRound {
		return fmt.Errorf("round %d: already voted or timed out in round %d", round, s.LastVotedRound)
	}
	if round == qcRound+1 {
		return nil
	}
	if tc != nil && round == tc.Round+1 && qcRound >= tc.HighQC.Data.Round {
		return nil
	}
	return fmt.Errorf("round %d: block extends a QC of round %d without a TC that allows it", round, qcRound)
}

// safeToTimeout is the two-chain timeout rule: not a round below one it
// voted in, a round its certificates justify, and a QC no lower than any
// it acted on.
func (s *SafetyData) safeToTimeout(round, qcRound uint64, tc *TC) error {
	if round < s.LastVotedRound {
		return fmt.Errorf("timeout in round %d after acting in round %d", round, s.LastVotedRound)
	}
	if qcRound < s.OneChainRound {
		return fmt.Errorf("timeout in round %d with a QC of round %d below %d", round, qcRound, s.OneChainRound)
	}
	if round == qcRound+1 || (tc != nil && round == tc.Round+1) {
		return nil
	}
	return fmt.Errorf("timeout in round %d not justified by QC round %d", round, qcRound)
}
