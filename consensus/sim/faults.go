package sim

import (
	"context"
	"slices"

	"hallmark/consensus"
	"hallmark/consensus/internal/testapp"
	"hallmark/gm"
	"hallmark/ledger"
)

// schedule plans the faulty phase: partitions, crashes and
// reconfigurations at seeded times, and the moment the faults stop.
func (s *sim) schedule() {
	end := startTime + s.cfg.FaultMs
	for i := 0; i < s.cfg.Partitions; i++ {
		from := startTime + s.rng.Int64N(s.cfg.FaultMs*4/5+1)
		until := min(end, from+200+s.rng.Int64N(s.cfg.FaultMs/2+1))
		groups := make([]int, len(s.nodes))
		for j := range groups {
			groups[j] = s.rng.IntN(2)
		}
		s.at(from, func() {
			s.partition = groups
			s.tracef("partition %v", groups)
		})
		s.at(until, func() {
			s.partition = nil
			s.tracef("partition healed")
		})
	}
	for i := 0; i < s.cfg.Crashes; i++ {
		victim := s.nodes[s.rng.IntN(len(s.nodes))]
		at := startTime + s.rng.Int64N(s.cfg.FaultMs*4/5+1)
		back := min(end, at+50+s.rng.Int64N(1000))
		s.at(at, func() { s.crash(victim) })
		s.at(back, func() { s.restart(victim) })
	}
	for i := 0; i < s.cfg.Reconfigs; i++ {
		s.at(startTime+s.rng.Int64N(s.cfg.FaultMs+1), s.injectReconfig)
	}
	s.at(end, s.stabilise)
}

func (s *sim) crash(n *node) {
	if !n.alive {
		return
	}
	n.alive = false
	n.core = nil
	s.tracef("node %d crashes", n.idx)
}

func (s *sim) restart(n *node) {
	if n.alive {
		return
	}
	if err := s.start(n); err != nil {
		s.violate("restart", "%v", err)
	}
}

// stabilise ends the faulty phase: partitions heal, crashed nodes come
// back, the network stops losing and duplicating messages. Byzantine
// validators keep misbehaving.
func (s *sim) stabilise() {
	s.stable = true
	s.partition = nil
	for _, n := range s.nodes {
		s.restart(n)
		s.stableHeight = max(s.stableHeight, n.app.Height())
	}
	s.tracef("faults stop at height %d", s.stableHeight)
}

// injectReconfig puts a reconfiguration transaction into every proposer's
// pool: a key rotation, a parameter change, or a validator removed or
// added back, always keeping the Byzantine validators within f.
func (s *sim) injectReconfig() {
	cur := s.refEpoch()
	if s.pending > cur.Epoch() {
		return
	}
	set := ledger.ValidatorSet{Epoch: cur.Epoch() + 1, Validators: slices.Clone(cur.Validators.Validators)}
	params := cur.Params
	var txType ledger.TxType
	switch op := s.rng.IntN(4); {
	case op == 0:
		i := s.rng.IntN(len(set.Validators))
		n := s.byAddr(set.Validators[i].Address)
		k := keyFor(s.cfg.Seed, n.idx, len(n.keys))
		id := k.PublicKey().ID()
		n.keys[id] = k
		n.key = id
		s.owner[id] = n.idx
		set.Validators[i] = peerConfig(k, n.addr)
		txType = ledger.TxNodeRotateKey
		s.tracef("reconfig: rotate node %d's key", n.idx)
	case op == 1 && len(s.removed) > 0:
		n := s.nodes[s.removed[0]]
		if s.byzIn(set.Validators)+boolInt(!n.honest) > (len(set.Validators))/3 {
			return
		}
		s.removed = s.removed[1:]
		set.Validators = append(set.Validators, peerConfig(n.keys[n.key], n.addr))
		txType = ledger.TxNodeAdd
		s.tracef("reconfig: add node %d back", n.idx)
	case op == 1:
		i := s.rng.IntN(len(set.Validators))
		n := s.byAddr(set.Validators[i].Address)
		left := slices.Delete(slices.Clone(set.Validators), i, i+1)
		if len(left) < 3 || s.byzIn(left) > (len(left)-1)/3 {
			return
		}
		set.Validators = left
		s.removed = append(s.removed, n.idx)
		txType = ledger.TxNodeRemove
		s.tracef("reconfig: remove node %d", n.idx)
	default:
		params.BaseTimeoutMs = 200 + 100*uint64(s.rng.IntN(3))
		params.EpochLength = uint64(s.rng.IntN(6))
		txType = ledger.TxParamsChange
		s.tracef("reconfig: base timeout %d ms, epoch length %d", params.BaseTimeoutMs, params.EpochLength)
	}
	data, err := ledger.Marshal(testapp.ReconfigBody{Validators: set, Params: params})
	if err != nil {
		s.violate("reconfig", "encode: %v", err)
		return
	}
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: ChainID, Type: txType, Timestamp: s.now, Nonce: 1000 + set.Epoch,
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(s.adminKey.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(s.adminKey.PublicKey()), Data: data},
	}}
	if err := tx.Sign(context.Background(), s.adminKey); err != nil {
		s.violate("reconfig", "sign: %v", err)
		return
	}
	s.mempool = append(s.mempool, tx)
	s.pending = set.Epoch
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *sim) byAddr(addr string) *node {
	for _, n := range s.nodes {
		if n.addr == addr {
			return n
		}
	}
	panic("sim: no node at " + addr)
}

