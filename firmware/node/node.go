// Package node composes a Hallmark node from its parts: key custody, the
// store, the speculative execution tree, the mempool, the consensus driver,
// the peer mesh, the kiosk ingress with its fast path, the HTTP API and
// metrics. New opens everything a configuration names (and fails naming
// what is wrong); Run serves until its context ends and then shuts down in
// order, leaving the store closed and consistent. A restarted node resumes
// from the store and catches up from its peers.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"hallmark/consensus"
	"hallmark/consensus/driver"
	"hallmark/firmware/api"
	"hallmark/firmware/config"
	"hallmark/firmware/exec"
	"hallmark/firmware/genesis"
	"hallmark/firmware/mempool"
	"hallmark/firmware/metrics"
	"hallmark/firmware/sigcache"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/netstack/ingress"
	"hallmark/netstack/kiosk"
	"hallmark/netstack/peer"
	"hallmark/netstack/xdp"
	"hallmark/provisioning"
	"hallmark/storage"
)

// Version is the software version a node reports.
var Version = "dev"

// Options are what New needs besides the configuration.
type Options struct {
	Config *config.Config
	// Signer replaces opening Config.NodeKey (tests, embedding).
	Signer gm.Signer
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// OnCommit, if set, is called after each block is stored (tests).
	OnCommit func(height uint64, id ledger.BlockID)
}

// Node is one running Hallmark node.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	now     func() time.Time
	onBlock func(uint64, ledger.BlockID)

	// ring holds the node's keys; identity is the one it presents to
	// peers and signs receipt delegations with: the key the committed
	// validator set lists (the new one as soon as a rotation commits).
	ring     *keyRing
	identity atomic.Pointer[heldKey]
	chain    *genesis.Chain
	chainID  string

	store     *storage.Store
	sigs      *sigcache.Cache
	executor  *app.Executor
	tree      *exec.Tree
	admit     *admitter
	pool      *mempool.Pool
	admission *ingress.AdmissionTable
	fast      *xdp.FastPath
	transport *transport
	peers     *peer.Node
	gossip    *gossiper
	driver    *driver.Driver
	ingress   *ingress.Server
	kiosk     *net.UDPConn
	epochs    *epochLookup
	metrics   *metrics.Metrics

	apiLn, metricsLn net.Listener
	apiHandler       http.Handler

	receiptKey *gm.PrivateKey
	delegation atomic.Pointer[kiosk.Delegation]

	cost       costEstimate
	tracer     *blockTracer
	commitQ    chan *commitJob
	commitMu   sync.Mutex
	commitFail error

	mu        sync.Mutex
	epoch     consensus.EpochConfig
	prevEpoch *consensus.EpochConfig
	// prevUntil is when the previous epoch's validators stop being
	// admitted (a grace for peers still finishing that epoch).
	prevUntil time.Time
	prevTimer *time.Timer
	xdpPeers  map[netip.Addr]bool

	closers []func() error
	closing atomic.Bool
}

