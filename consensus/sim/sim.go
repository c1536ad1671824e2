package sim

import (
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"slices"

	"hallmark/consensus"
	"hallmark/consensus/internal/testapp"
	"hallmark/gm"
	"hallmark/ledger"
)

// ChainID is the chain id of simulated runs.
const ChainID = "hallmark-sim"

// startTime is the virtual clock at the start of a run (ms since 1970).
const startTime = 1_700_000_000_000

// Result summarises a run.
type Result struct {
	Config Config
	// Heights is each node's committed height at the end.
	Heights []uint64
	// MaxHeight is the highest committed height.
	MaxHeight uint64
	// StableHeight is the highest height any node had when the faults
	// stopped.
	StableHeight uint64
	Epoch        uint64
	Events       int
	Messages     int
	VirtualMs    int64
	// LivenessMs is how long after the faults stopped the liveness goal
	// was met.
	LivenessMs int64
	Metrics    consensus.Metrics // summed over honest nodes
}

// Violation is a broken safety or liveness property.
type Violation struct {
	Seed     uint64
	N        int
	Property string
	Detail   string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("%s violated: %s\nreplay: go test ./consensus/sim -run TestSeed -seed=%d -nodes=%d -v",
		v.Property, v.Detail, v.Seed, v.N)
}

// Options are knobs that do not change a run's outcome.
type Options struct {
	// Trace, if set, receives a line per event.
	Trace io.Writer
	// Verifier is shared signature verification (nil: a fresh cache).
	Verifier consensus.Verifier
	// FakeCrypto replaces SM2 signing and verification by stand-ins
	// that cost nothing, to measure the protocol's own overhead. It
	// accepts every signature, so only fault-free runs make sense with
	// it; benchmarks use it, tests never do.
	FakeCrypto bool
}

// noCrypto signs with a digest and accepts every signature.
type noCrypto struct{}

func (noCrypto) Verify(*gm.PublicKey, []byte, gm.Signature) bool { return true }

func fakeSign(msg []byte) gm.Signature {
	var s gm.Signature
	d := gm.SM3(msg)
	copy(s[:], d[:])
	copy(s[32:], d[:])
	return s
}

type itemKind int

const (
	itemEvent itemKind = iota
	itemControl
)

type item struct {
	at   int64
	seq  uint64
	kind itemKind
	node int
	inc  int
	ev   consensus.Event
	ctl  func()
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

type node struct {
	idx         int
	addr        string
	key         gm.KeyID // newest key
	keys        map[gm.KeyID]*gm.PrivateKey
	core        *consensus.Core
	app         *testapp.App
	alive       bool
	inc         int
	byz         Behaviour
	honest      bool
	clockOffset int64
	// alt remembers, per round, the second block an equivocating node
	// proposed, for its double votes.
	alt map[uint64]consensus.VoteData
	// justifyOf remembers the QC each block it saw was proposed with,
	// for a forking node.
	justifyOf map[ledger.BlockID]consensus.QC
}

type roundKey struct{ epoch, round uint64 }

type sim struct {
	cfg   Config
	opts  Options
	rng   *rand.Rand
	now   int64
	seq   uint64
	q     queue
	nodes []*node
	owner map[gm.KeyID]int

	genesis   ledger.Header
	refStates []*testapp.State // reference execution of the committed chain, by height
	committed []ledger.BlockID // agreed block id by height
	verifiers map[uint64]*consensus.EpochVerifier
	votes     map[int]map[roundKey]ledger.BlockID
	timeouts  map[int]map[roundKey]bool

	fillers   []ledger.Transaction
	mempool   []ledger.Transaction
	adminKey  *gm.PrivateKey
	removed   []int // node indices removed from the validator set
	pending   uint64
	partition []int

	stable       bool
	stableHeight uint64
	doneAt       int64
	events       int
	messages     int
	fail         *Violation
}

// Run simulates one configuration and returns its result, or a
// *Violation if a property broke.
func Run(cfg Config, opts Options) (res *Result, err error) {
	s, err := newSim(cfg, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = &Violation{Seed: cfg.Seed, N: cfg.N, Property: "no panic", Detail: fmt.Sprintf("%v\n%s", r, debug.Stack())}
		}
	}()
	return s.run()
}