func (s *sim) byzIn(vs []ledger.PeerConfig) int {
	c := 0
	for _, v := range vs {
		if !s.byAddr(v.Address).honest {
			c++
		}
	}
	return c
}

// equivocate sends the proposal to half of the validators and a second
// valid block for the same round to the other half.
func (s *sim) equivocate(n *node, b consensus.Broadcast) bool {
	m, err := consensus.DecodeMessage(b.Message)
	if err != nil || m.Proposal == nil {
		return false
	}
	p := *m.Proposal
	key := n.keys[p.Block.Header.Proposer]
	if key == nil {
		return false
	}
	p.Block.Header.Timestamp++
	altID := p.Block.Header.ID()
	sig, err := key.Sign(context.Background(), consensus.ProposalSignBytes(ChainID, altID))
	if err != nil {
		return false
	}
	p.Signature = sig
	alt, err := (&consensus.Message{Version: consensus.Version, Proposal: &p}).Encode()
	if err != nil {
		return false
	}
	h := &p.Block.Header
	n.alt[h.Round] = consensus.VoteData{Epoch: h.Epoch, Round: h.Round, BlockID: altID, Height: h.Height,
		ParentID: h.PrevHash, ParentRound: p.Justify.Data.Round}
	for i, to := range b.To {
		msg := b.Message
		if i%2 == 1 {
			msg = alt
		}
		s.outgoing(n, to, b.Kind, msg)
	}
	return true
}

// doubleVote sends a second, conflicting vote for the same round.
func (s *sim) doubleVote(n *node, to gm.KeyID, msg []byte) {
	m, err := consensus.DecodeMessage(msg)
	if err != nil || m.Vote == nil {
		return
	}
	v := *m.Vote
	ev := s.verifiers[v.Data.Epoch]
	if ev == nil || int(v.Voter) >= ev.N() {
		return
	}
	key := n.keys[ev.KeyID(int(v.Voter))]
	if key == nil {
		return
	}
	if alt, ok := n.alt[v.Data.Round]; ok && alt.Epoch == v.Data.Epoch && alt.BlockID != v.Data.BlockID {
		v.Data = alt
	} else {
		v.Data.BlockID = gm.SM3([]byte{byte(s.rng.Uint32()), byte(v.Data.Round)})
	}
	sig, err := key.Sign(context.Background(), consensus.VoteSignBytes(ChainID, v.Data))
	if err != nil {
		return
	}
	v.Signature = sig
	enc, err := (&consensus.Message{Version: consensus.Version, Vote: &v}).Encode()
	if err != nil {
		return
	}
	s.transmit(n, s.owner[to], enc)
}

// observe records the QC each proposal a forking node sees carries.
func (s *sim) observe(n *node, data []byte) {
	m, err := consensus.DecodeMessage(data)
	if err != nil || m.Proposal == nil {
		return
	}
	if len(n.justifyOf) > 4096 {
		clear(n.justifyOf)
	}
	n.justifyOf[m.Proposal.Block.Header.ID()] = m.Proposal.Justify
}

// fork replaces a proposal made after a timeout by one that extends the
// parent of the block its QC certifies: a block the timeout certificate's
// signers may have moved past. Correct voters refuse it (it extends a QC
// below the TC's highest); voters without that rule would fork the chain.
func (s *sim) fork(n *node, msg []byte) []byte {
	m, err := consensus.DecodeMessage(msg)
	if err != nil || m.Proposal == nil || m.Proposal.TC == nil {
		return nil
	}
	p := m.Proposal
	// Walk down from the block the QC certifies to a random ancestor
	// still above what this node committed.
	jq, ok := n.justifyOf[p.Justify.Data.BlockID]
	if !ok || jq.Data.Epoch != p.Block.Header.Epoch {
		return nil
	}
	for depth := s.rng.IntN(3); depth > 0; depth-- {
		deeper, ok := n.justifyOf[jq.Data.BlockID]
		if !ok || deeper.Data.Epoch != jq.Data.Epoch || deeper.Data.Height < n.app.Height() {
			break
		}
		jq = deeper
	}
	parent := n.app.State(jq.Data.BlockID)
	key := n.keys[p.Block.Header.Proposer]
	if parent == nil || key == nil {
		return nil
	}
	h := &p.Block.Header
	req := consensus.BuildProposal{Epoch: h.Epoch, Round: h.Round, Height: parent.Height + 1,
		Parent:    consensus.BlockRef{ID: parent.ID, Height: parent.Height, Timestamp: parent.Time},
		Timestamp: max(h.Timestamp, parent.Time+1), Proposer: h.Proposer}
	b, _, err := testapp.Build(parent, req, ChainID, nil, false)
	if err != nil {
		return nil
	}
	sig, err := key.Sign(context.Background(), consensus.ProposalSignBytes(ChainID, b.Header.ID()))
	if err != nil {
		return nil
	}
	fork := &consensus.Proposal{Block: *b, Justify: jq, TC: p.TC, Signature: sig}
	// The forking node votes for its fork too.
	fh := &b.Header
	n.alt[fh.Round] = consensus.VoteData{Epoch: fh.Epoch, Round: fh.Round, BlockID: fh.ID(), Height: fh.Height,
		ParentID: fh.PrevHash, ParentRound: jq.Data.Round}
	enc, err := (&consensus.Message{Version: consensus.Version, Proposal: fork}).Encode()
	if err != nil {
		return nil
	}
	s.tracef("node %d forks round %d onto height %d", n.idx, h.Round, parent.Height)
	return enc
}