// New opens everything cfg names. On error, whatever was opened is closed.
func New(ctx context.Context, o Options) (_ *Node, err error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errors.New("node: no configuration")
	}
	n := &Node{cfg: cfg, log: o.Logger, now: o.Now, onBlock: o.OnCommit, xdpPeers: map[netip.Addr]bool{},
		commitQ: make(chan *commitJob, commitQueueLen)}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.metrics = metrics.New()
	n.tracer = newBlockTracer(n.metrics, n.log.With("part", "trace").Debug)

	doc, _, err := genesis.Load(cfg.Genesis, provisioning.CheckOptions{RequireAttestation: cfg.Production})
	if err != nil {
		return nil, err
	}
	if n.chain, err = genesis.Derive(doc); err != nil {
		return nil, err
	}
	n.chainID = doc.ChainID

	if n.ring, err = openKeyRing(ctx, n, o.Signer); err != nil {
		return nil, err
	}
	n.onClose(n.ring.close)
	if err := n.openStore(ctx); err != nil {
		return nil, err
	}
	n.epochs = &epochLookup{st: n.store, first: n.chain.Epoch}
	rec, root, err := n.recovery()
	if err != nil {
		return nil, err
	}
	n.epoch = rec.Epoch
	n.identity.Store(n.chooseIdentity(nil))

	n.sigs = sigcache.New(cfg.Mempool.VerifiedCache)
	n.executor = app.New(app.WithSignatureCheck(n.sigs.Check))
	if n.tree, err = exec.New(exec.Config{
		Executor: n.executor,
		Base: func(fn func(app.View) error) error {
			return n.store.View(func(sn *storage.Snapshot) error { return fn(exec.SnapshotView(sn)) })
		},
		Committed: n.committedTxs,
		Sigs:      n.sigs, Workers: cfg.Mempool.Workers, Self: n.ring.first().id(), Keys: n.ring.ids, Now: n.now,
	}, root); err != nil {
		return nil, err
	}
	n.admit = &admitter{x: n.executor, view: exec.StoreView(n.store), store: n.store, now: n.now}
	n.gossip = newGossiper(n)
	if n.pool, err = mempool.New(mempool.Config{
		MaxTxs: cfg.Mempool.MaxTxs, MaxBytes: cfg.Mempool.MaxBytes, Cache: n.sigs, Workers: cfg.Mempool.Workers,
		Admit:    n.admit.Check,
		AdmitAll: n.admit.CheckAll,
		OnAccept: func(_ *ledger.Transaction, enc []byte) { n.gossip.accepted(enc) },
		Now:      n.now,
	}); err != nil {
		return nil, err
	}

	if err := n.openNetwork(ctx); err != nil {
		return nil, err
	}
	n.admission = ingress.NewAdmissionTable(n.fast.Filter)
	if err := n.loadAdmission(); err != nil {
		return nil, err
	}
	n.refreshPeers()
	if err := n.startReceipts(ctx); err != nil {
		return nil, err
	}
	if n.ingress, err = ingress.New(ingress.Config{
		ChainID: n.chainID, Conn: n.kiosk, Signer: n.receiptKey, Admission: n.admission, Submitter: n.pool,
		FastPath: n.fast, MaxAge: cfg.XDP.MaxAge.D(), MaxFuture: cfg.XDP.MaxFuture.D(), Workers: cfg.Mempool.Workers,
		Now: n.now, Logger: n.log.With("part", "ingress"),
	}); err != nil {
		return nil, fmt.Errorf("node: kiosk ingress: %w", err)
	}
	capp := consensusApp{n}
	if n.driver, err = driver.New(driver.Config{
		Core: consensus.Config{ChainID: n.chainID}, Recovery: rec, Transport: n.transport, App: capp, Safety: capp,
		Signer: func(id gm.KeyID) (gm.Signer, error) {
			k := n.ring.get(id)
			if k == nil {
				return nil, fmt.Errorf("node: this node holds no key %s (it holds %v)", id, n.ring.ids())
			}
			return k.signer, nil
		},
		Clock: n.now, Logger: n.log.With("part", "consensus"), Trace: n.tracer.observe,
	}); err != nil {
		return nil, err
	}
	n.registerMetrics()
	if err := n.openAPI(); err != nil {
		return nil, err
	}
	tip, _ := n.store.Tip()
	id := n.identity.Load()
	n.log.Info("node ready", "chain", n.chainID, "key", id.id(), "custody", id.custody, "keys", len(n.ring.ids()), "height", tip.Height,
		"epoch", rec.Epoch.Epoch(), "validator", rec.Epoch.Self != (gm.KeyID{}), "fastPath", n.fast.Mode,
		"peer", n.peers.Addr().String(), "kiosk", n.kiosk.LocalAddr().String(), "api", n.apiLn.Addr().String())
	return n, nil
}

func (n *Node) onClose(f func() error) { n.closers = append(n.closers, f) }

// close releases what New opened, newest first.
func (n *Node) close() {
	n.closing.Store(true)
	n.mu.Lock()
	if n.prevTimer != nil {
		n.prevTimer.Stop()
	}
	n.mu.Unlock()
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			n.log.Warn("closing", "err", err)
		}
	}
	n.closers = nil
}

