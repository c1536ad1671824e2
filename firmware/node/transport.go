package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"hallmark/consensus/driver"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/peer"
	"hallmark/storage"
	"hallmark/storage/erasure"
)

// Every message between nodes starts with a tag byte saying what it
// carries; requests start with a kind byte.
const (
	tagConsensus byte = 1 // a consensus message, as the core encodes it
	tagTxs       byte = 2 // a batch of gossiped transactions

	reqShard   byte = 1 // {height (8), block id (32)} → erasure.EncodeShard
	reqPayload byte = 2 // {digest (32)} → payload bytes
)

// maxPeerMessage bounds one message between nodes: a proposal carries a
// block body (at most the chain's MaxBlockBytes) and its payloads, which
// the leader bounds by maxProposalPayloads.
const maxPeerMessage = 64 << 20

// transport carries consensus messages over the peer mesh and serves
// peers' requests. It implements driver.Transport and peer.Handler.
type transport struct {
	n     *Node
	peers *peer.Node
	in    chan driver.Inbound

	// aliases map the old key of a validator whose key rotation has
	// committed to its new key: the node switched its peer identity to
	// the new key at once, while the epoch's validator set (and so
	// consensus) names it by the old one until the boundary.
	aliasMu sync.Mutex
	aliases map[gm.KeyID]gm.KeyID

	bytesIn, bytesOut atomic.Uint64
}

func newTransport(n *Node) *transport {
	return &transport{n: n, in: make(chan driver.Inbound, 4096)}
}

// setAliases replaces the alias table.
func (t *transport) setAliases(a map[gm.KeyID]gm.KeyID) {
	t.aliasMu.Lock()
	t.aliases = a
	t.aliasMu.Unlock()
}

// route returns the identity to reach the validator key id at: id itself,
// or, when id is the old key of a validator that switched to its new key
// and no connection under id exists, the new key.
func (t *transport) route(id gm.KeyID) gm.KeyID {
	t.aliasMu.Lock()
	to, ok := t.aliases[id]
	t.aliasMu.Unlock()
	if !ok || slices.Contains(t.peers.Connected(), id) {
		return id
	}
	return to
}

// Send implements driver.Transport. A message to a key this node holds is
// delivered locally.
func (t *transport) Send(_ context.Context, to gm.KeyID, msg []byte) error {
	if t.n.ring.get(to) != nil {
		t.deliver(driver.Inbound{From: to, Data: msg})
		return nil
	}
	buf := make([]byte, 1+len(msg))
	buf[0] = tagConsensus
	copy(buf[1:], msg)
	if err := t.peers.Send(t.route(to), buf); err != nil {
		return err
	}
	t.bytesOut.Add(uint64(len(buf)))
	return nil
}

// Incoming implements driver.Transport.
func (t *transport) Incoming() <-chan driver.Inbound { return t.in }

func (t *transport) deliver(m driver.Inbound) {
	select {
	case t.in <- m:
	default:
		// The core is behind; consensus recovers from loss.
		t.n.metrics.InboundDropped.Inc()
	}
}

// broadcast sends a tagged message to every admitted peer.
func (t *transport) broadcast(msg []byte) {
	sent := t.peers.Broadcast(msg)
	t.bytesOut.Add(uint64(sent * len(msg)))
}

// HandleMessage implements peer.Handler.
func (t *transport) HandleMessage(from gm.KeyID, msg []byte) {
	t.bytesIn.Add(uint64(len(msg)))
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case tagConsensus:
		t.deliver(driver.Inbound{From: from, Data: msg[1:]})
	case tagTxs:
		t.n.gossip.received(msg[1:])
	default:
		t.n.log.Debug("peer message with an unknown tag", "from", from, "tag", msg[0])
	}
}

// HandleRequest implements peer.Handler: shards and payloads for peers
// that rebuild bodies or lack payloads.
func (t *transport) HandleRequest(_ context.Context, from gm.KeyID, req []byte) ([]byte, error) {
	t.bytesIn.Add(uint64(len(req)))
	if len(req) == 0 {
		return nil, errors.New("empty request")
	}
	var out []byte
	var err error
	switch req[0] {
	case reqShard:
		if len(req) != 1+8+32 {
			return nil, errors.New("malformed shard request")
		}
		h := binary.BigEndian.Uint64(req[1:])
		var id ledger.BlockID
		copy(id[:], req[9:])
		out, err = t.shard(h, id)
	case reqPayload:
		if len(req) != 1+32 {
			return nil, errors.New("malformed payload request")
		}
		var d gm.Digest
		copy(d[:], req[1:])
		out, err = t.n.store.Payload(d)
	default:
		return nil, fmt.Errorf("unknown request kind %d", req[0])
	}
	if err != nil {
		return nil, err
	}
	t.bytesOut.Add(uint64(len(out)))
	return out, nil
}

func (t *transport) shard(h uint64, id ledger.BlockID) ([]byte, error) {
	hdr, err := t.n.store.Header(h)
	if err != nil {
		return nil, err
	}
	if hdr.ID != id {
		return nil, fmt.Errorf("block %d here is %s, not %s", h, hdr.ID, id)
	}
	s, err := t.n.store.Shard(h)
	if err != nil {
		return nil, err
	}
	return erasure.EncodeShard(s)
}

// FetchShard implements storage.ShardFetcher over peer requests.
func (t *transport) FetchShard(ctx context.Context, req storage.ShardRequest) (*erasure.Shard, error) {
	cfg, _, err := t.n.epochs.config(req.Epoch)
	if err != nil {
		return nil, err
	}
	if cfg.Validators.N() != req.Validators || req.Index < 0 || req.Index >= cfg.Validators.N() {
		return nil, fmt.Errorf("node: epoch %d has %d validators; shard %d of %d asked", req.Epoch, cfg.Validators.N(), req.Index, req.Validators)
	}
	holder := cfg.Validators.Validators[req.Index].PeerID
	if t.n.ring.get(holder) != nil {
		return t.n.store.Shard(req.Height)
	}
	holder = t.route(holder)
	msg := make([]byte, 0, 1+8+32)
	msg = append(msg, reqShard)
	msg = binary.BigEndian.AppendUint64(msg, req.Height)
	msg = append(msg, req.BlockID[:]...)
	t.bytesOut.Add(uint64(len(msg)))
	resp, err := t.peers.Request(ctx, holder, msg)
	if err != nil {
		return nil, err
	}
	t.bytesIn.Add(uint64(len(resp)))
	return erasure.DecodeShard(resp)
}

// ReportBadShard implements storage.ShardFetcher.
func (t *transport) ReportBadShard(req storage.ShardRequest, err error) {
	t.n.log.Warn("a peer served a bad shard", "height", req.Height, "epoch", req.Epoch, "index", req.Index, "err", err)
}

// FetchPayload implements storage.PayloadFetcher: ask connected peers in
// turn; storage checks the digest.
func (t *transport) FetchPayload(ctx context.Context, d gm.Digest) ([]byte, error) {
	msg := append([]byte{reqPayload}, d[:]...)
	var last error = errors.New("no peer connected")
	for _, p := range t.peers.Connected() {
		resp, err := t.peers.Request(ctx, p, msg)
		if err != nil {
			last = err
			continue
		}
		t.bytesIn.Add(uint64(len(resp)))
		if gm.SM3(resp) == d {
			return resp, nil
		}
		last = fmt.Errorf("peer %s served a payload that does not match", p)
	}
	return nil, last
}
