package consensus

import "fmt"

// DropReason says why the core discarded a message.
type DropReason int

// Reasons a message is dropped.
const (
	DropMalformed    DropReason = iota // does not decode or breaks a structural limit
	DropDuplicate                      // seen before
	DropStale                          // for a round or height already passed
	DropStaleEpoch                     // of an earlier epoch
	DropFutureEpoch                    // of a later epoch than the next, or the next-epoch buffer is full
	DropFutureRound                    // too far ahead to hold
	DropBadSignature                   // a signature does not verify
	DropInvalid                        // well formed and signed, but breaks a protocol rule
	DropEquivocation                   // a second, different proposal or vote for the same round
	DropUnsolicited                    // a response to nothing asked
	DropOverload                       // a bounded buffer is full
	DropMisdirected                    // a vote to a node that is not the next leader
	numDropReasons
)

var dropNames = [numDropReasons]string{"malformed", "duplicate", "stale", "stale_epoch", "future_epoch",
	"future_round", "bad_signature", "invalid", "equivocation", "unsolicited", "overload", "misdirected"}

func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return fmt.Sprintf("drop(%d)", int(r))
	}
	return dropNames[r]
}

// RefuseReason says why the core declined to vote for a validated block
// or to time out.
type RefuseReason int

// Reasons to refuse a vote.
const (
	RefuseUnsafe         RefuseReason = iota // the two-chain voting rule forbids it
	RefuseTimestampOrder                     // timestamp not after the parent's
	RefuseTimestampAhead                     // timestamp too far ahead of the local clock
	RefuseNotEmpty                           // a block after an epoch-ending block carries transactions
	RefuseInvalidBlock                       // the application rejected the block
	RefuseUnsafeTimeout                      // the two-chain timeout rule forbids timing out
	RefuseSuffixTooLong                      // too many blocks after an epoch-ending block
	numRefuseReasons
)

var refuseNames = [numRefuseReasons]string{"unsafe", "timestamp_order", "timestamp_ahead", "not_empty",
	"invalid_block", "unsafe_timeout", "suffix_too_long"}

func (r RefuseReason) String() string {
	if r < 0 || r >= numRefuseReasons {
		return fmt.Sprintf("refuse(%d)", int(r))
	}
	return refuseNames[r]
}

// Metrics are the core's counters. They only grow.
type Metrics struct {
	Received [numKinds]uint64
	Dropped  [numDropReasons]uint64
	Refused  [numRefuseReasons]uint64

	ProposalsSent    uint64
	VotesSent        uint64
	TimeoutsSent     uint64
	QCsFormed        uint64
	QCsAnnounced     uint64 // QCs formed here that committed a block, broadcast at once
	TCsFormed        uint64
	RoundsEntered    uint64
	LocalTimeouts    uint64
	BlocksCommitted  uint64
	Commits          uint64
	EpochChanges     uint64
	Validations      uint64
	ValidationErrors uint64
	ProposalErrors   uint64
	SignRequests     uint64
	SignErrors       uint64
	FetchRequests    uint64
	SyncRequests     uint64
	SyncServed       uint64
	BufferedNext     uint64
	// CommitStalled counts attempts to commit a chain in which the local
	// application rejected a block that a quorum certified: a sign that
	// this node's state diverged from the others'.
	CommitStalled uint64
}

// Each calls f with every counter's name and value, in a fixed order, for
// exporting (Prometheus, logs).
func (m *Metrics) Each(f func(name string, v uint64)) {
	for k := KindProposal; k < numKinds; k++ {
		f("received_"+k.String(), m.Received[k])
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		f("dropped_"+r.String(), m.Dropped[r])
	}
	for r := RefuseReason(0); r < numRefuseReasons; r++ {
		f("refused_"+r.String(), m.Refused[r])
	}
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"proposals_sent", m.ProposalsSent}, {"votes_sent", m.VotesSent}, {"timeouts_sent", m.TimeoutsSent},
		{"qcs_formed", m.QCsFormed}, {"qcs_announced", m.QCsAnnounced}, {"tcs_formed", m.TCsFormed}, {"rounds_entered", m.RoundsEntered},
		{"local_timeouts", m.LocalTimeouts}, {"blocks_committed", m.BlocksCommitted}, {"commits", m.Commits},
		{"epoch_changes", m.EpochChanges}, {"validations", m.Validations}, {"validation_errors", m.ValidationErrors},
		{"proposal_errors", m.ProposalErrors}, {"sign_requests", m.SignRequests}, {"sign_errors", m.SignErrors},
		{"fetch_requests", m.FetchRequests}, {"sync_requests", m.SyncRequests}, {"sync_served", m.SyncServed},
		{"buffered_next_epoch", m.BufferedNext}, {"commit_stalled", m.CommitStalled},
	} {
		f(c.name, c.v)
	}
}

// TotalDropped returns the sum of all drop counters.
func (m Metrics) TotalDropped() uint64 {
	var n uint64
	for _, v := range m.Dropped {
		n += v
	}
	return n
}