func keyFor(seed uint64, node, gen int) *gm.PrivateKey {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:], seed)
	binary.BigEndian.PutUint64(b[8:], uint64(node))
	binary.BigEndian.PutUint64(b[16:], uint64(gen))
	for ctr := byte(0); ; ctr++ {
		d := gm.SM3Concat([]byte("hallmark/sim/key\x00"), b[:], []byte{ctr})
		if k, err := gm.NewPrivateKey(d[:]); err == nil {
			return k
		}
	}
}

func peerConfig(k *gm.PrivateKey, addr string) ledger.PeerConfig {
	return ledger.PeerConfig{
		ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "sim", PeerID: k.PublicKey().ID(),
		Address: addr, PublicKey: ledger.KeyBytes(k.PublicKey()),
	}
}

func newSim(cfg Config, opts Options) (*sim, error) {
	if cfg.N < 1 || cfg.N > consensus.MaxValidators {
		return nil, fmt.Errorf("sim: n = %d", cfg.N)
	}
	if cfg.Byzantine > (cfg.N-1)/3 {
		return nil, fmt.Errorf("sim: %d Byzantine validators exceed f = %d", cfg.Byzantine, (cfg.N-1)/3)
	}
	if opts.FakeCrypto {
		opts.Verifier = noCrypto{}
	}
	if opts.Verifier == nil {
		opts.Verifier = NewCachedVerifier()
	}
	s := &sim{
		cfg: cfg, opts: opts,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x51)),
		now:       startTime,
		owner:     make(map[gm.KeyID]int),
		verifiers: make(map[uint64]*consensus.EpochVerifier),
		votes:     make(map[int]map[roundKey]ledger.BlockID),
		timeouts:  make(map[int]map[roundKey]bool),
		adminKey:  keyFor(cfg.Seed, 1<<20, 0),
	}
	set := ledger.ValidatorSet{Epoch: 1}
	for i := 0; i < cfg.N; i++ {
		k := keyFor(cfg.Seed, i, 0)
		n := &node{idx: i, addr: fmt.Sprintf("10.0.%d.%d:7000", i/256, i%256), key: k.PublicKey().ID(),
			keys:   map[gm.KeyID]*gm.PrivateKey{k.PublicKey().ID(): k},
			honest: true, alt: make(map[uint64]consensus.VoteData), justifyOf: make(map[ledger.BlockID]consensus.QC)}
		n.clockOffset = s.rng.Int64N(2*cfg.ClockSkewMs+1) - cfg.ClockSkewMs
		s.owner[k.PublicKey().ID()] = i
		set.Validators = append(set.Validators, peerConfig(k, n.addr))
		s.nodes = append(s.nodes, n)
	}
	// The last validators are the Byzantine ones: leader rotation visits
	// them like any other.
	for i := 0; i < cfg.Byzantine; i++ {
		n := s.nodes[cfg.N-1-i]
		n.honest = false
		n.byz = cfg.Behaviours
	}
	ecfg := consensus.EpochConfig{Validators: set, Params: cfg.Params}
	var gs *testapp.State
	s.genesis, gs = testapp.Genesis(ChainID, ecfg, startTime-1000)
	s.refStates = []*testapp.State{gs}
	s.committed = []ledger.BlockID{gs.ID}
	ev, err := consensus.NewEpochVerifier(ChainID, ecfg, consensus.RefOf(&s.genesis), opts.Verifier)
	if err != nil {
		return nil, err
	}
	s.verifiers[1] = ev
	for i := 0; i < 4; i++ {
		tx, err := fillerTx(s.adminKey, i)
		if err != nil {
			return nil, err
		}
		s.fillers = append(s.fillers, tx)
	}
	for _, n := range s.nodes {
		n.app = testapp.NewApp(ChainID, n.addr, s.genesis, gs)
		n.app.AcceptAll = n.byz&InvalidVote != 0
		n.app.KeepStates = n.byz&Fork != 0
	}
	return s, nil
}

func fillerTx(key *gm.PrivateKey, i int) (ledger.Transaction, error) {
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: ChainID, Type: ledger.TxRecordPut, Timestamp: startTime, Nonce: uint64(i),
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(key.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(key.PublicKey()), Data: []byte(fmt.Sprintf("record %d", i))},
	}}
	err := tx.Sign(context.Background(), key)
	return tx, err
}

func (s *sim) push(it *item) {
	s.seq++
	it.seq = s.seq
	heap.Push(&s.q, it)
}

func (s *sim) at(t int64, f func()) { s.push(&item{at: t, kind: itemControl, ctl: f}) }

