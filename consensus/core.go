package consensus

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
)

// Config is what a core needs besides its recovered state.
type Config struct {
	ChainID string
	// Verifier checks signatures; nil means [GMVerifier].
	Verifier Verifier
}

// Recovery is the durable state a core starts from: the current epoch's
// configuration, the last committed block and the proof it committed, and
// the safety data last stored. For a new chain, Root is the genesis header
// (epoch 0) and Epoch is epoch 1's configuration.
type Recovery struct {
	Epoch EpochConfig
	// EpochRoot is the last block of the previous epoch (or genesis):
	// the root every QC of round 0 in this epoch certifies. It is ignored
	// when Root itself is that block (Root.Epoch < Epoch's number).
	EpochRoot BlockRef
	// Root is the header of the last committed block.
	Root ledger.Header
	// RootProof is the commit proof storage kept beside Root; nil when
	// Root is the epoch's root.
	RootProof *CommitProof
	// Safety is the safety data last stored, or nil on first start.
	Safety *SafetyData
	// Blocks are the uncommitted blocks storage kept from [Sign]
	// effects, in any order; those that descend from Root rejoin the
	// tree (and are validated again). Without them a cluster that
	// restarted all at once could lose a certified block and stall.
	Blocks []CertifiedBlock
}

// Status is a snapshot of where the core stands.
type Status struct {
	Epoch           uint64
	Round           uint64
	CommittedHeight uint64
	CommittedID     ledger.BlockID
	HighQCRound     uint64
	Validator       bool
	Leader          bool
}

// Tuning bounds that are not chain parameters.
const (
	maxRoundsAhead    = 64 // votes further ahead of the local round are dropped
	maxNextEpochBuf   = 256
	maxFetching       = 64
	maxRecent         = 128 // committed blocks kept to answer fetches
	syncBatch         = 64
	maxTimeoutDouble  = 20
	maxPendingCommits = 4
)

type signKind int

const (
	signVote signKind = iota
	signTimeout
	signProposal
)

type pendingSign struct {
	seq      uint64
	kind     signKind
	epoch    uint64
	msg      []byte
	vote     VoteData
	timeout  Timeout
	proposal *Proposal
	reconfig *EpochConfig
	store    *CertifiedBlock
}

type voteRound struct {
	byVoter map[uint32]VoteData
	byData  map[VoteData][]voteSig
}

type voteSig struct {
	voter int
	sig   gm.Signature
}

type timeoutRound struct {
	byVoter map[int]timeoutSig
	highQC  QC
}

type timeoutSig struct {
	hqcRound uint64
	sig      gm.Signature
}

type pendingCommit struct {
	target ledger.BlockID
	height uint64
	proof  CommitProof
	from   gm.KeyID
}

// recentBlock is a committed block kept to answer fetches from peers that
// are a little behind.
type recentBlock struct {
	id      ledger.BlockID
	block   *ledger.Block
	justify *QC
}

// peerBudget bounds the requests a peer can make of this node per round:
// serving them costs storage reads and encoding.
type peerBudget struct {
	round   uint64
	fetches int
	syncs   int
}

const (
	maxFetchesPerRound = 8
	maxSyncsPerRound   = 2
)

// allow charges one fetch or sync request to a peer's budget for the
// current round and reports whether it is within it.
func (c *Core) allow(peer gm.KeyID, sync bool) bool {
	b := c.budgets[peer]
	if b == nil || b.round != c.round {
		if len(c.budgets) > 4*MaxValidators {
			clear(c.budgets)
		}
		b = &peerBudget{round: c.round}
		c.budgets[peer] = b
	}
	if sync {
		b.syncs++
		return b.syncs <= maxSyncsPerRound
	}
	b.fetches++
	return b.fetches <= maxFetchesPerRound
}

type buffered struct {
	from gm.KeyID
	data []byte
}

