package clustertest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"hallmark/consensus"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
	"hallmark/netstack/peer"
)

// The node runtime's peer message tags (firmware/node/transport.go): a
// consensus message, a batch of gossiped transactions; and request kinds.
const (
	tagConsensus byte = 1
	tagTxs       byte = 2
	reqShard     byte = 1
	reqPayload   byte = 2
)

// ByzantineConfig configures a Byzantine validator: it holds a real
// validator identity (its key in its TPM) and speaks to the other
// validators over the peer mesh, but everything it says is garbage or
// breaks the protocol.
type ByzantineConfig struct {
	ChainID string
	// KeyRef and TPM name the validator key (hsm reference) and where its
	// TPM answers.
	KeyRef, TPM string
	// Index is the validator's index in the validator set.
	Index uint32
	// Listen is the QUIC address it serves (the validator's own).
	Listen string
	// Peers are the honest validators.
	Peers []ByzantinePeer
	// Kiosks are the honest nodes' kiosk ports, for datagram junk.
	Kiosks []string
	// Duration bounds the attack.
	Duration time.Duration
	// Interval is the pause between rounds of garbage (default 20 ms).
	Interval time.Duration
}

// ByzantinePeer is an honest validator.
type ByzantinePeer struct {
	Key  string // hex public key
	Addr string
}

// ByzantineStats count what the Byzantine node did.
type ByzantineStats struct {
	Connected   int            // honest peers connected at the end of the attack
	Sent        map[string]int // messages queued, by kind of garbage
	Requests    int            // malformed requests sent
	RequestErrs int            // of which the peer answered with an error
	Learned     int            // consensus messages received from honest nodes
	// An identity nobody admitted dials the same peers and sends them
	// requests: how many it tried and how many an honest node answered
	// (want none; an error answer counts as an answer).
	UnadmittedTried, UnadmittedAnswered int
}

// byz is the running attack.
type byz struct {
	cfg    ByzantineConfig
	log    *slog.Logger
	signer gm.Signer
	node   *peer.Node
	peers  []gm.KeyID
	rnd    *rand.Rand

	mu      sync.Mutex
	learned int
	epoch   uint64
	round   uint64
	highQC  *consensus.QC
	lastPro *consensus.Proposal
	lastVot *consensus.Vote
}

// HandleMessage records what the honest nodes say, to aim the garbage at
// their current epoch and round.
func (b *byz) HandleMessage(_ gm.KeyID, msg []byte) {
	if len(msg) == 0 || msg[0] != tagConsensus {
		return
	}
	m, err := consensus.DecodeMessage(msg[1:])
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.learned++
	switch {
	case m.Proposal != nil:
		p := m.Proposal
		b.lastPro = p
		b.epoch, b.round = p.Block.Header.Epoch, max(b.round, p.Block.Header.Round)
		b.highQC = &p.Justify
	case m.Vote != nil:
		b.lastVot = m.Vote
		b.epoch, b.round = m.Vote.Data.Epoch, max(b.round, m.Vote.Data.Round)
	case m.Timeout != nil:
		b.epoch, b.round = m.Timeout.Epoch, max(b.round, m.Timeout.Round)
	}
}

// HandleRequest answers every request with garbage.
func (b *byz) HandleRequest(context.Context, gm.KeyID, []byte) ([]byte, error) {
	return b.junk(64), nil
}

func (b *byz) junk(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(b.rnd.Uint32())
	}
	return out
}

