package driver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"hallmark/consensus"
	"hallmark/consensus/driver"
	"hallmark/consensus/internal/testapp"
	"hallmark/gm"
	"hallmark/ledger"
)

const chainID = "hallmark-driver-test"

// memNet is an in-memory network: one buffered inbox per node, fed by real
// goroutines; a full inbox drops, like a congested link.
type memNet struct {
	mu      sync.Mutex
	inboxes map[gm.KeyID]chan driver.Inbound
	down    map[gm.KeyID]bool
}

func newMemNet() *memNet {
	return &memNet{inboxes: make(map[gm.KeyID]chan driver.Inbound), down: make(map[gm.KeyID]bool)}
}

func (n *memNet) endpoint(id gm.KeyID) *memEndpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	inbox := make(chan driver.Inbound, 1024)
	n.inboxes[id] = inbox
	n.down[id] = false
	return &memEndpoint{net: n, self: id, inbox: inbox}
}

func (n *memNet) setDown(id gm.KeyID, down bool) {
	n.mu.Lock()
	n.down[id] = down
	n.mu.Unlock()
}

type memEndpoint struct {
	net   *memNet
	self  gm.KeyID
	inbox chan driver.Inbound
}

var errUnreachable = errors.New("memnet: peer unreachable")

func (e *memEndpoint) Send(ctx context.Context, to gm.KeyID, msg []byte) error {
	e.net.mu.Lock()
	inbox, ok := e.net.inboxes[to]
	down := e.net.down[to] || e.net.down[e.self]
	e.net.mu.Unlock()
	if !ok || down {
		return errUnreachable
	}
	select {
	case inbox <- driver.Inbound{From: e.self, Data: msg}:
		return nil
	default:
		return errors.New("memnet: inbox full")
	}
}

func (e *memEndpoint) Incoming() <-chan driver.Inbound { return e.inbox }

// appAdapter puts the test application behind the driver's interfaces; the
// mutex lets the test read heights while the driver runs.
type appAdapter struct {
	mu  sync.Mutex
	app *testapp.App
}

func (a *appAdapter) ValidateBlock(ctx context.Context, req consensus.ValidateBlock) (*consensus.EpochConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := a.app.Validate(req)
	return res.Reconfig, res.Err
}

func (a *appAdapter) BuildProposal(ctx context.Context, req consensus.BuildProposal) (*ledger.Block, *consensus.EpochConfig, error) {
	// Pace empty blocks a little, as a real application would wait for
	// transactions.
	select {
	case <-time.After(2 * time.Millisecond):
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res := a.app.Build(req, nil, false)
	return res.Block, res.Reconfig, res.Err
}

func (a *appAdapter) Commit(ctx context.Context, c consensus.Commit) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.Commit(c)
}

func (a *appAdapter) CommittedHeight() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.CommittedHeight()
}

func (a *appAdapter) CommittedBlock(h uint64) (*ledger.Block, *consensus.CommitProof, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.CommittedBlock(h)
}

func (a *appAdapter) SaveSafety(ctx context.Context, s consensus.SafetyData, b *consensus.CertifiedBlock) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.SaveSafety(s, b)
}

func (a *appAdapter) height() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.Height()
}

func (a *appAdapter) blockID(h uint64) (ledger.BlockID, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.app.Block(h)
	if b == nil {
		return ledger.BlockID{}, false
	}
	return b.Header.ID(), true
}

type testNode struct {
	key    *gm.PrivateKey
	trace  traceLog
	app    *appAdapter
	drv    *driver.Driver
	cancel context.CancelFunc
	done   chan error
}

type testNet struct {
	t     *testing.T
	net   *memNet
	nodes []*testNode
}

func newTestNet(t *testing.T, n int) *testNet {
	tn := &testNet{t: t, net: newMemNet()}
	set := ledger.ValidatorSet{Epoch: 1}
	for i := 0; i < n; i++ {
		k, err := gm.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		set.Validators = append(set.Validators, ledger.PeerConfig{
			ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: k.PublicKey().ID(),
			Address: fmt.Sprintf("10.2.0.%d:7000", i), PublicKey: ledger.KeyBytes(k.PublicKey()),
		})
		tn.nodes = append(tn.nodes, &testNode{key: k})
	}
	params := ledger.DefaultParams()
	params.BaseTimeoutMs = 200
	params.MaxTimeoutMs = 1600
	params.EpochLength = 0
	cfg := consensus.EpochConfig{Validators: set, Params: params}
	genesis, gs := testapp.Genesis(chainID, cfg, time.Now().UnixMilli()-1000)
	for i, nd := range tn.nodes {
		nd.app = &appAdapter{app: testapp.NewApp(chainID, set.Validators[i].Address, genesis, gs)}
	}
	for i := range tn.nodes {
		tn.start(i)
	}
	return tn
}