func (n *Node) openStore(ctx context.Context) error {
	st, err := storage.Open(n.cfg.DataDir, storage.Options{
		ChainID: n.chainID, Window: n.cfg.Storage.Window, Archive: n.cfg.Storage.Archive,
		Logger: n.log.With("part", "storage"),
	})
	if err != nil {
		return fmt.Errorf("node: opening the store in %s: %w", n.cfg.DataDir, err)
	}
	n.store = st
	n.onClose(st.Close)
	g := n.chain.Block
	if _, ok := st.Tip(); !ok {
		n.log.Info("new store: committing the genesis block", "chain", n.chainID, "id", g.Header.ID())
		if err := st.CommitBlock(ctx, &storage.Batch{
			Block: g, Validators: len(n.chain.Doc.Validators),
			ShardIndex: n.shardIndex(n.chain.Epoch.Validators), Writes: n.chain.State.Writes,
		}); err != nil {
			return fmt.Errorf("node: storing the genesis block: %w", err)
		}
	}
	h0, err := st.Header(0)
	if err != nil {
		return fmt.Errorf("node: reading the genesis block: %w", err)
	}
	if h0.ID != g.Header.ID() {
		return fmt.Errorf("node: the store in %s holds genesis block %s, the genesis file gives %s: wrong genesis file or data directory",
			n.cfg.DataDir, h0.ID, g.Header.ID())
	}
	return nil
}

// recovery rebuilds what consensus and the execution tree resume from.
func (n *Node) recovery() (consensus.Recovery, exec.Root, error) {
	var rec consensus.Recovery
	tip, _ := n.store.Tip()
	withSelf := func(c consensus.EpochConfig) consensus.EpochConfig {
		c.Self = gm.KeyID{}
		if k := n.ring.in(c.Validators.Validators); k != nil {
			c.Self = k.id()
		}
		return c
	}
	var root exec.Root
	if tip.Height == 0 {
		rec = consensus.Recovery{Epoch: withSelf(n.chain.Epoch), EpochRoot: consensus.RefOf(&tip.Header), Root: tip.Header}
		root = exec.Root{Header: tip.Header, Epoch: n.chain.Epoch}
	} else {
		r, err := readRecord(n.store, tip.Height)
		if err != nil {
			return rec, root, err
		}
		if r == nil {
			return rec, root, fmt.Errorf("node: the tip %d has no block record", tip.Height)
		}
		if r.Next != nil {
			ep := r.Next.Config()
			rec = consensus.Recovery{Epoch: withSelf(ep), EpochRoot: consensus.RefOf(&tip.Header), Root: tip.Header}
			root = exec.Root{Header: tip.Header, Epoch: ep}
		} else {
			ep, rootHdr, err := n.epochs.config(tip.Header.Epoch)
			if err != nil {
				return rec, root, err
			}
			proof, err := r.CommitProof()
			if err != nil {
				return rec, root, err
			}
			pending, err := exec.Pending(exec.StoreView(n.store), ep)
			if err != nil {
				return rec, root, err
			}
			rec = consensus.Recovery{Epoch: withSelf(ep), EpochRoot: consensus.RefOf(&rootHdr.Header), Root: tip.Header, RootProof: proof}
			root = exec.Root{Header: tip.Header, Epoch: ep, Pending: pending}
		}
	}
	safety, err := n.store.LoadSafety()
	if err != nil {
		return rec, root, err
	}
	if safety != nil {
		if rec.Safety, err = consensus.DecodeSafetyData(safety); err != nil {
			return rec, root, fmt.Errorf("node: stored safety data: %w", err)
		}
	}
	if rec.Blocks, err = keptBlocks(n.store); err != nil {
		return rec, root, err
	}
	if tip.Height > 0 || len(rec.Blocks) > 0 {
		n.log.Info("resuming", "height", tip.Height, "epoch", rec.Epoch.Epoch(), "keptBlocks", len(rec.Blocks))
	}
	return rec, root, nil
}

func portOf(addr string) uint16 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(p, 10, 16)
	return uint16(v)
}

