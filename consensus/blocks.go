package consensus

import (
	"slices"

	"hallmark/gm"
	"hallmark/ledger"
)

// onProposal checks a proposal, follows its certificates into its round and
// adds its block to the tree for validation.
func (c *Core) onProposal(from gm.KeyID, p *Proposal) {
	h := &p.Block.Header
	if h.Round < c.round {
		c.drop(DropStale)
		c.helpPeer(from, c.syncInfo())
		return
	}
	id := h.ID()
	if prev, ok := c.proposals[h.Round]; ok {
		if prev == id {
			c.drop(DropDuplicate)
			return
		}
		if err := c.ep.VerifyProposal(p); err != nil {
			c.dropErr(err)
			return
		}
		c.drop(DropEquivocation)
		return
	}
	if err := c.ep.VerifyProposal(p); err != nil {
		c.dropErr(err)
		return
	}
	c.proposals[h.Round] = id
	c.processQC(&p.Justify, from)
	if p.TC != nil {
		c.processTC(p.TC, from)
	}
	b := p.Block
	j := p.Justify
	var tc *TC
	if p.TC != nil {
		t := *p.TC
		tc = &t
	}
	c.insert(&b, id, &j, tc, true, from)
}

// insert adds a block whose certification the caller checked: a verified
// proposal, or a block a verified QC names. A block whose parent is
// missing waits as an orphan while the parent is fetched.
func (c *Core) insert(b *ledger.Block, id ledger.BlockID, justify *QC, tc *TC, proposal bool, from gm.KeyID) {
	if n := c.tree.get(id); n != nil {
		if proposal && !n.proposal {
			n.proposal, n.tc = true, tc
			c.tryVote(n)
		}
		return
	}
	h := &b.Header
	if h.Epoch != c.ep.Epoch() {
		// Following a certificate ended the epoch under our feet.
		c.drop(DropStaleEpoch)
		return
	}
	if h.Height <= c.tree.root.header.Height {
		c.drop(DropStale)
		return
	}
	parent := c.tree.get(h.PrevHash)
	if parent == nil {
		if !c.tree.addOrphan(orphan{block: b, id: id, justify: justify, tc: tc, proposal: proposal}) {
			c.drop(DropOverload)
		}
		c.needBlock(h.PrevHash, h.Height-1, from)
		return
	}
	if parent.header.Height+1 != h.Height || parent.round >= h.Round ||
		(justify != nil && justify.Data.Round != parent.round) {
		c.drop(DropInvalid)
		return
	}
	if len(c.tree.nodes) >= maxTreeBlocks {
		c.drop(DropOverload)
		return
	}
	n := c.tree.add(parent, b, id, justify, tc)
	n.proposal = proposal
	c.maybeValidate(n)
	for _, o := range c.tree.takeOrphans(id) {
		c.insert(o.block, o.id, o.justify, o.tc, o.proposal, from)
	}
}

// maybeValidate asks the application to validate a block once its parent
// is valid.
func (c *Core) maybeValidate(n *node) {
	if n.state != unvalidated || n.parent == nil || n.parent.state != valid {
		return
	}
	if n.parent.endsEpochBelow() {
		n.suffix = n.parent.suffix + 1
		if n.header.TxCount != 0 {
			c.metrics.Refused[RefuseNotEmpty]++
			c.tree.remove(n)
			return
		}
	}
	n.state = validating
	c.metrics.Validations++
	// Only synced blocks lack a justification: they came under a verified
	// commit proof.
	c.emit(ValidateBlock{Block: n.block, Parent: n.parent.ref(), MustBeEmpty: n.suffix > 0, Committed: n.justify == nil})
}