// Core is the consensus state machine of one node. It is not safe for
// concurrent use: a driver calls Step from one goroutine.
type Core struct {
	chainID  string
	verifier Verifier

	ep     *EpochVerifier
	self   int // index in the epoch's validator set, -1 if not a validator
	safety SafetyData

	round    uint64
	highQC   QC
	highTC   *TC
	timedOut bool
	// myTimeout is our signed timeout of the current round, re-sent when
	// the timer fires again.
	myTimeout []byte

	tree      *blockTree
	commits   []*pendingCommit // highest first
	rootProof *CommitProof
	// endQC is the QC that committed the previous epoch's last block,
	// handed to peers still in that epoch.
	endQC *QC

	proposals map[uint64]ledger.BlockID
	votes     map[uint64]*voteRound
	timeouts  map[uint64]*timeoutRound

	signing   *pendingSign
	signQueue []pendingSign
	seq       uint64
	timerSeq  uint64

	building     uint64 // round a BuildProposal is outstanding for
	buildParent  BlockRef
	buildTS      int64
	buildJustify QC
	buildTC      *TC

	fetching  map[ledger.BlockID]bool
	syncing   bool
	syncFrom  gm.KeyID
	syncMore  bool
	nextEpoch []buffered
	// aheadPeer is a peer seen in a later epoch since the last timer.
	aheadPeer *gm.KeyID
	helped    map[gm.KeyID]uint64 // round+1 we last sent the peer sync info in
	budgets   map[gm.KeyID]*peerBudget
	recent    []recentBlock
	peerTurn  int

	now       int64
	out       []Effect
	metrics   Metrics
	recovered []CertifiedBlock
}

// New returns a core that resumes from rec. Call [Core.Start] before the
// first Step.
func New(cfg Config, rec Recovery) (*Core, error) {
	if cfg.ChainID == "" || len(cfg.ChainID) > ledger.MaxChainIDLen {
		return nil, fmt.Errorf("consensus: chain id must be 1 to %d bytes", ledger.MaxChainIDLen)
	}
	if cfg.Verifier == nil {
		cfg.Verifier = GMVerifier{}
	}
	epoch := rec.Epoch.Epoch()
	if err := rec.Root.Validate(); err != nil {
		return nil, fmt.Errorf("consensus: recovered root: %w", err)
	}
	rootID := rec.Root.ID()
	epochRoot := rec.EpochRoot
	inEpoch := rec.Root.Epoch == epoch
	switch {
	case rec.Root.Epoch > epoch:
		return nil, fmt.Errorf("consensus: committed root is of epoch %d, configuration of epoch %d", rec.Root.Epoch, epoch)
	case !inEpoch:
		epochRoot = RefOf(&rec.Root)
	case rec.RootProof == nil:
		return nil, fmt.Errorf("consensus: committed root at height %d has no commit proof", rec.Root.Height)
	}
	ep, err := NewEpochVerifier(cfg.ChainID, rec.Epoch, epochRoot, cfg.Verifier)
	if err != nil {
		return nil, err
	}
	c := &Core{
		chainID:   cfg.ChainID,
		verifier:  cfg.Verifier,
		proposals: make(map[uint64]ledger.BlockID),
		votes:     make(map[uint64]*voteRound),
		timeouts:  make(map[uint64]*timeoutRound),
		fetching:  make(map[ledger.BlockID]bool),
		helped:    make(map[gm.KeyID]uint64),
		budgets:   make(map[gm.KeyID]*peerBudget),
	}
	c.setEpoch(ep)
	root := &node{id: rootID, header: &rec.Root}
	c.highQC = ep.GenesisQC()
	if inEpoch {
		got, _, err := ep.VerifyCommitProof(rec.RootProof)
		if err != nil {
			return nil, fmt.Errorf("consensus: recovered commit proof: %w", err)
		}
		if got != rootID {
			return nil, fmt.Errorf("consensus: recovered commit proof is for another block")
		}
		root.round = rec.Root.Round
		p := *rec.RootProof
		c.rootProof = &p
		if len(p.Links) == 0 {
			c.highQC = p.QC
		}
	}
	c.tree = newTree(root)
	c.recovered = rec.Blocks
	c.safety = SafetyData{Version: Version, Epoch: epoch}
	if s := rec.Safety; s != nil && s.Epoch >= epoch {
		c.safety = s.clone()
		c.safety.Version = Version
		if s.Epoch == epoch {
			if s.HighQC != nil && s.HighQC.Data.Round > c.highQC.Data.Round && ep.VerifyQC(s.HighQC) == nil {
				c.highQC = *s.HighQC
			}
			if s.HighTC != nil && ep.VerifyTC(s.HighTC) == nil {
				t := *s.HighTC
				c.highTC = &t
			}
		}
	}
	return c, nil
}

func (c *Core) setEpoch(ep *EpochVerifier) {
	c.ep = ep
	c.self = -1
	if self := ep.Config().Self; self != (gm.KeyID{}) {
		c.self = ep.Config().Validators.IndexOf(self)
	}
}