func (n *Node) openNetwork(ctx context.Context) error {
	cfg := n.cfg
	kaddr, err := net.ResolveUDPAddr("udp", cfg.Listen.Kiosk)
	if err != nil {
		return fmt.Errorf("node: listen.kiosk: %w", err)
	}
	if n.kiosk, err = net.ListenUDP("udp", kaddr); err != nil {
		return fmt.Errorf("node: listen.kiosk %s: %w", cfg.Listen.Kiosk, err)
	}
	n.onClose(n.kiosk.Close)
	// Larger socket buffers ride out bursts while workers verify.
	_ = n.kiosk.SetReadBuffer(4 << 20)

	if n.fast, err = xdp.Start(cfg.XDP.Interface, xdp.Config{
		IngressPort: uint16(n.kiosk.LocalAddr().(*net.UDPAddr).Port), PeerPort: portOf(cfg.Listen.Peer),
		MaxAge: cfg.XDP.MaxAge.D(), MaxFuture: cfg.XDP.MaxFuture.D(), RatePerSec: *cfg.XDP.RatePerSec, Burst: cfg.XDP.Burst,
	}, n.log.With("part", "xdp")); err != nil {
		return fmt.Errorf("node: fast path: %w", err)
	}
	n.onClose(n.fast.Close)

	n.transport = newTransport(n)
	if n.peers, err = peer.New(ctx, peer.Config{
		ChainID: n.chainID, Signer: n.identity.Load().signer, ListenAddr: cfg.Listen.Peer, Handler: n.transport,
		MaxMessageSize: maxPeerMessage, Now: n.now, Logger: n.log.With("part", "peer"),
	}); err != nil {
		return fmt.Errorf("node: listen.peer %s: %w", cfg.Listen.Peer, err)
	}
	n.transport.peers = n.peers
	n.onClose(n.peers.Close)
	return nil
}

// peerAddress returns where to reach a node: the configuration's override,
// else the address the chain records.
func (n *Node) peerAddress(p ledger.PeerConfig) string {
	for _, o := range n.cfg.Peers {
		if id, err := o.KeyID(); err == nil && id == p.PeerID {
			return o.Address
		}
	}
	return p.Address
}

// prevEpochGrace is how long the previous epoch's validators stay
// admitted after an epoch change, so that peers finishing that epoch can
// still fetch what commits its last block. A removed node's (or a rotated
// key's) identity stops being admitted when it ends.
const prevEpochGrace = 10 * time.Second

// admittedSets returns the validator sets whose members are admitted as
// peers: the current epoch's, the previous epoch's during its grace, and
// the committed state's (the next epoch's, which may list a node whose
// gov.node-add committed: it is admitted at once, follows the chain and
// syncs, and votes from the epoch boundary on).
func (n *Node) admittedSets() (epoch, state []ledger.PeerConfig, all [][]ledger.PeerConfig) {
	n.mu.Lock()
	epoch = n.epoch.Validators.Validators
	all = [][]ledger.PeerConfig{epoch}
	if n.prevEpoch != nil && n.now().Before(n.prevUntil) {
		all = append(all, n.prevEpoch.Validators.Validators)
	}
	n.mu.Unlock()
	if vs, err := app.Validators(exec.StoreView(n.store)); err == nil {
		state = vs.Validators
		all = append(all, state)
	} else {
		n.log.Warn("reading the validator set", "err", err)
	}
	return epoch, state, all
}

// chooseIdentity returns the key the node presents to peers: the one the
// committed validator set lists (so that a new key is used as soon as its
// rotation commits: peers admit it from then on), else the one the current
// epoch lists, else the current identity, else the oldest key.
func (n *Node) chooseIdentity(state []ledger.PeerConfig) *heldKey {
	if state == nil {
		if vs, err := app.Validators(exec.StoreView(n.store)); err == nil {
			state = vs.Validators
		}
	}
	if k := n.ring.in(state); k != nil {
		return k
	}
	n.mu.Lock()
	epoch := n.epoch.Validators.Validators
	n.mu.Unlock()
	if k := n.ring.in(epoch); k != nil {
		return k
	}
	if cur := n.identity.Load(); cur != nil && n.ring.get(cur.id()) != nil {
		return cur
	}
	return n.ring.first()
}

