package consensus

import (
	"hallmark/gm"
	"hallmark/ledger"
)

// timeoutFor returns how long round r lasts: the base timeout, doubled for
// every round since the last one that produced a QC, up to the maximum.
// It depends only on the round and the highest QC, so nodes that agree on
// those agree on the timeout.
func (c *Core) timeoutFor(r uint64) uint64 {
	p := &c.ep.Config().Params
	failed := uint64(0)
	if r > c.highQC.Data.Round+1 {
		failed = r - c.highQC.Data.Round - 1
	}
	d := p.BaseTimeoutMs
	for i := uint64(0); i < failed && i < maxTimeoutDouble && d < p.MaxTimeoutMs; i++ {
		d *= 2
	}
	return min(d, p.MaxTimeoutMs)
}

func (c *Core) setTimer() {
	c.timerSeq++
	c.emit(SetTimer{Seq: c.timerSeq, AfterMs: c.timeoutFor(c.round)})
}

// enterRound moves to round r if it is ahead of the current one.
func (c *Core) enterRound(r uint64) {
	if r <= c.round {
		return
	}
	c.round = r
	c.timedOut = false
	c.myTimeout = nil
	c.metrics.RoundsEntered++
	for round := range c.votes {
		if round <= c.highQC.Data.Round {
			delete(c.votes, round)
		}
	}
	for round := range c.timeouts {
		if round < r {
			delete(c.timeouts, round)
		}
	}
	for round := range c.proposals {
		if round+1 < r {
			delete(c.proposals, round)
		}
	}
	c.setTimer()
	c.tryPropose()
}

// processQC takes a verified QC of the current epoch into account: a
// higher QC, a commit it proves, a block to fetch, a round to enter.
func (c *Core) processQC(qc *QC, from gm.KeyID) {
	if qc.Data.Epoch != c.ep.Epoch() {
		return
	}
	if qc.Data.CommitsParent() {
		c.noteCommit(qc.Data.ParentID, qc.Data.Height-1, CommitProof{Version: Version, QC: *qc}, from)
	}
	if qc.Data.Round > c.highQC.Data.Round {
		c.highQC = *qc
	}
	c.needBlock(qc.Data.BlockID, qc.Data.Height, from)
	c.enterRound(qc.Data.Round + 1)
	c.tryCommit()
}

// processTC takes a verified TC of the current epoch into account.
func (c *Core) processTC(tc *TC, from gm.KeyID) {
	if tc.Epoch != c.ep.Epoch() {
		return
	}
	if c.highTC == nil || tc.Round > c.highTC.Round {
		t := *tc
		c.highTC = &t
	}
	c.processQC(&tc.HighQC, from)
	c.enterRound(tc.Round + 1)
}

// onTimer handles the round timer: time out (once per round, re-sending the
// same signed timeout on later firings) and retry stalled fetches.
func (c *Core) onTimer(seq uint64) {
	if seq != c.timerSeq {
		return
	}
	c.metrics.LocalTimeouts++
	if c.timedOut {
		if c.myTimeout != nil {
			c.emit(Broadcast{To: c.others(), Kind: KindTimeout, Message: c.myTimeout})
		}
	} else {
		c.localTimeout()
	}
	c.setTimer()
	// Requests may have been lost: forget them so they can be made
	// again, and ask again for what is still missing.
	clear(c.fetching)
	c.syncing = false
	if c.aheadPeer != nil {
		c.requestSync(*c.aheadPeer)
		c.aheadPeer = nil
	} else if c.self < 0 {
		// A node outside the validator set hears no proposals; it
		// follows the chain by asking for committed blocks.
		c.requestSync(c.pickPeer())
	}
	c.needBlock(c.highQC.Data.BlockID, c.highQC.Data.Height, gm.KeyID{})
	for _, pc := range c.commits {
		c.needBlock(pc.target, pc.height, pc.from)
	}
	if o := c.tree.lowestOrphan(); o != nil {
		c.needBlock(o.block.Header.PrevHash, o.block.Header.Height-1, gm.KeyID{})
	}
}

// localTimeout signs and broadcasts this node's timeout for the round.
func (c *Core) localTimeout() {
	if c.timedOut {
		return
	}
	c.timedOut = true
	if c.self < 0 || c.safety.Epoch != c.ep.Epoch() {
		return
	}
	var lastTC *TC
	if c.highTC != nil && c.highTC.Round+1 == c.round {
		lastTC = c.highTC
	}
	if err := c.safety.safeToTimeout(c.round, c.highQC.Data.Round, lastTC); err != nil {
		c.metrics.Refused[RefuseUnsafeTimeout]++
		return
	}
	c.safety.observeQC(&c.highQC)
	c.safety.LastVotedRound = max(c.safety.LastVotedRound, c.round)
	c.safety.HighestTimeoutRound = c.round
	c.snapshotCerts()
	t := Timeout{Epoch: c.ep.Epoch(), Round: c.round, Voter: uint32(c.self), HighQC: c.highQC}
	if lastTC != nil {
		tc := *lastTC
		t.LastTC = &tc
	}
	c.requestSign(pendingSign{kind: signTimeout, timeout: t,
		msg: TimeoutSignBytes(c.chainID, t.Epoch, t.Round, t.HighQC.Data.Round)})
}

