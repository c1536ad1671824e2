package consensus_test

import (
	"context"
	"slices"
	"testing"

	"hallmark/consensus"
	"hallmark/consensus/internal/testapp"
	"hallmark/ledger"
)

func TestSingleValidatorCommits(t *testing.T) {
	c := newCluster(t, 1)
	c.runUntil(20, 10_000)
	st := c.nodes[0].core.Status()
	if !st.Validator || !st.Leader || st.CommittedHeight < 20 {
		t.Fatalf("status %+v", st)
	}
}

func TestClusterCommitsAndAgrees(t *testing.T) {
	for _, n := range []int{4, 7, 16} {
		c := newCluster(t, n)
		c.runUntil(8, 100_000)
		c.checkAgreement()
		for _, m := range c.nodes {
			// Votes beyond the quorum arrive after their QC formed
			// and are dropped as stale; nothing else is dropped on
			// a perfect network.
			mm := m.core.Metrics()
			if got := mm.TotalDropped() - mm.Dropped[consensus.DropStale]; got != 0 {
				t.Errorf("n=%d node %d dropped %d messages on a perfect network", n, m.idx, got)
			}
		}
	}
}

func decodeKind(t testing.TB, msg []byte) *consensus.Message {
	t.Helper()
	m, err := consensus.DecodeMessage(msg)
	if err != nil {
		t.Fatalf("decode own message: %v", err)
	}
	return m
}

// A vote, timeout or proposal must never leave before the driver reported
// the safety data stored: hold back node 1's Signed events and check that
// it sends nothing it would have to sign.
func TestNothingSignedLeavesBeforeSafetyStored(t *testing.T) {
	c := newCluster(t, 4)
	var held []queued
	signedLeft := 0
	c.intercept = func(from, to int, msg []byte) bool {
		if from == 1 {
			m := decodeKind(t, msg)
			if m.Vote != nil || m.Timeout != nil || m.Proposal != nil {
				signedLeft++
			}
		}
		return true
	}
	for steps := 0; steps < 3000; steps++ {
		if len(c.queue) == 0 {
			c.fire(500)
			continue
		}
		q := c.queue[0]
		c.queue = c.queue[1:]
		if _, ok := q.ev.(consensus.Signed); ok && q.to == 1 {
			held = append(held, q)
			continue
		}
		c.now++
		c.apply(c.nodes[q.to], c.nodes[q.to].core.Step(c.now, q.ev))
	}
	if signedLeft != 0 {
		t.Fatalf("node 1 sent %d signed messages before its safety data was stored", signedLeft)
	}
	if len(held) == 0 {
		t.Fatal("node 1 never asked to sign: the test exercised nothing")
	}
	// Releasing the first Signed lets exactly that message out.
	c.now++
	c.apply(c.nodes[1], c.nodes[1].core.Step(c.now, held[0].ev))
	c.deliver(0)
	if signedLeft != 1 {
		t.Fatalf("after one Signed event, %d signed messages left", signedLeft)
	}
}

// A node that restarts from its stored safety data never votes again in a
// round it already voted in, even when it sees the same proposals again.
func TestRestartNeverVotesTwice(t *testing.T) {
	c := newCluster(t, 4)
	var toNode2 [][]byte
	votes := map[uint64]ledger.BlockID{}
	restarted := false
	var stored consensus.Recovery
	c.intercept = func(from, to int, msg []byte) bool {
		if to == 2 && !restarted {
			toNode2 = append(toNode2, msg)
		}
		if from == 2 {
			if v := decodeKind(t, msg).Vote; v != nil {
				if prev, ok := votes[v.Data.Round]; ok && prev != v.Data.BlockID {
					t.Fatalf("node 2 voted twice in round %d", v.Data.Round)
				}
				if restarted && v.Data.Round <= stored.Safety.LastVotedRound {
					t.Fatalf("node 2 voted again in round %d after restarting with last voted round %d",
						v.Data.Round, stored.Safety.LastVotedRound)
				}
				votes[v.Data.Round] = v.Data.BlockID
			}
		}
		return true
	}
	c.runUntil(6, 50_000)
	var err error
	stored, err = c.nodes[2].app.Recovery()
	if err != nil {
		t.Fatal(err)
	}
	if stored.Safety == nil || stored.Safety.LastVotedRound == 0 {
		t.Fatal("node 2 stored no safety data")
	}
	c.crash(2)
	restarted = true
	c.start(c.nodes[2])
	for _, msg := range toNode2 {
		c.queue = append(c.queue, queued{to: 2, ev: consensus.MessageReceived{From: c.keys[0].PublicKey().ID(), Data: msg}})
	}
	c.deliver(len(toNode2) + 200)
	if c.nodes[2].core.Metrics().Received[consensus.KindProposal] == 0 {
		t.Fatal("replayed proposals were not received")
	}
	c.runUntil(c.minHeight()+4, 50_000)
	c.checkAgreement()
}