// shardIndex returns this node's index in a validator set, or -1.
func (n *Node) shardIndex(vs ledger.ValidatorSet) int {
	k := n.ring.in(vs.Validators)
	if k == nil {
		return -1
	}
	return vs.IndexOf(k.id())
}

// refreshPeers updates the node's identity (after a key rotation commits),
// the admitted peers (admittedSets), the fast path's peer addresses, and
// the aliases under which rotated validators are reached.
func (n *Node) refreshPeers() {
	epoch, state, sets := n.admittedSets()
	if next := n.chooseIdentity(state); next != n.identity.Load() {
		n.switchIdentity(next)
	}
	seen := map[gm.KeyID]bool{}
	var peers []peer.Peer
	addrs := map[netip.Addr]bool{}
	for _, set := range sets {
		for _, p := range set {
			if seen[p.PeerID] || n.ring.get(p.PeerID) != nil {
				continue
			}
			seen[p.PeerID] = true
			key, err := p.PublicKey.Parse()
			if err != nil {
				continue
			}
			addr := n.peerAddress(p)
			peers = append(peers, peer.Peer{Key: key, Addr: addr})
			if host, _, err := net.SplitHostPort(addr); err == nil {
				if ip, err := netip.ParseAddr(host); err == nil {
					addrs[ip.Unmap()] = true
				}
			}
		}
	}
	n.peers.SetPeers(peers)
	n.transport.setAliases(rotatedAliases(epoch, state))
	n.mu.Lock()
	defer n.mu.Unlock()
	for ip := range addrs {
		if !n.xdpPeers[ip] {
			if err := n.fast.Filter.SetPeer(ip, true); err != nil {
				n.log.Warn("fast path: admitting a peer address", "addr", ip, "err", err)
			}
		}
	}
	for ip := range n.xdpPeers {
		if !addrs[ip] {
			if err := n.fast.Filter.SetPeer(ip, false); err != nil {
				n.log.Warn("fast path: removing a peer address", "addr", ip, "err", err)
			}
		}
	}
	n.xdpPeers = addrs
}

// rotatedAliases maps each validator of the current epoch that the
// committed state no longer lists to the state's validator at the same
// address that the epoch does not list: a key rotation keeps the address.
func rotatedAliases(epoch, state []ledger.PeerConfig) map[gm.KeyID]gm.KeyID {
	inEpoch := map[gm.KeyID]bool{}
	for _, p := range epoch {
		inEpoch[p.PeerID] = true
	}
	inState := map[gm.KeyID]bool{}
	byAddr := map[string]gm.KeyID{}
	for _, p := range state {
		inState[p.PeerID] = true
		if !inEpoch[p.PeerID] {
			byAddr[p.Address] = p.PeerID
		}
	}
	out := map[gm.KeyID]gm.KeyID{}
	for _, p := range epoch {
		if inState[p.PeerID] {
			continue
		}
		if to, ok := byAddr[p.Address]; ok {
			out[p.PeerID] = to
		}
	}
	return out
}

// switchIdentity makes k the node's identity towards peers and the key its
// receipt delegation is signed with.
func (n *Node) switchIdentity(k *heldKey) {
	prev := n.identity.Swap(k)
	n.log.Info("node identity switched", "from", prev.id(), "to", k.id(), "custody", k.custody)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.peers.SetIdentity(ctx, k.signer); err != nil {
		n.log.Error("switching the peer identity", "err", err)
	}
	if err := n.renewDelegation(ctx); err != nil {
		n.log.Error("renewing the receipt-key delegation under the new identity", "err", err)
	}
}

// currentEpoch returns the configuration of the epoch storage has reached.
func (n *Node) currentEpoch() consensus.EpochConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.epoch
}

// enterEpoch records an epoch change and updates the peers; the previous
// epoch's validators leave the admitted set after a grace.
func (n *Node) enterEpoch(next consensus.EpochConfig) {
	n.mu.Lock()
	prev := n.epoch
	n.prevEpoch, n.epoch = &prev, next
	n.prevUntil = n.now().Add(prevEpochGrace)
	if n.prevTimer != nil {
		n.prevTimer.Stop()
	}
	n.prevTimer = time.AfterFunc(prevEpochGrace+100*time.Millisecond, func() {
		if n.closing.Load() {
			return
		}
		n.refreshPeers()
	})
	n.mu.Unlock()
	n.log.Info("epoch change", "epoch", next.Epoch(), "validators", next.Validators.N(), "validator", next.Self != (gm.KeyID{}), "self", next.Self)
	n.refreshPeers()
}