func (tn *testNet) start(i int) {
	nd := tn.nodes[i]
	nd.app.mu.Lock()
	rec, err := nd.app.app.Recovery()
	nd.app.mu.Unlock()
	if err != nil {
		tn.t.Fatal(err)
	}
	id := nd.key.PublicKey().ID()
	drv, err := driver.New(driver.Config{
		Core:      consensus.Config{ChainID: chainID},
		Recovery:  rec,
		Transport: tn.net.endpoint(id),
		App:       nd.app,
		Safety:    nd.app,
		Signer: func(k gm.KeyID) (gm.Signer, error) {
			if k != id {
				return nil, fmt.Errorf("no key %s", k)
			}
			return nd.key, nil
		},
		Logger: slog.New(slog.DiscardHandler),
		Trace:  nd.trace.record,
	})
	if err != nil {
		tn.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.drv, nd.cancel, nd.done = drv, cancel, make(chan error, 1)
	go func() { nd.done <- drv.Run(ctx) }()
	tn.t.Cleanup(func() { tn.stop(i) })
}

func (tn *testNet) stop(i int) {
	nd := tn.nodes[i]
	if nd.cancel == nil {
		return
	}
	nd.cancel()
	if err := <-nd.done; err != nil && !errors.Is(err, context.Canceled) {
		tn.t.Errorf("node %d: %v", i, err)
	}
	nd.cancel = nil
}

func (tn *testNet) waitHeight(h uint64, timeout time.Duration, nodes ...int) {
	tn.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ok := true
		for _, i := range nodes {
			if tn.nodes[i].app.height() < h {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	var hs []uint64
	for _, nd := range tn.nodes {
		hs = append(hs, nd.app.height())
	}
	tn.t.Fatalf("heights %v after %v, want %d on nodes %v", hs, timeout, h, nodes)
}

func (tn *testNet) checkAgreement() {
	tn.t.Helper()
	for h := uint64(1); ; h++ {
		var first *ledger.BlockID
		any := false
		for i, nd := range tn.nodes {
			id, ok := nd.app.blockID(h)
			if !ok {
				continue
			}
			any = true
			if first == nil {
				first = &id
			} else if *first != id {
				tn.t.Fatalf("height %d: node %d disagrees", h, i)
			}
		}
		if !any {
			return
		}
	}
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestDriverSingleNode(t *testing.T) {
	tn := newTestNet(t, 1)
	tn.waitHeight(10, 20*time.Second, 0)
	st := tn.nodes[0].drv.Status()
	if !st.Validator || st.CommittedHeight < 10 {
		t.Fatalf("status %+v", st)
	}
}

func TestDriverFourNodes(t *testing.T) {
	tn := newTestNet(t, 4)
	tn.waitHeight(15, 60*time.Second, all(4)...)
	tn.checkAgreement()
	for i, nd := range tn.nodes {
		m := nd.drv.Metrics()
		if m.VotesSent == 0 || m.BlocksCommitted == 0 {
			t.Errorf("node %d metrics %+v", i, m)
		}
	}
	// Every committed block's trace shows the path of a block this node
	// led or one it received, in order, ending certified and committed.
	led := 0
	for i, nd := range tn.nodes {
		for h := uint64(1); h <= 12; h++ {
			id, _ := nd.app.blockID(h)
			at, ok := nd.trace.get(id)
			if !ok {
				t.Fatalf("node %d: no trace of block %d", i, h)
			}
			var path []driver.Stage
			if at[driver.StageBuilt].IsZero() {
				path = []driver.Stage{driver.StageReceived, driver.StageValidated}
			} else {
				led++
				path = []driver.Stage{driver.StageBuildRequested, driver.StageBuilt, driver.StageProposed}
			}
			path = append(path, driver.StageCommitted)
			for k, s := range path {
				if at[s].IsZero() {
					t.Fatalf("node %d block %d: no %v stage in %v", i, h, s, at)
				}
				if k > 0 && at[s].Before(at[path[k-1]]) {
					t.Errorf("node %d block %d: %v before %v", i, h, s, path[k-1])
				}
			}
			if c := at[driver.StageCertified]; c.IsZero() || at[driver.StageCommitted].Before(c) {
				t.Errorf("node %d block %d: certified %v, committed %v", i, h, c, at[driver.StageCommitted])
			}
		}
	}
	if led != 12 {
		t.Errorf("%d blocks traced as built by their node, want one per height", led)
	}
}

// traceLog keeps the first time each block reached each stage.
type traceLog struct {
	mu sync.Mutex
	at map[ledger.BlockID]*[driver.NumStages]time.Time
}

func (l *traceLog) record(ev driver.TraceEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[ledger.BlockID]*[driver.NumStages]time.Time{}
	}
	a := l.at[ev.Block]
	if a == nil {
		a = new([driver.NumStages]time.Time)
		l.at[ev.Block] = a
	}
	if a[ev.Stage].IsZero() {
		a[ev.Stage] = ev.At
	}
}

func (l *traceLog) get(id ledger.BlockID) ([driver.NumStages]time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.at[id]; a != nil {
		return *a, true
	}
	return [driver.NumStages]time.Time{}, false
}

// A node that stops and restarts from its stored state rejoins, catches
// up and agrees with the others, while three nodes keep the chain going.
func TestDriverRestart(t *testing.T) {
	tn := newTestNet(t, 4)
	tn.waitHeight(5, 60*time.Second, all(4)...)
	victim := tn.nodes[3].key.PublicKey().ID()
	tn.stop(3)
	tn.net.setDown(victim, true)
	base := tn.nodes[0].app.height()
	tn.waitHeight(base+10, 60*time.Second, 0, 1, 2)
	tn.net.setDown(victim, false)
	tn.start(3)
	tn.waitHeight(tn.nodes[0].app.height()+3, 60*time.Second, all(4)...)
	tn.checkAgreement()
}