func (c *Core) onValidated(e BlockValidated) {
	n := c.tree.get(e.BlockID)
	if n == nil || n.state != validating {
		return
	}
	if e.Err != nil || (e.Reconfig != nil && (n.suffix > 0 || !c.validReconfig(e.Reconfig))) {
		// The block id covers the header, and the header the
		// transaction ids and the shard root, but only the application
		// can check the shard root against the body. A body altered on
		// the way (a transaction signature, say) is rejected here even
		// though the block itself may be good, so the core forgets the
		// body rather than the id: if a quorum certifies the block, it
		// is fetched again, from another peer if need be.
		c.metrics.ValidationErrors++
		c.metrics.Refused[RefuseInvalidBlock]++
		c.tree.remove(n)
		c.tryCommit()
		return
	}
	if e.Reconfig != nil {
		r := *e.Reconfig
		n.reconfig = &r
	}
	n.state = valid
	c.afterValid(n)
}

func (c *Core) validReconfig(cfg *EpochConfig) bool {
	return cfg.Epoch() == c.ep.Epoch()+1 && cfg.Validate() == nil
}

// afterValid continues everything a newly valid block may unblock.
func (c *Core) afterValid(n *node) {
	for _, ch := range n.children {
		c.maybeValidate(ch)
	}
	c.tryVote(n)
	c.tryPropose()
	c.tryCommit()
}

// tryVote votes for the current round's proposal once it is valid, if the
// time rule and the safety rules allow.
func (c *Core) tryVote(n *node) {
	if !n.proposal || n.state != valid || n.round != c.round || c.self < 0 || n.justify == nil {
		return
	}
	if c.proposals[n.round] != n.id || c.safety.Epoch != c.ep.Epoch() || n.round <= c.safety.LastVotedRound {
		return
	}
	p := n.parent
	if n.header.Timestamp <= p.header.Timestamp {
		c.metrics.Refused[RefuseTimestampOrder]++
		return
	}
	if n.header.Timestamp > c.now+int64(c.ep.Config().Params.MaxClockSkewMs) {
		c.metrics.Refused[RefuseTimestampAhead]++
		return
	}
	if n.suffix > MaxProofLinks-2 {
		c.metrics.Refused[RefuseSuffixTooLong]++
		return
	}
	if err := c.safety.safeToVote(n.round, n.justify.Data.Round, n.tc); err != nil {
		c.metrics.Refused[RefuseUnsafe]++
		return
	}
	c.safety.observeQC(n.justify)
	c.safety.LastVotedRound = n.round
	c.snapshotCerts()
	vd := VoteData{Epoch: c.ep.Epoch(), Round: n.round, BlockID: n.id, Height: n.header.Height,
		ParentID: p.id, ParentRound: n.justify.Data.Round}
	var store *CertifiedBlock
	if !n.kept {
		store = &CertifiedBlock{Block: *n.block, Justify: *n.justify}
	}
	c.requestSign(pendingSign{kind: signVote, vote: vd, msg: VoteSignBytes(c.chainID, vd), store: store})
}

// tryPropose asks the application for a block when this node leads the
// round and the block it must extend (the highest QC's) is valid here.
func (c *Core) tryPropose() {
	if c.self < 0 || c.ep.Leader(c.round) != c.self || c.safety.Epoch != c.ep.Epoch() {
		return
	}
	if c.safety.LastProposedRound >= c.round || c.building == c.round {
		return
	}
	parent := c.tree.get(c.highQC.Data.BlockID)
	if parent == nil || parent.state != valid {
		return
	}
	var tc *TC
	if c.highQC.Data.Round+1 != c.round {
		if c.highTC == nil || c.highTC.Round+1 != c.round {
			return
		}
		t := *c.highTC
		tc = &t
	}
	if parent.endsEpochBelow() && parent.suffix+1 > MaxProofLinks-2 {
		return
	}
	c.building = c.round
	c.buildParent = parent.ref()
	c.buildJustify = c.highQC
	c.buildTC = tc
	c.buildTS = max(c.now, parent.header.Timestamp+1)
	c.emit(BuildProposal{Epoch: c.ep.Epoch(), Round: c.round, Height: parent.header.Height + 1,
		Parent: c.buildParent, Timestamp: c.buildTS, Proposer: c.selfKey(), Empty: parent.endsEpochBelow()})
}