func (n *Node) committedHook(sb *exec.Block) {
	if n.onBlock != nil {
		n.onBlock(sb.Header.Height, sb.ID)
	}
}

// startReceipts makes the software key that signs kiosk receipts and has
// the node identity delegate to it.
func (n *Node) startReceipts(ctx context.Context) error {
	k, err := gm.GenerateKey(nil)
	if err != nil {
		return fmt.Errorf("node: receipt key: %w", err)
	}
	n.receiptKey = k
	return n.renewDelegation(ctx)
}

const delegationLife = 7 * 24 * time.Hour

func (n *Node) renewDelegation(ctx context.Context) error {
	now := n.now()
	d, err := kiosk.SignDelegation(ctx, n.identity.Load().signer, n.chainID, n.receiptKey.PublicKey(), now.Add(-5*time.Minute), now.Add(delegationLife))
	if err != nil {
		return fmt.Errorf("node: delegating the receipt key: %w", err)
	}
	n.delegation.Store(d)
	return nil
}

func (n *Node) openAPI() error {
	h, err := api.New(api.Config{
		ChainID: n.chainID, Store: n.store, Pool: n.pool, Node: n.KeyID, Status: n.Status, Fetcher: n.transport,
		Metrics: n.metrics, MaxBodyBytes: n.cfg.API.MaxBodyBytes, AuthWindow: n.cfg.API.AuthWindow.D(),
		Now: n.now, Logger: n.log.With("part", "api"), Reject: n.countRejection, Pprof: n.cfg.API.Pprof,
		Keys: &nodeKeys{n: n}, Epoch: n.currentEpoch,
		EpochValidators: func(e uint64) (ledger.ValidatorSet, error) {
			c, _, err := n.epochs.config(e)
			return c.Validators, err
		},
	})
	if err != nil {
		return err
	}
	n.apiHandler = h
	if n.apiLn, err = net.Listen("tcp", n.cfg.Listen.API); err != nil {
		return fmt.Errorf("node: listen.api %s: %w", n.cfg.Listen.API, err)
	}
	n.onClose(func() error { n.apiLn.Close(); return nil })
	if n.cfg.Listen.Metrics != "" {
		if n.metricsLn, err = net.Listen("tcp", n.cfg.Listen.Metrics); err != nil {
			return fmt.Errorf("node: listen.metrics %s: %w", n.cfg.Listen.Metrics, err)
		}
		n.onClose(func() error { n.metricsLn.Close(); return nil })
	}
	return nil
}

// Run serves until ctx ends or consensus stops on a storage failure, then
// shuts down: it stops taking transactions and blocks, lets a commit in
// progress finish, and closes the store.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		n.runCommitter(cancel)
	}()
	var wg sync.WaitGroup
	var driverErr error
	wg.Go(func() {
		defer cancel()
		if err := n.driver.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			driverErr = err
			n.log.Error("consensus stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := n.ingress.Serve(ctx); err != nil {
			n.log.Error("kiosk ingress stopped", "err", err)
		}
	})
	wg.Go(func() { n.gossip.runSend(ctx) })
	wg.Go(func() { n.gossip.runReceive(ctx) })
	wg.Go(func() { n.fast.KeepClock(ctx, 10*time.Second, n.log) })
	wg.Go(func() { n.maintain(ctx) })
	if iv := n.cfg.Storage.ScrubInterval.D(); iv > 0 {
		wg.Go(func() {
			opts := storage.ScrubOptions{Fetcher: n.transport, BytesPerSecond: n.cfg.Storage.ScrubBytesPerSecond}
			if err := n.store.ScrubLoop(ctx, iv, opts); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Warn("scrub stopped", "err", err)
			}
		})
	}
	servers := []*http.Server{{Handler: n.apiHandler, ReadHeaderTimeout: 10 * time.Second}}
	lns := []net.Listener{n.apiLn}
	if n.metricsLn != nil {
		servers = append(servers, &http.Server{Handler: api.MetricsHandler(n.metrics), ReadHeaderTimeout: 10 * time.Second})
		lns = append(lns, n.metricsLn)
	}
	for i, s := range servers {
		wg.Go(func() {
			if err := s.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("HTTP server stopped", "addr", lns[i].Addr().String(), "err", err)
			}
		})
	}
	<-ctx.Done()
	n.log.Info("shutting down")
	for _, s := range servers {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	// Consensus has stopped: no more commits. Let the queued ones reach
	// storage before it closes.
	close(n.commitQ)
	<-committed
	n.log.Info("stopped")
	if err := n.commitErr(); err != nil {
		return err
	}
	return driverErr
}

