package consensus

import (
	"hallmark/gm"
	"hallmark/ledger"
)

// Event is an input to [Core.Step].
type Event interface{ isEvent() }

// MessageReceived delivers the bytes a peer sent. From is the peer's
// validator key id as the transport authenticated it; the core trusts it
// only to address replies, never for what a message says (signatures do
// that).
type MessageReceived struct {
	From gm.KeyID
	Data []byte
}

// TimerFired reports that the timer set by the [SetTimer] effect with the
// same Seq expired. Timers of older Seq values are ignored.
type TimerFired struct{ Seq uint64 }

// Signed reports that the driver stored the safety data of the [Sign]
// effect with the same Seq and signed its message. Err reports a failure
// of either step; the core then drops the message.
type Signed struct {
	Seq       uint64
	Signature gm.Signature
	Err       error
}

// BlockValidated reports the application's verdict on a block the core
// asked it to validate ([ValidateBlock]): Err is nil when the block
// executed correctly on its parent's state, its roots match, and storage
// holds this node's shard of it. Reconfig is non-nil when executing the
// block ended the epoch; it is the next epoch's configuration and must be
// the same on every node (Self aside).
type BlockValidated struct {
	BlockID  ledger.BlockID
	Err      error
	Reconfig *EpochConfig
}

// ProposalBuilt returns the block the application built for a
// [BuildProposal] effect. The application has executed it, so the core
// treats it as validated; Reconfig is as in [BlockValidated].
type ProposalBuilt struct {
	Epoch    uint64
	Round    uint64
	Block    *ledger.Block
	Reconfig *EpochConfig
	Err      error
}

func (MessageReceived) isEvent() {}
func (TimerFired) isEvent()      {}
func (Signed) isEvent()          {}
func (BlockValidated) isEvent()  {}
func (ProposalBuilt) isEvent()   {}

// Effect is an output of [Core.Step] for the driver to carry out, in the
// order given.
type Effect interface{ isEffect() }

// Send asks the driver to send Message to one validator.
type Send struct {
	To      gm.KeyID
	Kind    Kind
	Message []byte
}

// Broadcast asks the driver to send Message to each of To.
type Broadcast struct {
	To      []gm.KeyID
	Kind    Kind
	Message []byte
}

// Sign asks the driver to store Safety durably — and Block, when set,
// beside it — then sign Message with the key Key names, then report back
// with a [Signed] event carrying Seq. The core keeps at most one Sign
// outstanding, so safety data reaches storage in order. A driver that
// crashes between the steps loses only the message, never the safety
// data.
//
// Block is the block being voted for or proposed, with the QC on its
// parent. Storage keeps it until it commits or is abandoned and hands it
// back in [Recovery.Blocks]: every certified block is then kept by at
// least f+1 honest validators, so it survives even a restart of the whole
// cluster. A leader's vote for its own proposal carries no Block: the
// proposal's Sign stored it a moment before.
//
// Kind says what is being signed (KindVote, KindTimeout or KindProposal),
// for the driver's tracing and metrics; it changes nothing it must do.
type Sign struct {
	Seq  uint64
	Kind Kind
	// For is the block a vote or proposal is for (zero for a timeout).
	For     ledger.BlockID
	Key     gm.KeyID
	Safety  SafetyData
	Block   *CertifiedBlock
	Message []byte
}

// ValidateBlock asks the application to execute Block on top of the state
// after Parent, check its roots, have storage keep this node's shard, and
// report back with [BlockValidated]. The core asks for a block only after
// its parent validated, so the application always has the parent's state.
// MustBeEmpty is set for blocks after an epoch-ending block, which must
// carry no transactions and leave the state as it is. Committed is set for
// blocks that arrived by sync under a verified commit proof: they are final
// whatever the application thinks of their payloads, which peers serve as
// stored (a masked payload is gone), so the application checks their
// execution and roots but not the presence of payloads.
type ValidateBlock struct {
	Block       *ledger.Block
	Parent      BlockRef
	MustBeEmpty bool
	Committed   bool
}

// BuildProposal asks the application for the block this node proposes in
// Round: on top of Parent, at Height, with exactly this Epoch, Round and
// Proposer in its header and a Timestamp no earlier than this one (an
// application that waits for transactions stamps the block when it builds
// it, and never beyond its clock), executed, with its state and shard
// roots filled in and sealed. Empty blocks (no transactions) are required
// after an epoch-ending block. The application answers with
// [ProposalBuilt]; it may wait for transactions first, but should answer
// well within the round's timeout.
type BuildProposal struct {
	Epoch     uint64
	Round     uint64
	Height    uint64
	Parent    BlockRef
	Timestamp int64
	Proposer  gm.KeyID
	Empty     bool
}

// Commit hands the application blocks that are final, in height order,
// with the proof that the last of them committed. The application
// executes (or flushes its speculative writes of) each block and storage
// keeps them, the proof beside the last one. When the last block ended
// its epoch, EpochChange is the next epoch's configuration, in force from
// the next block on; storage records it with the last block as the new
// epoch's root, for [Recovery]. Abandoned lists
// uncommitted blocks that can never commit now, so the application can
// drop their speculative state.
type Commit struct {
	Blocks      []*ledger.Block
	Proof       CommitProof
	EpochChange *EpochConfig
	Abandoned   []ledger.BlockID
}

// SetTimer asks the driver to fire [TimerFired] with Seq after AfterMs
// milliseconds, replacing any timer set before.
type SetTimer struct {
	Seq     uint64
	AfterMs uint64
}

// ServeSync asks the driver to answer a peer's request for committed
// blocks from storage: [BuildSyncResponse] builds the message.
type ServeSync struct {
	To      gm.KeyID
	Request SyncRequest
}

func (Send) isEffect()          {}
func (Broadcast) isEffect()     {}
func (Sign) isEffect()          {}
func (ValidateBlock) isEffect() {}
func (BuildProposal) isEffect() {}
func (Commit) isEffect()        {}
func (SetTimer) isEffect()      {}
func (ServeSync) isEffect()     {}