func (c *Core) onProposalBuilt(e ProposalBuilt) {
	if e.Epoch != c.ep.Epoch() || e.Round != c.building || e.Round != c.round {
		return
	}
	if e.Err != nil || e.Block == nil {
		c.metrics.ProposalErrors++
		return
	}
	b := *e.Block
	h := &b.Header
	parent := c.tree.get(c.buildParent.ID)
	ok := parent != nil && h.Validate() == nil && b.CheckBody() == nil &&
		h.ChainID == c.chainID && h.Epoch == e.Epoch && h.Round == e.Round &&
		h.Height == c.buildParent.Height+1 && h.PrevHash == c.buildParent.ID &&
		h.Proposer == c.selfKey() && h.Timestamp >= c.buildTS &&
		h.Timestamp <= c.now+int64(c.ep.Config().Params.MaxClockSkewMs) &&
		(e.Reconfig == nil || c.validReconfig(e.Reconfig))
	if ok && parent.endsEpochBelow() {
		ok = h.TxCount == 0 && e.Reconfig == nil
	}
	if !ok {
		c.metrics.ProposalErrors++
		return
	}
	c.safety.LastProposedRound = c.round
	var reconfig *EpochConfig
	if e.Reconfig != nil {
		r := *e.Reconfig
		reconfig = &r
	}
	prop := &Proposal{Block: b, Justify: c.buildJustify, TC: c.buildTC}
	c.requestSign(pendingSign{kind: signProposal, proposal: prop, reconfig: reconfig,
		msg: ProposalSignBytes(c.chainID, h.ID()), store: &CertifiedBlock{Block: b, Justify: c.buildJustify}})
}

// acceptOwnProposal adds this node's signed proposal to its tree as valid
// (the application built and executed it) and votes for it.
func (c *Core) acceptOwnProposal(p *Proposal, reconfig *EpochConfig) {
	h := &p.Block.Header
	id := h.ID()
	if _, ok := c.proposals[h.Round]; !ok && h.Round >= c.round {
		c.proposals[h.Round] = id
	}
	parent := c.tree.get(h.PrevHash)
	if parent == nil || c.tree.get(id) != nil || parent.state != valid {
		return
	}
	n := c.tree.add(parent, &p.Block, id, &p.Justify, p.TC)
	n.proposal = true
	n.kept = true
	if parent.endsEpochBelow() {
		n.suffix = parent.suffix + 1
	}
	n.reconfig = reconfig
	n.state = valid
	c.afterValid(n)
}

// noteCommit records a proof that the block id at height committed, if it
// goes beyond the root. Up to maxPendingCommits proofs are kept, highest
// first: a lower one may be the one whose blocks are all here (a node
// that fell behind an epoch change learns the higher proof first but can
// fetch only the lower one's blocks).
func (c *Core) noteCommit(id ledger.BlockID, height uint64, proof CommitProof, from gm.KeyID) {
	if height <= c.tree.root.header.Height {
		return
	}
	for _, pc := range c.commits {
		if pc.target == id {
			return
		}
	}
	pc := &pendingCommit{target: id, height: height, proof: proof, from: from}
	i := 0
	for i < len(c.commits) && c.commits[i].height >= height {
		i++
	}
	c.commits = slices.Insert(c.commits, i, pc)
	if len(c.commits) > maxPendingCommits {
		c.commits = c.commits[:maxPendingCommits]
	}
	c.needBlock(id, height, from)
}

// tryCommit commits the highest pending proof whose chain is here and
// valid, as many times as that succeeds.
func (c *Core) tryCommit() {
	for {
		root := c.tree.root.header.Height
		c.commits = slices.DeleteFunc(c.commits, func(pc *pendingCommit) bool { return pc.height <= root })
		done := false
		for _, pc := range c.commits {
			if c.commitChain(pc) {
				done = true
				break
			}
		}
		if !done {
			return
		}
	}
}