func (s *sim) deliver(t int64, n *node, ev consensus.Event) {
	s.push(&item{at: t, kind: itemEvent, node: n.idx, inc: n.inc, ev: ev})
}

func (s *sim) tracef(format string, args ...any) {
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "%8d ", s.now-startTime)
		fmt.Fprintf(s.opts.Trace, format, args...)
		fmt.Fprintln(s.opts.Trace)
	}
}

func (s *sim) violate(property, format string, args ...any) {
	if s.fail == nil {
		s.fail = &Violation{Seed: s.cfg.Seed, N: s.cfg.N, Property: property, Detail: fmt.Sprintf(format, args...)}
	}
}

func (s *sim) run() (*Result, error) {
	s.schedule()
	for _, n := range s.nodes {
		if err := s.start(n); err != nil {
			return nil, err
		}
	}
	deadline := startTime + s.cfg.FaultMs + s.cfg.StableMs
	for s.q.Len() > 0 && s.fail == nil && s.doneAt == 0 {
		it := heap.Pop(&s.q).(*item)
		if it.at > deadline {
			break
		}
		s.now = it.at
		s.events++
		if it.kind == itemControl {
			it.ctl()
			continue
		}
		n := s.nodes[it.node]
		if !n.alive || n.inc != it.inc {
			continue
		}
		s.step(n, it.ev)
	}
	if s.fail == nil && s.doneAt == 0 {
		s.violate("liveness", "after the faults stopped at %d ms, honest validators did not all commit %d blocks past height %d within %d ms (heights %v)\n%s",
			s.cfg.FaultMs, s.cfg.LivenessBlocks, s.stableHeight, s.cfg.StableMs, s.heights(), s.describe())
	}
	res := &Result{Config: s.cfg, Heights: s.heights(), StableHeight: s.stableHeight, Events: s.events,
		Messages: s.messages, VirtualMs: s.now - startTime, Epoch: s.refEpoch().Epoch()}
	for _, h := range res.Heights {
		res.MaxHeight = max(res.MaxHeight, h)
	}
	if s.doneAt != 0 {
		res.LivenessMs = s.doneAt - startTime - s.cfg.FaultMs
	}
	for _, n := range s.nodes {
		if n.honest && n.core != nil {
			m := n.core.Metrics()
			addMetrics(&res.Metrics, &m)
		}
	}
	if s.fail != nil {
		return res, s.fail
	}
	return res, nil
}

func addMetrics(dst, src *consensus.Metrics) {
	for i := range dst.Received {
		dst.Received[i] += src.Received[i]
	}
	for i := range dst.Dropped {
		dst.Dropped[i] += src.Dropped[i]
	}
	for i := range dst.Refused {
		dst.Refused[i] += src.Refused[i]
	}
	dst.ProposalsSent += src.ProposalsSent
	dst.VotesSent += src.VotesSent
	dst.TimeoutsSent += src.TimeoutsSent
	dst.QCsFormed += src.QCsFormed
	dst.TCsFormed += src.TCsFormed
	dst.RoundsEntered += src.RoundsEntered
	dst.LocalTimeouts += src.LocalTimeouts
	dst.BlocksCommitted += src.BlocksCommitted
	dst.Commits += src.Commits
	dst.EpochChanges += src.EpochChanges
	dst.Validations += src.Validations
	dst.ValidationErrors += src.ValidationErrors
	dst.SignRequests += src.SignRequests
	dst.FetchRequests += src.FetchRequests
	dst.SyncRequests += src.SyncRequests
	dst.SyncServed += src.SyncServed
	dst.CommitStalled += src.CommitStalled
}

func (s *sim) heights() []uint64 {
	hs := make([]uint64, len(s.nodes))
	for i, n := range s.nodes {
		hs[i] = n.app.Height()
	}
	return hs
}

func (s *sim) refEpoch() *consensus.EpochConfig {
	tip := s.refStates[len(s.refStates)-1]
	if tip.Next != nil {
		return tip.Next
	}
	return &tip.Epoch
}

// start (re)starts a node's core from its stored state.
func (s *sim) start(n *node) error {
	rec, err := n.app.Recovery()
	if err != nil {
		return fmt.Errorf("sim: node %d recovery: %w", n.idx, err)
	}
	core, err := consensus.New(consensus.Config{ChainID: ChainID, Verifier: s.opts.Verifier}, rec)
	if err != nil {
		return fmt.Errorf("sim: node %d start: %w", n.idx, err)
	}
	n.core = core
	n.alive = true
	n.inc++
	s.tracef("node %d starts at height %d epoch %d", n.idx, rec.Root.Height, rec.Epoch.Epoch())
	s.effects(n, core.Start(s.now+n.clockOffset))
	return nil
}