func TestMisbehavingMessagesAreDroppedAndCounted(t *testing.T) {
	c := newCluster(t, 4)
	var proposal, vote []byte
	c.intercept = func(from, to int, msg []byte) bool {
		m := decodeKind(t, msg)
		if m.Proposal != nil && proposal == nil && to == 1 {
			proposal = msg
		}
		if m.Vote != nil && vote == nil {
			vote = msg
		}
		return true
	}
	c.runUntil(3, 50_000)
	if proposal == nil || vote == nil {
		t.Fatal("no proposal or vote captured")
	}
	target := c.nodes[1]
	step := func(from int, data []byte) {
		c.now++
		c.apply(target, target.core.Step(c.now, consensus.MessageReceived{From: c.keys[from].PublicKey().ID(), Data: data}))
	}
	before := target.core.Metrics()

	step(0, []byte{0xff, 0x00, 0x13})
	step(0, proposal) // stale round by now
	m := decodeKind(t, vote)
	m.Vote.Signature[5] ^= 1
	m.Vote.Data.Round = target.core.Status().Round // fresh round, wrong signature
	forged, _ := m.Encode()
	step(0, forged)
	m = decodeKind(t, vote)
	m.Vote.Data.Epoch = 9
	future, _ := m.Encode()
	step(0, future)

	after := target.core.Metrics()
	for _, r := range []consensus.DropReason{consensus.DropMalformed, consensus.DropStale, consensus.DropFutureEpoch} {
		if after.Dropped[r] <= before.Dropped[r] {
			t.Errorf("%s not counted", r)
		}
	}
	if after.Dropped[consensus.DropBadSignature]+after.Dropped[consensus.DropMisdirected] <= before.Dropped[consensus.DropBadSignature]+before.Dropped[consensus.DropMisdirected] {
		t.Error("forged vote not counted")
	}
	// The node still works.
	c.intercept = nil
	c.runUntil(c.minHeight()+3, 50_000)
	c.checkAgreement()
}

// Rounds that fail make the timeout grow; a QC brings it back to base.
func TestPacemakerBacksOffAndRecovers(t *testing.T) {
	c := newCluster(t, 4)
	block := true
	c.intercept = func(from, to int, msg []byte) bool {
		m := decodeKind(t, msg)
		return !block || m.Timeout != nil
	}
	var timers []uint64
	record := func() {
		for _, e := range c.nodes[0].log {
			if st, ok := e.(consensus.SetTimer); ok {
				timers = append(timers, st.AfterMs)
			}
		}
		c.nodes[0].log = nil
	}
	for i := 0; i < 8; i++ {
		c.fire(5000)
		c.deliver(10_000)
	}
	record()
	p := testParams()
	grew := false
	for i := 1; i < len(timers); i++ {
		if timers[i] > timers[i-1] {
			grew = true
		}
		if timers[i] > p.MaxTimeoutMs {
			t.Fatalf("timeout %d ms above the maximum", timers[i])
		}
	}
	if !grew || timers[len(timers)-1] != p.MaxTimeoutMs {
		t.Fatalf("timeouts did not back off to the maximum: %v", timers)
	}
	block = false
	c.runUntil(c.minHeight()+2, 50_000)
	timers = nil
	record()
	if last := timers[len(timers)-1]; last != p.BaseTimeoutMs {
		t.Fatalf("after progress the timeout is %d ms, want base %d", last, p.BaseTimeoutMs)
	}
}

// A proposal stamped beyond the voter's clock plus the allowed skew gets
// no votes.
func TestVotersRefuseFutureTimestamps(t *testing.T) {
	c := newCluster(t, 4)
	c.runUntil(2, 50_000)
	start := slices.Max(c.heights())
	rewritten := 0
	c.intercept = func(from, to int, msg []byte) bool {
		m := decodeKind(t, msg)
		if m.Proposal == nil {
			return true
		}
		p := m.Proposal
		p.Block.Header.Timestamp = c.now + 1_000_000_000
		sig, err := c.keys[from].Sign(context.Background(), consensus.ProposalSignBytes(chainID, p.Block.Header.ID()))
		if err != nil {
			t.Fatal(err)
		}
		p.Signature = sig
		enc, _ := m.Encode()
		rewritten++
		c.queue = append(c.queue, queued{to: to, ev: consensus.MessageReceived{From: c.keys[from].PublicKey().ID(), Data: enc}})
		return false
	}
	for i := 0; i < 20; i++ {
		c.deliver(2000)
		c.fire(300)
	}
	refused := uint64(0)
	for _, m := range c.nodes {
		refused += m.core.Metrics().Refused[consensus.RefuseTimestampAhead]
	}
	if rewritten == 0 || refused == 0 {
		t.Fatalf("%d proposals rewritten, %d refusals", rewritten, refused)
	}
	// Blocks already certified when the rewriting started may still
	// commit; nothing after them.
	if h := slices.Max(c.heights()); h > start+2 {
		t.Fatalf("blocks from the future committed: height %d, was %d", h, start)
	}
}