// maintain runs periodic housekeeping: the receipt-key delegation is
// renewed at half its life, and pending transactions that aged out of the
// transaction window are dropped.
func (n *Node) maintain(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	renewed := n.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.now().Sub(renewed) > delegationLife/2 {
			if err := n.renewDelegation(ctx); err != nil {
				n.log.Warn("renewing the receipt-key delegation", "err", err)
			} else {
				renewed = n.now()
			}
		}
		n.mu.Lock()
		window := time.Duration(n.epoch.Params.TxWindowMs) * time.Millisecond
		n.mu.Unlock()
		cutoff := n.now().Add(-window)
		n.pool.Recheck(func(tx *ledger.Transaction, _ ledger.Address, _ time.Time) bool {
			return time.UnixMilli(tx.Body.Timestamp).Before(cutoff)
		}, n.admit.Check)
	}
}

// Addrs are the addresses a node serves.
type Addrs struct {
	Peer, Kiosk, API string
	Metrics          string // empty when not separate
}

// Addrs returns the bound addresses (useful with port 0).
func (n *Node) Addrs() Addrs {
	a := Addrs{Peer: n.peers.Addr().String(), Kiosk: n.kiosk.LocalAddr().String(), API: n.apiLn.Addr().String()}
	if n.metricsLn != nil {
		a.Metrics = n.metricsLn.Addr().String()
	}
	return a
}

// Store returns the node's store (read it, do not write).
func (n *Node) Store() *storage.Store { return n.store }

// KeyID returns the node identity's key id.
func (n *Node) KeyID() gm.KeyID { return n.identity.Load().id() }

// Status is what the status API reports.
func (n *Node) Status() api.Status {
	st := n.driver.Status()
	tip, _ := n.store.Tip()
	ident := n.identity.Load()
	role := "observer"
	switch {
	case st.Leader:
		role = "leader"
	case st.Validator:
		role = "validator"
	}
	s := api.Status{
		ChainID: n.chainID, Version: Version, KeyID: ident.id(), PublicKey: ledger.KeyBytes(ident.signer.PublicKey()),
		Custody: ident.custody, Role: role, Epoch: st.Epoch, Round: st.Round, HighQCRound: st.HighQCRound,
		CommittedHeight: st.CommittedHeight, CommittedBlock: st.CommittedID, FastPath: n.fast.Mode,
		Storage:    api.StorageStatus{TipHeight: tip.Height, TipID: tip.ID, TipTime: tip.Header.Timestamp},
		Mempool:    api.MempoolStatus{Transactions: n.pool.Len(), Bytes: n.pool.Bytes()},
		Bandwidth:  api.Bandwidth{InBytes: n.transport.bytesIn.Load(), OutBytes: n.transport.bytesOut.Load()},
		ReceiptKey: ledger.KeyBytes(n.receiptKey.PublicKey()),
	}
	if d := n.delegation.Load(); d != nil {
		if enc, err := d.Encode(); err == nil {
			s.ReceiptDelegation = enc
		}
	}
	connected := n.peers.Connected()
	n.mu.Lock()
	vals := n.epoch.Validators.Validators
	n.mu.Unlock()
	for _, v := range vals {
		if n.ring.get(v.PeerID) != nil {
			continue
		}
		s.Peers = append(s.Peers, api.PeerStatus{KeyID: v.PeerID, Address: n.peerAddress(v), Connected: slices.Contains(connected, v.PeerID)})
	}
	return s
}