func (s *sim) step(n *node, ev consensus.Event) {
	if s.opts.Trace != nil {
		s.traceEvent(n, ev)
	}
	if m, ok := ev.(consensus.MessageReceived); ok && n.byz&Fork != 0 {
		s.observe(n, m.Data)
	}
	s.effects(n, n.core.Step(s.now+n.clockOffset, ev))
}

func (s *sim) traceEvent(n *node, ev consensus.Event) {
	switch e := ev.(type) {
	case consensus.MessageReceived:
		m, err := consensus.DecodeMessage(e.Data)
		kind := "garbage"
		if err == nil {
			kind = m.Kind().String()
		}
		s.tracef("node %d <- %d %s (%d bytes)", n.idx, s.owner[e.From], kind, len(e.Data))
	case consensus.TimerFired:
		st := n.core.Status()
		s.tracef("node %d timer (epoch %d round %d)", n.idx, st.Epoch, st.Round)
	default:
		s.tracef("node %d %T", n.idx, ev)
	}
}

// effects carries out a node's effects: the simulated driver.
func (s *sim) effects(n *node, effs []consensus.Effect) {
	for _, e := range effs {
		if s.fail != nil {
			return
		}
		switch e := e.(type) {
		case consensus.Send:
			s.outgoing(n, e.To, e.Kind, e.Message)
		case consensus.Broadcast:
			s.broadcast(n, e)
		case consensus.Sign:
			s.sign(n, e)
		case consensus.ValidateBlock:
			res := n.app.Validate(e)
			if res.Err != nil {
				s.tracef("node %d rejects block %d round %d: %v", n.idx, e.Block.Header.Height, e.Block.Header.Round, res.Err)
			}
			s.deliver(s.now+1+s.rng.Int64N(5), n, res)
		case consensus.BuildProposal:
			s.build(n, e)
		case consensus.Commit:
			s.commit(n, e)
		case consensus.SetTimer:
			s.deliver(s.now+int64(e.AfterMs), n, consensus.TimerFired{Seq: e.Seq})
		case consensus.ServeSync:
			msg, err := consensus.BuildSyncResponse(n.app, e.Request)
			if err != nil {
				s.violate("sync serving", "node %d: %v", n.idx, err)
				return
			}
			s.outgoing(n, e.To, consensus.KindSyncResponse, msg)
		}
	}
}

func (s *sim) sign(n *node, e consensus.Sign) {
	if n.honest {
		s.checkSign(n, e)
	}
	if err := n.app.SaveSafety(e.Safety, e.Block); err != nil {
		s.violate("safety storage", "node %d: %v", n.idx, err)
		return
	}
	key := n.keys[e.Key]
	ev := consensus.Signed{Seq: e.Seq}
	switch {
	case key == nil:
		ev.Err = fmt.Errorf("no key %s", e.Key)
	case s.opts.FakeCrypto:
		ev.Signature = fakeSign(e.Message)
	default:
		sig, err := key.Sign(context.Background(), e.Message)
		ev.Signature, ev.Err = sig, err
	}
	s.deliver(s.now+1+s.rng.Int64N(3), n, ev)
}

// checkSign checks the safety data an honest node stores with each
// signature: it never goes back within an epoch.
func (s *sim) checkSign(n *node, e consensus.Sign) {
	_ = n
	if e.Safety.Version != consensus.Version {
		s.violate("safety data", "node %d stored safety data of version %d", n.idx, e.Safety.Version)
	}
}

func (s *sim) build(n *node, e consensus.BuildProposal) {
	var txs []ledger.Transaction
	for _, i := range s.rng.Perm(len(s.fillers))[:s.rng.IntN(3)] {
		txs = append(txs, s.fillers[i])
	}
	txs = append(txs, s.mempool...)
	res := n.app.Build(e, txs, n.byz&InvalidVote != 0 && s.rng.IntN(2) == 0)
	s.deliver(s.now+1+s.rng.Int64N(5), n, res)
}

