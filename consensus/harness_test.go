package consensus_test

import (
	"context"
	"fmt"
	"testing"

	"hallmark/consensus"
	"hallmark/consensus/internal/testapp"
	"hallmark/gm"
	"hallmark/ledger"
)

const chainID = "hallmark-unit"

// cluster is a minimal synchronous driver for targeted tests: messages are
// delivered in FIFO order, signatures and validations complete at once,
// and timers fire only when the test says so.
type cluster struct {
	t       testing.TB
	keys    []*gm.PrivateKey
	cfg     consensus.EpochConfig
	genesis ledger.Header
	nodes   []*member
	queue   []queued
	now     int64
	// intercept, if set, sees every message before delivery and may
	// drop it by returning false.
	intercept func(from, to int, msg []byte) bool
	// mempool is what every proposer offers.
	mempool []ledger.Transaction
}

type member struct {
	idx   int
	core  *consensus.Core
	app   *testapp.App
	timer uint64
	down  bool
	log   []consensus.Effect
}

type queued struct {
	to int
	ev consensus.Event
}

func testParams() ledger.Params {
	p := ledger.DefaultParams()
	p.BaseTimeoutMs = 100
	p.MaxTimeoutMs = 1600
	p.MaxClockSkewMs = 500
	p.EpochLength = 0
	return p
}