// commitChain commits the chain up to the proven block once every block on
// it is here and valid. An epoch-ending block on the way ends the commit:
// the blocks after it belong to no epoch and are dropped.
func (c *Core) commitChain(pc *pendingCommit) bool {
	target := c.tree.get(pc.target)
	if target == nil {
		c.needBlock(pc.target, pc.height, pc.from)
		return false
	}
	path := c.tree.pathFrom(target)
	if path == nil {
		return false
	}
	for _, n := range path {
		if n.state != valid {
			return false
		}
	}
	cut := len(path)
	for i, n := range path {
		if n.reconfig != nil {
			cut = i + 1
			break
		}
	}
	proof := CommitProof{Version: Version, QC: pc.proof.QC}
	proof.Links = append(proof.Links, pc.proof.Links...)
	for i := len(path) - 1; i >= cut; i-- {
		proof.Links = append(proof.Links, *path[i].header)
	}
	if len(proof.Links) > MaxProofLinks {
		c.metrics.CommitStalled++
		return false
	}
	committed := path[:cut]
	last := committed[len(committed)-1]
	blocks := make([]*ledger.Block, len(committed))
	for i, n := range committed {
		blocks[i] = n.block
		if n.justify != nil {
			// Kept for fetches, up to 2*maxRecent blocks: without what the
			// hot paths remembered about each transaction (id, parsed
			// signer keys), which would otherwise stay alive with them.
			kept := *n.block
			kept.Txs = ledger.ForgetIDs(n.block.Txs)
			c.recent = append(c.recent, recentBlock{id: n.id, block: &kept, justify: n.justify})
		}
	}
	if len(c.recent) > 2*maxRecent {
		c.recent = append(c.recent[:0:0], c.recent[len(c.recent)-maxRecent:]...)
	}
	abandoned := c.tree.advanceRoot(last, committed)
	change := last.reconfig
	if change != nil {
		abandoned = append(abandoned, c.tree.reset(last)...)
		cfg := *change
		change = &cfg
	}
	c.rootProof = &proof
	c.metrics.Commits++
	c.metrics.BlocksCommitted += uint64(len(blocks))
	c.emit(Commit{Blocks: blocks, Proof: proof, EpochChange: change, Abandoned: abandoned})
	if change != nil {
		c.switchEpoch(change, last, &pc.proof.QC)
		return true
	}
	if c.syncMore {
		c.syncMore = false
		c.requestSync(c.syncFrom)
	}
	c.tryPropose()
	return true
}

// switchEpoch starts the epoch cfg describes, rooted at the block that
// ended the previous one.
func (c *Core) switchEpoch(cfg *EpochConfig, root *node, endQC *QC) {
	ep, err := NewEpochVerifier(c.chainID, *cfg, root.ref(), c.verifier)
	if err != nil {
		// validReconfig checked the configuration when the block
		// validated, so this cannot happen.
		c.metrics.CommitStalled++
		return
	}
	oldOthers := []gm.KeyID(nil)
	if c.self >= 0 {
		oldOthers = c.others()
	} else {
		for i := 0; i < c.ep.N(); i++ {
			oldOthers = append(oldOthers, c.ep.KeyID(i))
		}
	}
	q := *endQC
	c.endQC = &q
	c.setEpoch(ep)
	c.round = 0
	c.highQC = ep.GenesisQC()
	c.highTC = nil
	c.timedOut = false
	c.myTimeout = nil
	clear(c.proposals)
	clear(c.votes)
	clear(c.timeouts)
	clear(c.fetching)
	clear(c.helped)
	c.commits = nil
	c.building = 0
	c.signQueue = nil
	c.recent = nil
	c.syncMore = false
	c.syncing = false
	if c.safety.Epoch < ep.Epoch() {
		c.safety = SafetyData{Version: Version, Epoch: ep.Epoch()}
	}
	c.metrics.EpochChanges++
	c.broadcast(oldOthers, &Message{Version: Version, SyncInfo: &SyncInfo{HighQC: q}})
	c.enterRound(1)
	buf := c.nextEpoch
	c.nextEpoch = nil
	for _, m := range buf {
		c.onMessage(m.from, m.data)
	}
}