func (s *sim) broadcast(n *node, b consensus.Broadcast) {
	if !n.honest && b.Kind == consensus.KindProposal {
		if n.byz&Fork != 0 {
			s.observe(n, b.Message)
			if fork := s.fork(n, b.Message); fork != nil {
				b.Message = fork
			}
		}
		if n.byz&Equivocate != 0 && s.equivocate(n, b) {
			return
		}
	}
	for _, to := range b.To {
		s.outgoing(n, to, b.Kind, b.Message)
	}
}

// outgoing applies a Byzantine node's behaviour and the honest-node
// checks, then hands the message to the network.
func (s *sim) outgoing(n *node, to gm.KeyID, kind consensus.Kind, msg []byte) {
	dst, ok := s.owner[to]
	if !ok {
		s.violate("addressing", "node %d sends to unknown key %s", n.idx, to)
		return
	}
	if n.honest {
		if kind == consensus.KindVote || kind == consensus.KindTimeout {
			s.checkVote(n, msg)
		}
	} else {
		if n.byz&Silent != 0 {
			return
		}
		if n.byz&(DoubleVote|Fork) != 0 && kind == consensus.KindVote {
			s.doubleVote(n, to, msg)
		}
		if n.byz&Garbage != 0 && s.rng.IntN(4) == 0 {
			bad := slices.Clone(msg)
			if s.rng.IntN(2) == 0 {
				bad[s.rng.IntN(len(bad))] ^= byte(1 + s.rng.IntN(255))
			} else {
				bad = make([]byte, 1+s.rng.IntN(64))
				for i := range bad {
					bad[i] = byte(s.rng.Uint32())
				}
			}
			s.transmit(n, dst, bad)
		}
	}
	if !n.honest && n.byz&Withhold != 0 && kind == consensus.KindProposal {
		s.transmitLate(n, dst, msg, int64(s.cfg.Params.BaseTimeoutMs)*(1+s.rng.Int64N(3)))
		return
	}
	s.transmit(n, dst, msg)
}

// transmit puts a message on the simulated network.
func (s *sim) transmit(from *node, to int, msg []byte) { s.transmitLate(from, to, msg, 0) }

func (s *sim) transmitLate(from *node, to int, msg []byte, late int64) {
	if to == from.idx {
		return
	}
	s.messages++
	dst := s.nodes[to]
	if !s.stable {
		if s.partition != nil && s.partition[from.idx] != s.partition[to] {
			return
		}
		if s.rng.Float64() < s.cfg.DropRate {
			return
		}
	}
	copies := 1
	if !s.stable && s.rng.Float64() < s.cfg.DupRate {
		copies = 2
	}
	maxDelay := s.cfg.MaxDelayMs
	if s.stable {
		maxDelay = s.cfg.StableDelayMs
	}
	fromKey := s.keyOf(from)
	for i := 0; i < copies; i++ {
		d := s.cfg.MinDelayMs + s.rng.Int64N(max(1, maxDelay-s.cfg.MinDelayMs+1))
		s.deliver(s.now+late+d, dst, consensus.MessageReceived{From: fromKey, Data: msg})
	}
}

// keyOf returns the key a node's peers know it by (its newest key).
func (s *sim) keyOf(n *node) gm.KeyID { return n.key }

// checkVote records an honest node's votes and timeouts and fails the run
// if it ever votes twice in a round or votes after timing out.
func (s *sim) checkVote(n *node, msg []byte) {
	m, err := consensus.DecodeMessage(msg)
	if err != nil {
		s.violate("encoding", "node %d sent an undecodable message: %v", n.idx, err)
		return
	}
	if s.votes[n.idx] == nil {
		s.votes[n.idx] = make(map[roundKey]ledger.BlockID)
		s.timeouts[n.idx] = make(map[roundKey]bool)
	}
	if v := m.Vote; v != nil {
		k := roundKey{v.Data.Epoch, v.Data.Round}
		if prev, ok := s.votes[n.idx][k]; ok && prev != v.Data.BlockID {
			s.violate("one vote per round", "honest node %d voted for %s and %s in epoch %d round %d",
				n.idx, prev, v.Data.BlockID, k.epoch, k.round)
		}
		if s.timeouts[n.idx][k] {
			s.violate("no vote after timeout", "honest node %d voted in epoch %d round %d after timing out in it", n.idx, k.epoch, k.round)
		}
		s.votes[n.idx][k] = v.Data.BlockID
	}
	if t := m.Timeout; t != nil {
		s.timeouts[n.idx][roundKey{t.Epoch, t.Round}] = true
	}
}