func (c *Core) snapshotCerts() {
	q := c.highQC
	c.safety.HighQC = &q
	c.safety.HighTC = nil
	if c.highTC != nil {
		t := *c.highTC
		c.safety.HighTC = &t
	}
}

// requestSign queues a message for the driver to sign after storing the
// safety data; one Sign is outstanding at a time.
func (c *Core) requestSign(p pendingSign) {
	c.seq++
	p.seq = c.seq
	p.epoch = c.ep.Epoch()
	c.metrics.SignRequests++
	if c.signing != nil {
		c.signQueue = append(c.signQueue, p)
		return
	}
	c.startSign(p)
}

func (c *Core) startSign(p pendingSign) {
	c.signing = &p
	kind, block := KindVote, p.vote.BlockID
	switch p.kind {
	case signTimeout:
		kind, block = KindTimeout, ledger.BlockID{}
	case signProposal:
		kind, block = KindProposal, p.proposal.Block.Header.ID()
	}
	c.emit(Sign{Seq: p.seq, Kind: kind, For: block, Key: c.selfKey(), Safety: c.safety.clone(), Block: p.store, Message: p.msg})
}

func (c *Core) onSigned(e Signed) {
	if c.signing == nil || e.Seq != c.signing.seq {
		return
	}
	p := c.signing
	c.signing = nil
	defer func() {
		if c.signing == nil && len(c.signQueue) > 0 {
			next := c.signQueue[0]
			c.signQueue = c.signQueue[1:]
			if next.epoch == c.ep.Epoch() && c.self >= 0 {
				c.startSign(next)
			} else {
				c.signQueue = nil
			}
		}
	}()
	if e.Err != nil {
		c.metrics.SignErrors++
		return
	}
	if p.epoch != c.ep.Epoch() || c.self < 0 {
		return
	}
	switch p.kind {
	case signVote:
		v := Vote{Data: p.vote, Voter: uint32(c.self), Signature: e.Signature}
		c.metrics.VotesSent++
		leader := c.ep.Leader(v.Data.Round + 1)
		if leader == c.self {
			c.onVote(&v, true)
			return
		}
		c.send(c.ep.KeyID(leader), &Message{Version: Version, Vote: &v})
	case signTimeout:
		t := p.timeout
		t.Signature = e.Signature
		c.metrics.TimeoutsSent++
		enc := c.broadcast(c.others(), &Message{Version: Version, Timeout: &t})
		if t.Round == c.round {
			c.myTimeout = enc
		}
		c.onTimeout(gm.KeyID{}, &t, true)
	case signProposal:
		prop := p.proposal
		prop.Signature = e.Signature
		c.metrics.ProposalsSent++
		c.broadcast(c.others(), &Message{Version: Version, Proposal: prop})
		c.acceptOwnProposal(prop, p.reconfig)
	}
}

// onVote collects votes as the next round's leader and forms a QC at a
// quorum.
func (c *Core) onVote(v *Vote, local bool) {
	r := v.Data.Round
	if c.self < 0 || c.ep.Leader(r+1) != c.self {
		c.drop(DropMisdirected)
		return
	}
	if r <= c.highQC.Data.Round {
		c.drop(DropStale)
		return
	}
	if r > c.round+maxRoundsAhead {
		c.drop(DropFutureRound)
		return
	}
	vr := c.votes[r]
	if vr == nil {
		vr = &voteRound{byVoter: make(map[uint32]VoteData), byData: make(map[VoteData][]voteSig)}
		c.votes[r] = vr
	}
	if prev, ok := vr.byVoter[v.Voter]; ok {
		if prev == v.Data {
			c.drop(DropDuplicate)
			return
		}
		if !local {
			if _, err := c.ep.VerifyVote(v); err != nil {
				c.dropErr(err)
				return
			}
		}
		c.drop(DropEquivocation)
		return
	}
	voter := int(v.Voter)
	if !local {
		i, err := c.ep.VerifyVote(v)
		if err != nil {
			c.dropErr(err)
			return
		}
		voter = i
	}
	vr.byVoter[v.Voter] = v.Data
	sigs := append(vr.byData[v.Data], voteSig{voter: voter, sig: v.Signature})
	vr.byData[v.Data] = sigs
	if len(sigs) != c.ep.Quorum() {
		return
	}
	qc := QC{Version: Version, Data: v.Data, Signers: newBitmap(c.ep.N())}
	bySigner := make([]*gm.Signature, c.ep.N())
	for i := range sigs {
		bySigner[sigs[i].voter] = &sigs[i].sig
	}
	for i, s := range bySigner {
		if s != nil {
			bitmapSet(qc.Signers, i)
			qc.Signatures = append(qc.Signatures, *s)
		}
	}
	c.metrics.QCsFormed++
	epoch := c.ep.Epoch()
	c.processQC(&qc, gm.KeyID{})
	// A QC that commits its parent goes to the others at once, not only
	// inside this node's next proposal, which waits for the block to be
	// built, stored and signed: every node commits that much earlier.
	// (An epoch switch broadcasts the ending QC itself.)
	if qc.Data.CommitsParent() && c.ep.Epoch() == epoch {
		c.metrics.QCsAnnounced++
		c.broadcast(c.others(), &Message{Version: Version, SyncInfo: &SyncInfo{HighQC: qc}})
	}
}

