package driver

import (
	"time"

	"hallmark/ledger"
)

// Stage is a moment in a block's life on this node, reported to
// Config.Trace so that the node can show where a block's time goes.
type Stage int

// The stages, in the order a block normally passes them. A leader's own
// block goes BuildRequested, Built, Proposed, Voted; another node's goes
// Received, Validated, Voted. Every block then goes Certified and
// Committed.
const (
	// StageBuildRequested: the core asked this node, the round's leader,
	// for a block (it holds the QC on the parent). Reported with Built,
	// once the block's id is known.
	StageBuildRequested Stage = iota
	// StageBuilt: the application built and executed the block.
	StageBuilt
	// StageProposed: the proposal's safety data and the block are
	// stored and the proposal is signed; it goes out now.
	StageProposed
	// StageReceived: the core asked the application to validate the
	// block (a proposal or fetched block arrived and its parent is valid).
	StageReceived
	// StageValidated: the application validated the block.
	StageValidated
	// StageVoted: the vote's safety data is stored and the vote is
	// signed; it goes out now.
	StageVoted
	// StageCertified: this node holds a QC on the block (it formed it as
	// the next leader, or a child's proposal carried it).
	StageCertified
	// StageCommitted: the core committed the block and handed it to the
	// application.
	StageCommitted
	numStages
)

// NumStages is the number of stages.
const NumStages = int(numStages)

var stageNames = [numStages]string{"build_requested", "built", "proposed", "received", "validated", "voted", "certified", "committed"}

func (s Stage) String() string {
	if s < 0 || s >= numStages {
		return "unknown"
	}
	return stageNames[s]
}

// TraceEvent says that a block reached a stage at a time.
type TraceEvent struct {
	Stage  Stage
	Block  ledger.BlockID
	Height uint64
	At     time.Time
}

func (d *Driver) trace(s Stage, id ledger.BlockID, height uint64, at time.Time) {
	if d.cfg.Trace != nil {
		d.cfg.Trace(TraceEvent{Stage: s, Block: id, Height: height, At: at})
	}
}