// commit checks an honest node's commit against every other node's and
// against an independent execution of the chain, then applies it.
func (s *sim) commit(n *node, c consensus.Commit) {
	if !n.honest {
		if err := n.app.Commit(c); err != nil {
			s.tracef("byzantine node %d commit: %v", n.idx, err)
		}
		return
	}
	for _, b := range c.Blocks {
		h := b.Header.Height
		id := b.Header.ID()
		if h < uint64(len(s.committed)) {
			if s.committed[h] != id {
				s.violate("agreement", "node %d committed %s at height %d, others %s", n.idx, id, h, s.committed[h])
				return
			}
			continue
		}
		if h != uint64(len(s.committed)) {
			s.violate("agreement", "node %d committed height %d before height %d was agreed", n.idx, h, len(s.committed))
			return
		}
		parent := s.refStates[h-1]
		st, err := testapp.Execute(parent, b, false)
		if err != nil {
			s.violate("validity", "node %d committed an invalid block at height %d: %v", n.idx, h, err)
			return
		}
		s.refStates = append(s.refStates, st)
		s.committed = append(s.committed, id)
		if st.Next != nil {
			s.onEpochEnd(b, st.Next)
		}
		s.tracef("height %d committed: %s epoch %d round %d txs %d", h, id.String()[:12], b.Header.Epoch, b.Header.Round, len(b.Txs))
	}
	last := c.Blocks[len(c.Blocks)-1]
	ev := s.verifiers[last.Header.Epoch]
	if ev == nil {
		s.violate("commit proof", "node %d committed in unknown epoch %d", n.idx, last.Header.Epoch)
		return
	}
	id, _, err := ev.VerifyCommitProof(&c.Proof)
	if err != nil || id != last.Header.ID() {
		s.violate("commit proof", "node %d committed height %d with a bad proof: %v", n.idx, last.Header.Height, err)
		return
	}
	want := s.refStates[last.Header.Height].Next
	if (want == nil) != (c.EpochChange == nil) || (want != nil && want.Epoch() != c.EpochChange.Epoch()) {
		s.violate("epoch change", "node %d: epoch change at height %d disagrees with execution", n.idx, last.Header.Height)
		return
	}
	if err := n.app.Commit(c); err != nil {
		s.violate("validity", "node %d: %v", n.idx, err)
		return
	}
	s.checkLiveness()
}

func (s *sim) onEpochEnd(b *ledger.Block, next *consensus.EpochConfig) {
	ev, err := consensus.NewEpochVerifier(ChainID, *next, consensus.RefOf(&b.Header), s.opts.Verifier)
	if err != nil {
		s.violate("epoch change", "next epoch: %v", err)
		return
	}
	s.verifiers[next.Epoch()] = ev
	s.mempool = slices.DeleteFunc(s.mempool, func(tx ledger.Transaction) bool {
		rc, err := testapp.DecodeReconfig(&tx)
		return err != nil || rc.Epoch() <= next.Epoch()
	})
	s.pending = 0
	s.tracef("epoch %d starts after height %d with %d validators", next.Epoch(), b.Header.Height, next.Validators.N())
}

// checkLiveness ends the run once, after the faults stopped, every honest
// validator of the current epoch has committed enough blocks.
func (s *sim) checkLiveness() {
	if !s.stable {
		return
	}
	goal := s.stableHeight + s.cfg.LivenessBlocks
	ep := s.refEpoch()
	for _, n := range s.nodes {
		if !n.honest || ep.Validators.IndexOf(s.keyOf(n)) < 0 {
			continue
		}
		if n.app.Height() < goal {
			return
		}
	}
	s.doneAt = s.now
}

// Describe returns a line per node with its status and counters, for
// diagnosing a failed run.
func (s *sim) describe() string {
	var b []byte
	for _, n := range s.nodes {
		if n.core == nil {
			b = fmt.Appendf(b, "node %d: down, height %d\n", n.idx, n.app.Height())
			continue
		}
		st := n.core.Status()
		m := n.core.Metrics()
		b = fmt.Appendf(b, "node %d honest=%v height %d status %+v\n  metrics:", n.idx, n.honest, n.app.Height(), st)
		m.Each(func(name string, v uint64) {
			if v != 0 {
				b = fmt.Appendf(b, " %s=%d", name, v)
			}
		})
		b = append(b, '\n')
		if n.app.Height() <= s.stableHeight {
			b = append(b, n.core.Describe()...)
		}
	}
	return string(b)
}