// RunByzantine runs the attack for cfg.Duration.
func RunByzantine(ctx context.Context, cfg ByzantineConfig, log *slog.Logger) (ByzantineStats, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	st := ByzantineStats{Sent: map[string]int{}}
	signer, err := hsm.Open(ctx, cfg.KeyRef, hsm.Options{TPM: tpm.Config{Addr: cfg.TPM}})
	if err != nil {
		return st, fmt.Errorf("byzantine: opening the validator key: %w", err)
	}
	defer signer.Close()
	b := &byz{cfg: cfg, log: log, signer: signer, rnd: rand.New(rand.NewPCG(rand.Uint64(), 1))}
	var admitted []peer.Peer
	for _, p := range cfg.Peers {
		raw, err := hex.DecodeString(p.Key)
		if err != nil {
			return st, err
		}
		k, err := gm.ParsePublicKey(raw)
		if err != nil {
			return st, err
		}
		admitted = append(admitted, peer.Peer{Key: k, Addr: p.Addr})
		b.peers = append(b.peers, k.ID())
	}
	b.node, err = peer.New(ctx, peer.Config{ChainID: cfg.ChainID, Signer: signer, ListenAddr: cfg.Listen, Handler: b,
		MaxMessageSize: 64 << 20, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Logger: log})
	if err != nil {
		return st, fmt.Errorf("byzantine: peer endpoint: %w", err)
	}
	defer b.node.Close()
	b.node.SetPeers(admitted)

	// An identity nobody admitted tries the same peers. Of two peers only
	// the one with the smaller key id dials, so the stranger's id must be
	// below every peer's for it to dial them all (a random one dialled
	// nobody about one run in four).
	stranger, err := strangerBelow(b.peers)
	if err != nil {
		return st, err
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	outsider, err := peer.New(ctx, peer.Config{ChainID: cfg.ChainID, Signer: stranger, ListenAddr: net.JoinHostPort(host, "0"),
		Handler: b, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: log})
	if err != nil {
		return st, fmt.Errorf("byzantine: outsider endpoint: %w", err)
	}
	defer outsider.Close()
	outsider.SetPeers(admitted)

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
	if err != nil {
		return st, err
	}
	defer udp.Close()

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for step := 0; ; step++ {
		select {
		case <-ctx.Done():
			st.Connected = len(b.node.Connected())
			b.mu.Lock()
			st.Learned = b.learned
			b.mu.Unlock()
			return st, nil
		case <-tick.C:
		}
		for _, to := range b.peers {
			kind, msg := b.garbage(ctx, step)
			if msg == nil {
				continue
			}
			if err := b.node.Send(to, msg); err == nil {
				st.Sent[kind]++
			}
		}
		if step%5 == 0 {
			b.badRequests(ctx, &st)
			b.outsiderRequests(ctx, outsider, &st)
		}
		if step%2 == 0 {
			b.udpJunk(udp)
		}
	}
}

// garbage returns the next piece of garbage, cycling through kinds.
func (b *byz) garbage(ctx context.Context, step int) (string, []byte) {
	b.mu.Lock()
	epoch, round, highQC, lastPro, lastVot := b.epoch, b.round, b.highQC, b.lastPro, b.lastVot
	b.mu.Unlock()
	if epoch == 0 {
		epoch = 1
	}
	enc := func(m *consensus.Message) []byte {
		m.Version = consensus.Version
		data, err := ledger.Marshal(m)
		if err != nil {
			return nil
		}
		return append([]byte{tagConsensus}, data...)
	}
	sign := func(msg []byte) gm.Signature {
		s, err := b.signer.Sign(ctx, msg)
		if err != nil {
			return gm.Signature{}
		}
		return s
	}
	switch step % 12 {
	case 0: // random bytes as a consensus message
		return "random_consensus", append([]byte{tagConsensus}, b.junk(1+b.rnd.IntN(2000))...)
	case 1: // random bytes as a transaction batch, and a batch of garbage transactions
		if b.rnd.IntN(2) == 0 {
			return "random_txs", append([]byte{tagTxs}, b.junk(1+b.rnd.IntN(4000))...)
		}
		batch := []byte{tagTxs}
		for range 20 {
			j := b.junk(100 + b.rnd.IntN(300))
			batch = binary.AppendUvarint(batch, uint64(len(j)))
			batch = append(batch, j...)
		}
		return "garbage_tx_batch", batch
	case 2: // an unknown tag, and an empty message
		if b.rnd.IntN(2) == 0 {
			return "unknown_tag", append([]byte{0x7f}, b.junk(50)...)
		}
		return "empty", []byte{}
	case 3: // a correctly signed vote for a block that does not exist
		d := consensus.VoteData{Epoch: epoch, Round: round, Height: round, BlockID: ledger.BlockID(gm.SM3(b.junk(16))), ParentID: ledger.BlockID(gm.SM3(b.junk(16))), ParentRound: max(round, 1) - 1}
		return "signed_vote_unknown_block", enc(&consensus.Message{Vote: &consensus.Vote{Data: d, Voter: b.cfg.Index, Signature: sign(consensus.VoteSignBytes(b.cfg.ChainID, d))}})
	case 4: // a vote claiming another validator's index
		d := consensus.VoteData{Epoch: epoch, Round: round + 1, Height: round + 1, BlockID: ledger.BlockID(gm.SM3(b.junk(16)))}
		return "vote_forged_voter", enc(&consensus.Message{Vote: &consensus.Vote{Data: d, Voter: (b.cfg.Index + 1) % 4, Signature: sign(consensus.VoteSignBytes(b.cfg.ChainID, d))}})
	case 5: // a timeout far in the future carrying a forged certificate
		qc := consensus.QC{Version: 1, Data: consensus.VoteData{Epoch: epoch, Round: round + 500, Height: round + 500, BlockID: ledger.BlockID(gm.SM3(b.junk(8)))},
			Signers: []byte{0x0f}, Signatures: make([]gm.Signature, 4)}
		for i := range qc.Signatures {
			copy(qc.Signatures[i][:], b.junk(64))
		}
		r := round + 1000
		return "timeout_forged_qc", enc(&consensus.Message{Timeout: &consensus.Timeout{Epoch: epoch, Round: r, Voter: b.cfg.Index, HighQC: qc,
			Signature: sign(consensus.TimeoutSignBytes(b.cfg.ChainID, epoch, r, qc.Data.Round))}})
	case 6: // a proposal of a block whose contents do not match its roots, signed
		var justify consensus.QC
		if highQC != nil {
			justify = *highQC
		}
		blk := ledger.Block{Header: ledger.Header{Version: ledger.HeaderVersion, ChainID: b.cfg.ChainID, Height: justify.Data.Height + 1,
			PrevHash: justify.Data.BlockID, Epoch: epoch, Round: round, Timestamp: time.Now().UnixMilli(),
			Proposer: b.signer.PublicKey().ID(), StateRoot: gm.SM3(b.junk(8)), TxRoot: gm.SM3(b.junk(8))}}
		id := blk.Header.ID()
		return "proposal_bad_block", enc(&consensus.Message{Proposal: &consensus.Proposal{Block: blk, Justify: justify, Signature: sign(consensus.ProposalSignBytes(b.cfg.ChainID, id))}})
	case 7: // an honest proposal replayed with a flipped signature
		if lastPro == nil {
			return "", nil
		}
		p := *lastPro
		p.Signature[5] ^= 0x40
		return "proposal_bad_signature", enc(&consensus.Message{Proposal: &p})
	case 8: // an honest vote replayed as if it were ours
		if lastVot == nil {
			return "", nil
		}
		v := *lastVot
		v.Signature[9] ^= 1
		return "vote_bad_signature", enc(&consensus.Message{Vote: &v})
	case 9: // a sync request for everything, and a fetch of unknown blocks
		if b.rnd.IntN(2) == 0 {
			return "sync_request_all", enc(&consensus.Message{SyncRequest: &consensus.SyncRequest{Epoch: epoch, FromHeight: 1, MaxBlocks: consensus.MaxSyncBlocks}})
		}
		return "fetch_unknown", enc(&consensus.Message{FetchRequest: &consensus.FetchRequest{Epoch: epoch, BlockID: ledger.BlockID(gm.SM3(b.junk(8))), Count: consensus.MaxFetchBlocks}})
	case 10: // a sync response nobody asked for, with a forged proof
		qc := consensus.QC{Version: 1, Data: consensus.VoteData{Epoch: epoch, Round: round + 2, Height: round + 2, ParentRound: round + 1}, Signers: []byte{0x07}, Signatures: make([]gm.Signature, 3)}
		blk := ledger.Block{Header: ledger.Header{Version: ledger.HeaderVersion, ChainID: b.cfg.ChainID, Height: round + 1, Epoch: epoch, Round: round + 1, Timestamp: time.Now().UnixMilli()}}
		qc.Data.ParentID = blk.Header.ID()
		return "sync_response_forged", enc(&consensus.Message{SyncResponse: &consensus.SyncResponse{Blocks: []ledger.Block{blk}, Proof: &consensus.CommitProof{Version: 1, QC: qc}}})
	default: // a large blob, at most once in a while
		if b.rnd.IntN(10) != 0 {
			return "", nil
		}
		return "large_random", append([]byte{tagConsensus}, b.junk(1<<20)...)
	}
}

// badRequests sends malformed and pointless requests to every peer.
func (b *byz) badRequests(ctx context.Context, st *ByzantineStats) {
	reqs := [][]byte{
		{},                               // empty
		{0x99, 1, 2, 3},                  // unknown kind
		append([]byte{reqShard}, 1, 2),   // truncated shard request
		append([]byte{reqPayload}, 0, 0), // truncated payload request
		binary.BigEndian.AppendUint64([]byte{reqShard}, 1<<40), // shard of a height that does not exist (id missing: malformed)
		append([]byte{reqPayload}, b.junk(32)...),              // a payload nobody has
	}
	for _, to := range b.peers {
		for _, r := range reqs {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := b.node.Request(rctx, to, r)
			cancel()
			if errors.Is(err, peer.ErrNotConnected) || errors.Is(err, context.Canceled) {
				continue
			}
			st.Requests++
			if err != nil {
				st.RequestErrs++
			}
		}
	}
}

// outsiderRequests has the unadmitted identity ask every peer for a
// payload. A TLS 1.3 client may believe its handshake done before the
// server has refused its certificate, so "connected" on the outsider's side
// proves nothing; an answer would.
func (b *byz) outsiderRequests(ctx context.Context, outsider *peer.Node, st *ByzantineStats) {
	for _, to := range b.peers {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := outsider.Request(rctx, to, append([]byte{reqPayload}, b.junk(32)...))
		cancel()
		if errors.Is(err, peer.ErrNotConnected) || ctx.Err() != nil {
			continue
		}
		st.UnadmittedTried++
		var remote *peer.RemoteError
		if err == nil || errors.As(err, &remote) {
			st.UnadmittedAnswered++
		}
	}
}

// udpJunk sends datagrams that are not QUIC to the peer ports and datagrams
// that are not valid transactions to the kiosk ports.
func (b *byz) udpJunk(c *net.UDPConn) {
	for _, p := range b.cfg.Peers {
		if a, err := net.ResolveUDPAddr("udp", p.Addr); err == nil {
			j := b.junk(20 + b.rnd.IntN(1200))
			j[0] |= 0xc0 // looks like a QUIC long header
			_, _ = c.WriteToUDP(j, a)
		}
	}
	for _, k := range b.cfg.Kiosks {
		a, err := net.ResolveUDPAddr("udp", k)
		if err != nil {
			continue
		}
		_, _ = c.WriteToUDP(b.junk(1+b.rnd.IntN(1232)), a)
		// A plausible header in front of a garbage body.
		h := make([]byte, kiosk.HeaderSize)
		binary.BigEndian.PutUint32(h, kiosk.Magic)
		h[4] = kiosk.Version
		binary.BigEndian.PutUint64(h[48:], uint64(time.Now().UnixMilli()))
		dg := append(h, b.junk(200)...)
		binary.BigEndian.PutUint16(dg[6:], uint16(len(dg)))
		_, _ = c.WriteToUDP(dg, a)
	}
}

// strangerBelow generates keys until one's id sorts below every id in ids.
func strangerBelow(ids []gm.KeyID) (*gm.PrivateKey, error) {
	for range 1000 {
		k, err := gm.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		id := k.PublicKey().ID()
		below := true
		for _, p := range ids {
			if bytes.Compare(id[:], p[:]) >= 0 {
				below = false
				break
			}
		}
		if below {
			return k, nil
		}
	}
	return nil, errors.New("byzantine: no key below every peer's id in 1000 tries")
}