// Start returns the effects that start the core at local time now (ms):
// the first timer and, if this node leads the round, a proposal request.
func (c *Core) Start(now int64) []Effect {
	c.begin(now)
	// Blocks kept from before a restart rejoin the tree, parents first.
	blocks := c.recovered
	c.recovered = nil
	slices.SortFunc(blocks, func(a, b CertifiedBlock) int {
		if c := cmp.Compare(a.Block.Header.Height, b.Block.Header.Height); c != 0 {
			return c
		}
		x, y := a.Block.Header.ID(), b.Block.Header.ID()
		return bytes.Compare(x[:], y[:])
	})
	for i := range blocks {
		cb := &blocks[i]
		if cb.Block.Header.Epoch != c.ep.Epoch() || c.ep.VerifyQC(&cb.Justify) != nil ||
			cb.Justify.Data.BlockID != cb.Block.Header.PrevHash {
			continue
		}
		if cb.Block.Header.Height > c.tree.root.header.Height && c.tree.get(cb.Block.Header.PrevHash) != nil {
			b, j := cb.Block, cb.Justify
			c.insert(&b, b.Header.ID(), &j, nil, false, gm.KeyID{})
		}
	}
	r := c.highQC.Data.Round + 1
	if c.highTC != nil && c.highTC.Round+1 > r {
		r = c.highTC.Round + 1
	}
	c.enterRound(r)
	c.needBlock(c.highQC.Data.BlockID, c.highQC.Data.Height, gm.KeyID{})
	return c.end()
}

// Step handles one event at local time now (ms since 1970 UTC, from the
// driver's clock) and returns the effects to carry out, in order.
func (c *Core) Step(now int64, ev Event) []Effect {
	c.begin(now)
	switch e := ev.(type) {
	case MessageReceived:
		c.onMessage(e.From, e.Data)
	case TimerFired:
		c.onTimer(e.Seq)
	case Signed:
		c.onSigned(e)
	case BlockValidated:
		c.onValidated(e)
	case ProposalBuilt:
		c.onProposalBuilt(e)
	}
	return c.end()
}

func (c *Core) begin(now int64) {
	c.now = now
	c.out = nil
}

func (c *Core) end() []Effect {
	out := c.out
	c.out = nil
	return out
}

func (c *Core) emit(e Effect) { c.out = append(c.out, e) }

// Metrics returns a copy of the counters.
func (c *Core) Metrics() Metrics { return c.metrics }

// Status returns where the core stands.
func (c *Core) Status() Status {
	return Status{
		Epoch:           c.ep.Epoch(),
		Round:           c.round,
		CommittedHeight: c.tree.root.header.Height,
		CommittedID:     c.tree.root.id,
		HighQCRound:     c.highQC.Data.Round,
		Validator:       c.self >= 0,
		Leader:          c.self >= 0 && c.ep.Leader(c.round) == c.self,
	}
}

// Safety returns a copy of the in-memory safety data (which may be ahead
// of what storage holds until the pending Sign completes).
func (c *Core) Safety() SafetyData { return c.safety.clone() }

func (c *Core) drop(r DropReason) { c.metrics.Dropped[r]++ }

// dropErr counts a verification failure under the reason its error names.
func (c *Core) dropErr(err error) {
	switch {
	case errors.Is(err, ErrSignature):
		c.drop(DropBadSignature)
	case errors.Is(err, ErrMalformed):
		c.drop(DropMalformed)
	case errors.Is(err, ErrEpoch):
		c.drop(DropStaleEpoch)
	default:
		c.drop(DropInvalid)
	}
}

func (c *Core) selfKey() gm.KeyID { return c.ep.KeyID(c.self) }

// others returns the key ids of every validator but this node.
func (c *Core) others() []gm.KeyID {
	out := make([]gm.KeyID, 0, c.ep.N())
	for i := 0; i < c.ep.N(); i++ {
		if i != c.self {
			out = append(out, c.ep.KeyID(i))
		}
	}
	return out
}

// pickPeer returns another validator, taking turns, for requests that have
// no natural addressee.
func (c *Core) pickPeer() gm.KeyID {
	n := c.ep.N()
	for tries := 0; tries < n; tries++ {
		c.peerTurn = (c.peerTurn + 1) % n
		if c.peerTurn != c.self {
			return c.ep.KeyID(c.peerTurn)
		}
	}
	return gm.KeyID{}
}