// A node that missed more blocks than a fetch carries catches up through
// committed-history sync, verifying commit proofs.
func TestLaggingNodeSyncs(t *testing.T) {
	c := newCluster(t, 4)
	c.crash(3)
	c.runUntil(consensus.MaxFetchBlocks+20, 200_000)
	c.start(c.nodes[3])
	c.runUntil(consensus.MaxFetchBlocks+30, 200_000)
	c.checkAgreement()
	if c.nodes[3].core.Metrics().SyncRequests == 0 {
		t.Fatal("node 3 caught up without sync requests")
	}
	// Blocks that came by sync are marked committed for the application;
	// blocks that came as proposals are not.
	synced := 0
	for _, e := range c.nodes[3].log {
		if v, ok := e.(consensus.ValidateBlock); ok && v.Committed {
			synced++
		}
	}
	if synced == 0 {
		t.Error("no synced block was validated as committed")
	}
	for i, m := range c.nodes[:3] {
		for _, e := range m.log {
			if v, ok := e.(consensus.ValidateBlock); ok && v.Committed {
				t.Fatalf("node %d, never behind, validated block %d as committed", i, v.Block.Header.Height)
			}
		}
	}
}

// A reconfiguration committed in epoch 1 starts epoch 2 on every node at
// the block that carried it; epoch-1 messages are refused afterwards.
func TestEpochChange(t *testing.T) {
	c := newCluster(t, 4)
	admin := newKeys(t, 5)[4]
	next := c.cfg
	next.Validators.Epoch = 2
	next.Validators.Validators = append([]ledger.PeerConfig(nil), c.cfg.Validators.Validators...)
	next.Params.BaseTimeoutMs = 150
	data, err := ledger.Marshal(testapp.ReconfigBody{Validators: next.Validators, Params: next.Params})
	if err != nil {
		t.Fatal(err)
	}
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: chainID, Type: ledger.TxParamsChange, Timestamp: c.now, Nonce: 1,
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(admin.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(admin.PublicKey()), Data: data},
	}}
	if err := tx.Sign(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	var oldVote []byte
	c.intercept = func(from, to int, msg []byte) bool {
		if m := decodeKind(t, msg); m.Vote != nil && m.Vote.Data.Epoch == 1 {
			oldVote = msg
		}
		return true
	}
	c.runUntil(2, 50_000)
	// Every proposer offers the reconfiguration until it commits.
	c.mempool = append(c.mempool, tx)
	for steps := 0; steps < 200; steps++ {
		c.runUntil(c.minHeight()+1, 50_000)
		done := true
		for _, m := range c.nodes {
			if m.core.Status().Epoch != 2 {
				done = false
			}
		}
		if done {
			break
		}
	}
	for _, m := range c.nodes {
		if st := m.core.Status(); st.Epoch != 2 {
			t.Fatalf("node %d still in epoch %d", m.idx, st.Epoch)
		}
	}
	c.runUntil(c.minHeight()+3, 50_000)
	c.checkAgreement()
	before := c.nodes[0].core.Metrics().Dropped[consensus.DropStaleEpoch]
	c.now++
	c.apply(c.nodes[0], c.nodes[0].core.Step(c.now, consensus.MessageReceived{From: c.keys[1].PublicKey().ID(), Data: oldVote}))
	if c.nodes[0].core.Metrics().Dropped[consensus.DropStaleEpoch] != before+1 {
		t.Fatal("an epoch-1 vote was not refused in epoch 2")
	}
	// Every node switched at the same block.
	var root ledger.BlockID
	for h := uint64(1); h <= c.minHeight(); h++ {
		b := c.nodes[0].app.Block(h)
		if b.Header.Epoch == 2 {
			root = b.Header.PrevHash
			break
		}
	}
	if root.IsZero() {
		t.Fatal("no epoch-2 block committed")
	}
}