// onTimeout collects timeouts of the current round: it joins a round's
// timeout once f+1 validators gave up on it (so one slow node cannot hold
// the others), and forms a TC at a quorum.
func (c *Core) onTimeout(from gm.KeyID, t *Timeout, local bool) {
	if t.Round < c.round {
		c.drop(DropStale)
		c.helpPeer(from, c.syncInfo())
		return
	}
	voter := int(t.Voter)
	if tr := c.timeouts[t.Round]; tr != nil {
		if _, ok := tr.byVoter[voter]; ok {
			c.drop(DropDuplicate)
			return
		}
	}
	if !local {
		i, err := c.ep.VerifyTimeout(t)
		if err != nil {
			c.dropErr(err)
			return
		}
		voter = i
		c.processQC(&t.HighQC, from)
		if t.LastTC != nil {
			c.processTC(t.LastTC, from)
		}
	}
	if t.Epoch != c.ep.Epoch() {
		c.drop(DropStaleEpoch)
		return
	}
	if t.Round != c.round {
		// Its certificates justify its round, so processing them
		// brought this node there; anything else breaks the rules.
		c.drop(DropInvalid)
		return
	}
	tr := c.timeouts[t.Round]
	if tr == nil {
		tr = &timeoutRound{byVoter: make(map[int]timeoutSig)}
		c.timeouts[t.Round] = tr
	}
	if _, ok := tr.byVoter[voter]; ok {
		c.drop(DropDuplicate)
		return
	}
	tr.byVoter[voter] = timeoutSig{hqcRound: t.HighQC.Data.Round, sig: t.Signature}
	if len(tr.byVoter) == 1 || t.HighQC.Data.Round > tr.highQC.Data.Round {
		tr.highQC = t.HighQC
	}
	n := len(tr.byVoter)
	if n == c.ep.F()+1 && !c.timedOut {
		// f+1 timeouts: at least one honest validator gave up.
		c.localTimeout()
	}
	if n != c.ep.Quorum() {
		return
	}
	tc := TC{Version: Version, Epoch: t.Epoch, Round: t.Round, HighQC: tr.highQC, Signers: newBitmap(c.ep.N())}
	for i := 0; i < c.ep.N(); i++ {
		if s, ok := tr.byVoter[i]; ok {
			bitmapSet(tc.Signers, i)
			tc.HighQCRounds = append(tc.HighQCRounds, s.hqcRound)
			tc.Signatures = append(tc.Signatures, s.sig)
		}
	}
	c.metrics.TCsFormed++
	c.processTC(&tc, gm.KeyID{})
}

func (c *Core) syncInfo() *SyncInfo {
	si := &SyncInfo{HighQC: c.highQC}
	if c.highTC != nil {
		t := *c.highTC
		si.HighTC = &t
	}
	return si
}

// helpPeer sends a peer that is behind our sync info, at most once a round.
func (c *Core) helpPeer(to gm.KeyID, si *SyncInfo) {
	if to == (gm.KeyID{}) || c.helped[to] == c.round+1 {
		return
	}
	if len(c.helped) > 4*MaxValidators {
		clear(c.helped)
	}
	c.helped[to] = c.round + 1
	c.send(to, &Message{Version: Version, SyncInfo: si})
}

func (c *Core) onSyncInfo(from gm.KeyID, si *SyncInfo) {
	if err := c.ep.VerifyQC(&si.HighQC); err != nil {
		c.dropErr(err)
		return
	}
	if si.HighTC != nil {
		if err := c.ep.VerifyTC(si.HighTC); err != nil {
			c.dropErr(err)
			return
		}
	}
	c.processQC(&si.HighQC, from)
	if si.HighTC != nil {
		c.processTC(si.HighTC, from)
	}
}