func (n *Node) registerMetrics() {
	m := n.metrics
	m.GaugeFunc("mempool_transactions", "Pending transactions in the mempool.", nil, func() []metrics.Sample { return metrics.One(float64(n.pool.Len())) })
	m.GaugeFunc("mempool_bytes", "Encoded bytes of pending transactions.", nil, func() []metrics.Sample { return metrics.One(float64(n.pool.Bytes())) })
	m.GaugeFunc("height", "Committed height.", nil, func() []metrics.Sample {
		tip, _ := n.store.Tip()
		return metrics.One(float64(tip.Height))
	})
	m.GaugeFunc("consensus_round", "Current consensus round.", nil, func() []metrics.Sample { return metrics.One(float64(n.driver.Status().Round)) })
	m.GaugeFunc("consensus_epoch", "Current epoch.", nil, func() []metrics.Sample { return metrics.One(float64(n.driver.Status().Epoch)) })
	m.GaugeFunc("speculative_blocks", "Blocks executed but not committed.", nil, func() []metrics.Sample { return metrics.One(float64(n.tree.Len() - 1)) })
	m.CounterFunc("signature_verifications_total", "Transactions whose SM2 signatures this node verified, by outcome.", []string{"outcome"}, func() []metrics.Sample {
		s := n.sigs.Stats()
		return []metrics.Sample{{Labels: []string{"ok"}, Value: float64(s.Verified - s.Failed)}, {Labels: []string{"failed"}, Value: float64(s.Failed)}}
	})
	m.CounterFunc("signature_cache_hits_total", "Signature checks answered from the verified-transaction cache.", nil, func() []metrics.Sample {
		return metrics.One(float64(n.sigs.Stats().Hits))
	})
	m.CounterFunc("xdp_packets_total", "Fast-path verdicts (XDP program or its Go twin), by verdict.", []string{"verdict", "path"}, func() []metrics.Sample {
		c, err := n.fast.Filter.Counters()
		if err != nil {
			return nil
		}
		var out []metrics.Sample
		c.Each(func(label string, v uint64) {
			out = append(out, metrics.Sample{Labels: []string{label, n.fast.Mode}, Value: float64(v)})
		})
		return out
	})
	m.CounterFunc("ingress_datagrams_total", "Kiosk datagrams, by what the ingress did with them.", []string{"outcome"}, func() []metrics.Sample {
		s := n.ingress.Stats()
		var out []metrics.Sample
		for _, kv := range []struct {
			l string
			v uint64
		}{{"received", s.Received}, {"twin_dropped", s.TwinDropped}, {"malformed", s.Malformed}, {"queue_full", s.QueueFull},
			{"cached_answer", s.CachedAnswer}, {"in_flight", s.InFlight}, {"accepted", s.Accepted}, {"duplicate", s.Duplicate}, {"rejected", s.Rejected},
			{"busy", s.Busy}, {"send_errors", s.SendErrors}} {
			out = append(out, metrics.Sample{Labels: []string{kv.l}, Value: float64(kv.v)})
		}
		return out
	})
	m.CounterFunc("peer_bytes_total", "Bytes exchanged with peers, by direction.", []string{"direction"}, func() []metrics.Sample {
		return []metrics.Sample{{Labels: []string{"in"}, Value: float64(n.transport.bytesIn.Load())}, {Labels: []string{"out"}, Value: float64(n.transport.bytesOut.Load())}}
	})
	m.CounterFunc("consensus_events_total", "Consensus core counters (messages, drops by reason, votes, QCs, commits, ...).", []string{"event"}, func() []metrics.Sample {
		cm := n.driver.Metrics()
		var out []metrics.Sample
		cm.Each(func(name string, v uint64) {
			out = append(out, metrics.Sample{Labels: []string{name}, Value: float64(v)})
		})
		return out
	})
	m.GaugeFunc("peers_connected", "Peers with a live connection.", nil, func() []metrics.Sample { return metrics.One(float64(len(n.peers.Connected()))) })
}