func newKeys(t testing.TB, n int) []*gm.PrivateKey {
	keys := make([]*gm.PrivateKey, n)
	for i := range keys {
		d := gm.SM3([]byte(fmt.Sprintf("unit key %d", i)))
		k, err := gm.NewPrivateKey(d[:])
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	return keys
}

func addr(i int) string { return fmt.Sprintf("10.1.0.%d:7000", i) }

func validatorSet(keys []*gm.PrivateKey, epoch uint64) ledger.ValidatorSet {
	set := ledger.ValidatorSet{Epoch: epoch}
	for i, k := range keys {
		set.Validators = append(set.Validators, ledger.PeerConfig{
			ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: k.PublicKey().ID(),
			Address: addr(i), PublicKey: ledger.KeyBytes(k.PublicKey()),
		})
	}
	return set
}

func newCluster(t testing.TB, n int) *cluster {
	c := &cluster{t: t, keys: newKeys(t, n), now: 1_700_000_000_000}
	c.cfg = consensus.EpochConfig{Validators: validatorSet(c.keys, 1), Params: testParams()}
	var gs *testapp.State
	c.genesis, gs = testapp.Genesis(chainID, c.cfg, c.now-1000)
	for i := 0; i < n; i++ {
		m := &member{idx: i, app: testapp.NewApp(chainID, addr(i), c.genesis, gs)}
		c.nodes = append(c.nodes, m)
	}
	for _, m := range c.nodes {
		c.start(m)
	}
	return c
}

func (c *cluster) start(m *member) {
	rec, err := m.app.Recovery()
	if err != nil {
		c.t.Fatal(err)
	}
	core, err := consensus.New(consensus.Config{ChainID: chainID}, rec)
	if err != nil {
		c.t.Fatal(err)
	}
	m.core, m.down = core, false
	c.apply(m, core.Start(c.now))
}

func (c *cluster) crash(i int) {
	m := c.nodes[i]
	m.down, m.core = true, nil
	kept := c.queue[:0]
	for _, q := range c.queue {
		if q.to != i {
			kept = append(kept, q)
		}
	}
	c.queue = kept
}

func (c *cluster) owner(id gm.KeyID) int {
	for i, k := range c.keys {
		if k.PublicKey().ID() == id {
			return i
		}
	}
	c.t.Fatalf("no node with key %s", id)
	return -1
}

func (c *cluster) send(from, to int, msg []byte) {
	if c.intercept != nil && !c.intercept(from, to, msg) {
		return
	}
	c.queue = append(c.queue, queued{to: to, ev: consensus.MessageReceived{From: c.keys[from].PublicKey().ID(), Data: msg}})
}

// apply carries out effects like a driver whose I/O completes at once.
func (c *cluster) apply(m *member, effs []consensus.Effect) {
	for _, e := range effs {
		m.log = append(m.log, e)
		switch e := e.(type) {
		case consensus.Send:
			c.send(m.idx, c.owner(e.To), e.Message)
		case consensus.Broadcast:
			for _, to := range e.To {
				c.send(m.idx, c.owner(to), e.Message)
			}
		case consensus.Sign:
			if err := m.app.SaveSafety(e.Safety, e.Block); err != nil {
				c.t.Fatal(err)
			}
			sig, err := c.keys[m.idx].Sign(context.Background(), e.Message)
			c.queue = append(c.queue, queued{to: m.idx, ev: consensus.Signed{Seq: e.Seq, Signature: sig, Err: err}})
		case consensus.ValidateBlock:
			c.queue = append(c.queue, queued{to: m.idx, ev: m.app.Validate(e)})
		case consensus.BuildProposal:
			c.queue = append(c.queue, queued{to: m.idx, ev: m.app.Build(e, c.mempool, false)})
		case consensus.Commit:
			if err := m.app.Commit(e); err != nil {
				c.t.Fatalf("node %d commit: %v", m.idx, err)
			}
		case consensus.SetTimer:
			m.timer = e.Seq
		case consensus.ServeSync:
			msg, err := consensus.BuildSyncResponse(m.app, e.Request)
			if err != nil {
				c.t.Fatal(err)
			}
			c.send(m.idx, c.owner(e.To), msg)
		}
	}
}

// deliver runs queued events until the queue is empty or limit events ran.
func (c *cluster) deliver(limit int) int {
	done := 0
	for done < limit {
		m, ev, ok := c.next()
		if !ok {
			break
		}
		c.apply(m, m.core.Step(c.now, ev))
		done++
	}
	return done
}

// next takes the first queued event addressed to a live node (events for
// nodes that are down are dropped) and advances the clock for it.
func (c *cluster) next() (*member, consensus.Event, bool) {
	for len(c.queue) > 0 {
		q := c.queue[0]
		c.queue = c.queue[1:]
		if m := c.nodes[q.to]; !m.down {
			c.now++
			return m, q.ev, true
		}
	}
	return nil, nil, false
}

// fire fires every live node's timer after advancing the clock.
func (c *cluster) fire(ms int64) {
	c.now += ms
	for _, m := range c.nodes {
		if !m.down {
			c.apply(m, m.core.Step(c.now, consensus.TimerFired{Seq: m.timer}))
		}
	}
}

// runUntil delivers events, firing timers when the network goes quiet,
// until every live node committed height h.
func (c *cluster) runUntil(h uint64, maxSteps int) {
	c.t.Helper()
	for steps := 0; steps < maxSteps; {
		if c.minHeight() >= h {
			return
		}
		n := c.deliver(1000)
		steps += n
		if n == 0 {
			c.fire(2000)
			steps++
		}
	}
	c.t.Fatalf("heights %v after %d steps, want %d", c.heights(), maxSteps, h)
}

// runObserved delivers events like runUntil, passing each event's effects
// through observe (which may inspect or rewrite them) before they apply. It
// stops once every live node committed h or after maxSteps, without
// failing: the caller checks what it needs.
func (c *cluster) runObserved(h uint64, maxSteps int, observe func(m *member, ev consensus.Event, effs []consensus.Effect) []consensus.Effect) {
	for steps := 0; steps < maxSteps && c.minHeight() < h; steps++ {
		m, ev, ok := c.next()
		if !ok {
			c.fire(2000)
			continue
		}
		c.apply(m, observe(m, ev, m.core.Step(c.now, ev)))
	}
}

func (c *cluster) minHeight() uint64 {
	h := ^uint64(0)
	for _, m := range c.nodes {
		if !m.down {
			h = min(h, m.app.Height())
		}
	}
	return h
}

func (c *cluster) heights() []uint64 {
	var hs []uint64
	for _, m := range c.nodes {
		hs = append(hs, m.app.Height())
	}
	return hs
}

func (c *cluster) checkAgreement() {
	c.t.Helper()
	for h := uint64(1); ; h++ {
		var id *ledger.BlockID
		any := false
		for _, m := range c.nodes {
			b := m.app.Block(h)
			if b == nil {
				continue
			}
			any = true
			bid := b.Header.ID()
			if id == nil {
				id = &bid
			} else if *id != bid {
				c.t.Fatalf("height %d: nodes disagree", h)
			}
		}
		if !any {
			return
		}
	}
}