func (c *Core) send(to gm.KeyID, m *Message) {
	if to == (gm.KeyID{}) || (c.self >= 0 && to == c.selfKey()) {
		return
	}
	enc, err := m.Encode()
	if err != nil {
		return
	}
	c.emit(Send{To: to, Kind: m.Kind(), Message: enc})
}

func (c *Core) broadcast(to []gm.KeyID, m *Message) []byte {
	enc, err := m.Encode()
	if err != nil {
		return nil
	}
	if len(to) > 0 {
		c.emit(Broadcast{To: to, Kind: m.Kind(), Message: enc})
	}
	return enc
}

// onMessage decodes a message and routes it by kind, after the epoch gate.
func (c *Core) onMessage(from gm.KeyID, data []byte) {
	m, err := DecodeMessage(data)
	if err != nil {
		c.drop(DropMalformed)
		return
	}
	kind := m.Kind()
	c.metrics.Received[kind]++
	if epoch, ok := messageEpoch(m); ok && !c.epochGate(from, kind, epoch, data) {
		return
	}
	switch kind {
	case KindProposal:
		c.onProposal(from, m.Proposal)
	case KindVote:
		c.onVote(m.Vote, false)
	case KindTimeout:
		c.onTimeout(from, m.Timeout, false)
	case KindSyncInfo:
		c.onSyncInfo(from, m.SyncInfo)
	case KindFetchRequest:
		c.onFetchRequest(from, m.FetchRequest)
	case KindFetchResponse:
		c.onFetchResponse(from, m.FetchResponse)
	case KindSyncRequest:
		c.onSyncRequest(from, m.SyncRequest)
	case KindSyncResponse:
		c.onSyncResponse(from, m.SyncResponse)
	}
}

func messageEpoch(m *Message) (uint64, bool) {
	switch {
	case m.Proposal != nil:
		return m.Proposal.Block.Header.Epoch, true
	case m.Vote != nil:
		return m.Vote.Data.Epoch, true
	case m.Timeout != nil:
		return m.Timeout.Epoch, true
	case m.SyncInfo != nil:
		return m.SyncInfo.HighQC.Data.Epoch, true
	case m.FetchRequest != nil:
		return m.FetchRequest.Epoch, true
	}
	return 0, false
}

// epochGate passes messages of the current epoch. It answers peers still in
// the previous epoch with the certificate that ended it, holds a bounded
// number of next-epoch messages for when this node gets there, and notes
// peers that are ahead so the next timer asks them for committed blocks.
func (c *Core) epochGate(from gm.KeyID, kind Kind, epoch uint64, data []byte) bool {
	cur := c.ep.Epoch()
	switch {
	case epoch == cur:
		return true
	case epoch < cur:
		c.drop(DropStaleEpoch)
		if epoch+1 == cur && c.endQC != nil && kind != KindSyncInfo {
			c.helpPeer(from, &SyncInfo{HighQC: *c.endQC})
		}
		return false
	case epoch == cur+1 && len(c.nextEpoch) < maxNextEpochBuf:
		c.metrics.BufferedNext++
		c.nextEpoch = append(c.nextEpoch, buffered{from: from, data: data})
		c.aheadPeer = &from
		return false
	default:
		c.drop(DropFutureEpoch)
		c.aheadPeer = &from
		if epoch > cur+1 {
			c.requestSync(from)
		}
		return false
	}
}

// Describe returns a human-readable account of the core's state (tree,
// pending commit and requests), for diagnosing a stuck node.
func (c *Core) Describe() string {
	b := fmt.Appendf(nil, "epoch %d round %d highQC %d/%s highTC %v syncing=%v building=%d signing=%v\n",
		c.ep.Epoch(), c.round, c.highQC.Data.Round, c.highQC.Data.BlockID.String()[:8], c.highTC != nil, c.syncing, c.building, c.signing != nil)
	for _, pc := range c.commits {
		b = fmt.Appendf(b, "pending commit: height %d %s\n", pc.height, pc.target.String()[:8])
	}
	var walk func(n *node, depth int)
	walk = func(n *node, depth int) {
		b = fmt.Appendf(b, "%*s%d r%d %s state=%d proposal=%v reconfig=%v suffix=%d\n", 2*depth, "",
			n.header.Height, n.round, n.id.String()[:8], n.state, n.proposal, n.reconfig != nil, n.suffix)
		for _, ch := range n.children {
			walk(ch, depth+1)
		}
	}
	walk(c.tree.root, 0)
	b = fmt.Appendf(b, "orphans %d fetching %d\n", c.tree.norphan, len(c.fetching))
	return string(b)
}