// Every block a node votes for or proposes is stored with the safety data
// of a Sign before the signature: a proposal's Sign carries the block, a
// vote's Sign carries it unless the node proposed it (and stored it)
// itself. Each Sign names what it signs and for which block.
func TestSignStoresEachBlockOnce(t *testing.T) {
	c := newCluster(t, 4)
	c.runUntil(10, 100_000)
	ownVotes := 0
	for _, m := range c.nodes {
		stored := map[ledger.BlockID]bool{}
		for _, e := range m.log {
			s, ok := e.(consensus.Sign)
			if !ok {
				continue
			}
			if s.Block != nil {
				if id := s.Block.Block.Header.ID(); id != s.For {
					t.Fatalf("node %d: Sign for %s stores block %s", m.idx, s.For, id)
				}
			}
			switch s.Kind {
			case consensus.KindProposal:
				if s.Block == nil {
					t.Fatalf("node %d: a proposal's Sign without its block", m.idx)
				}
			case consensus.KindVote:
				if s.Block == nil {
					if !stored[s.For] {
						t.Fatalf("node %d votes for %s, which no Sign stored", m.idx, s.For)
					}
					ownVotes++
				} else if stored[s.For] {
					t.Fatalf("node %d stores block %s a second time", m.idx, s.For)
				}
			case consensus.KindTimeout:
				if s.Block != nil || s.For != (ledger.BlockID{}) {
					t.Fatalf("node %d: a timeout's Sign names a block", m.idx)
				}
			default:
				t.Fatalf("node %d: Sign of kind %v", m.idx, s.Kind)
			}
			if s.Block != nil {
				stored[s.For] = true
			}
		}
	}
	if ownVotes == 0 {
		t.Fatal("no leader voted for its own proposal: the test exercised nothing")
	}
}

// The leader that forms a QC committing its parent announces it at once:
// on a perfect network the other nodes commit on that announcement, before
// the next proposal (which carries the same QC) reaches them.
func TestQCAnnouncementCommitsBeforeNextProposal(t *testing.T) {
	c := newCluster(t, 4)
	byKind := map[consensus.Kind]int{}
	c.runObserved(12, 20_000, func(_ *member, ev consensus.Event, effs []consensus.Effect) []consensus.Effect {
		if mr, ok := ev.(consensus.MessageReceived); ok {
			for _, e := range effs {
				if _, ok := e.(consensus.Commit); ok {
					byKind[decodeKind(t, mr.Data).Kind()]++
				}
			}
		}
		return effs
	})
	c.checkAgreement()
	if byKind[consensus.KindSyncInfo] == 0 || byKind[consensus.KindProposal] > byKind[consensus.KindSyncInfo]/4 {
		t.Fatalf("commits by the message that brought them: %v; want almost all by QC announcements (sync info)", byKind)
	}
	for _, m := range c.nodes {
		if mm := m.core.Metrics(); mm.QCsAnnounced == 0 || mm.QCsAnnounced > mm.QCsFormed {
			t.Errorf("node %d: %d QCs formed, %d announced", m.idx, mm.QCsFormed, mm.QCsAnnounced)
		}
	}
}

// An application may stamp its block later than the core asked (it waited
// for transactions) but not beyond the leader's clock plus the allowed
// skew: such a block is not proposed.
func TestBuiltBlockTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		later   int64
		commits bool
	}{{"later", 7, true}, {"beyond the skew", 1 << 40, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			stamped := 0
			asked := map[uint64]int64{} // round -> requested timestamp
			c.runObserved(6, 5_000, func(_ *member, _ consensus.Event, effs []consensus.Effect) []consensus.Effect {
				for i, e := range effs {
					if b, ok := e.(consensus.BuildProposal); ok {
						asked[b.Round] = b.Timestamp
						b.Timestamp += tc.later
						effs[i] = b
					}
					if b, ok := e.(consensus.Broadcast); ok && b.Kind == consensus.KindProposal {
						h := decodeKind(t, b.Message).Proposal.Block.Header
						if _, ok := asked[h.Round]; !ok {
							continue // asked for before this loop
						}
						if h.Timestamp != asked[h.Round]+tc.later {
							t.Fatalf("round %d proposed stamped %d, asked %d + %d", h.Round, h.Timestamp, asked[h.Round], tc.later)
						}
						stamped++
					}
				}
				return effs
			})
			if got := c.minHeight() >= 6; got != tc.commits {
				t.Fatalf("heights %v: committing %v, want %v", c.heights(), got, tc.commits)
			}
			if !tc.commits {
				if stamped != 0 {
					t.Fatalf("%d blocks stamped beyond the leader's clock were proposed", stamped)
				}
			} else if stamped == 0 {
				t.Fatal("no proposal went out")
			}
		})
	}
}
