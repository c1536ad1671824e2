// Package peer is the node-to-node transport: QUIC (quic-go) with mutual
// TLS 1.3 on short-lived ECDSA P-256 transport keys, each certificate
// carrying an SM2 signature by the node's identity key that binds the two
// (crypto/tls cannot speak SM2). A connection is accepted only from an
// identity in the admitted set, which the node runtime updates when
// membership changes; connections of removed identities are closed.
//
// It offers what consensus and catch-up need: ordered one-way messages to
// one peer or all, and request/response. Messages travel length-prefixed
// on one unidirectional stream per direction; each request gets its own
// bidirectional stream. Per-peer send queues are bounded; a peer that
// violates the framing is disconnected and logged.
package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"hallmark/gm"
)

// ALPN is the application protocol the peers negotiate.
const ALPN = "hallmark-peer/1"

// Application error codes a node closes connections with.
const (
	codeNormal   quic.ApplicationErrorCode = 0
	codeProtocol quic.ApplicationErrorCode = 1 // framing violated
	codeRemoved  quic.ApplicationErrorCode = 2 // identity no longer admitted
	codeReplaced quic.ApplicationErrorCode = 3 // a newer connection took over
)

// Errors of the sending API.
var (
	ErrUnknownPeer  = errors.New("peer: identity not in the admitted set")
	ErrQueueFull    = errors.New("peer: send queue full")
	ErrTooLarge     = errors.New("peer: message exceeds the maximum size")
	ErrNotConnected = errors.New("peer: not connected")
	ErrClosed       = errors.New("peer: node closed")
)

// Handler receives what peers send. Calls may be concurrent.
type Handler interface {
	// HandleMessage receives one message from an admitted peer.
	HandleMessage(from gm.KeyID, msg []byte)
	// HandleRequest answers a request; an error is returned to the
	// requester as its text.
	HandleRequest(ctx context.Context, from gm.KeyID, req []byte) ([]byte, error)
}

// Peer is one admitted node.
type Peer struct {
	Key  *gm.PublicKey
	Addr string // host:port of its QUIC endpoint
}

// Config configures a [Node].
type Config struct {
	ChainID string
	// Signer is the node's SM2 identity; it signs each transport binding.
	Signer gm.Signer
	// ListenAddr is the UDP address to serve, e.g. "198.18.0.1:7001".
	ListenAddr string
	Handler    Handler
	// MaxMessageSize bounds one message or request or response (default
	// 8 MiB).
	MaxMessageSize int
	// QueueMessages and QueueBytes bound each peer's send queue (default
	// 4096 messages, 64 MiB).
	QueueMessages, QueueBytes int
	// CertLifetime is the transport certificate's validity (default 24 h);
	// it is renewed at half-life.
	CertLifetime time.Duration
	// MinBackoff and MaxBackoff shape reconnection attempts (default
	// 100 ms and 10 s, doubling, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds HandleRequest (default 30 s).
	RequestTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Node is one end of the peer mesh.
type Node struct {
	cfg   Config
	log   *slog.Logger
	self  gm.KeyID
	udp   *net.UDPConn
	tr    *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	certMu sync.RWMutex
	signer gm.Signer // the identity; replaced by SetIdentity
	cert   *tls.Certificate

	mu    sync.Mutex
	peers map[gm.KeyID]*peerState
}

type peerState struct {
	id     gm.KeyID
	key    *gm.PublicKey
	ctx    context.Context
	cancel context.CancelFunc
	queue  *sendQueue

	mu      sync.Mutex
	addr    string
	conn    *quic.Conn
	changed chan struct{} // closed and replaced whenever conn changes
}

// New starts a node listening on cfg.ListenAddr with an empty admitted
// set; [Node.SetPeers] admits peers.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Signer == nil || cfg.Handler == nil || cfg.ChainID == "" {
		return nil, errors.New("peer: config needs a signer, a handler and a chain id")
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 8 << 20
	}
	if cfg.QueueMessages <= 0 {
		cfg.QueueMessages = 4096
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 64 << 20
	}
	if cfg.CertLifetime <= 0 {
		cfg.CertLifetime = 24 * time.Hour
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log, self: cfg.Signer.PublicKey().ID(), signer: cfg.Signer, peers: make(map[gm.KeyID]*peerState)}
	if err := n.renewCert(ctx); err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("peer: listen address %q: %w", cfg.ListenAddr, err)
	}
	n.udp, err = net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer: listening on %s: %w", cfg.ListenAddr, err)
	}
	n.tr = &quic.Transport{Conn: n.udp}
	n.qconf = &quic.Config{
		HandshakeIdleTimeout:  5 * time.Second,
		MaxIdleTimeout:        20 * time.Second,
		KeepAlivePeriod:       5 * time.Second,
		MaxIncomingStreams:    256,
		MaxIncomingUniStreams: 8,
	}
	n.ln, err = n.tr.Listen(n.tlsConfig(nil), n.qconf)
	if err != nil {
		n.udp.Close()
		return nil, fmt.Errorf("peer: QUIC listen: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Go(n.acceptLoop)
	n.wg.Go(n.certLoop)
	return n, nil
}

// Addr returns the UDP address the node serves.
func (n *Node) Addr() net.Addr { return n.udp.LocalAddr() }

// ID returns the node's identity key id.
func (n *Node) ID() gm.KeyID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.self
}

// Close closes every connection and the socket.
func (n *Node) Close() error {
	n.cancel()
	n.mu.Lock()
	for _, ps := range n.peers {
		ps.shutdown(codeNormal, "node closing")
	}
	n.mu.Unlock()
	n.ln.Close()
	err := n.tr.Close()
	n.udp.Close()
	n.wg.Wait()
	return err
}

func (n *Node) renewCert(ctx context.Context) error {
	n.certMu.RLock()
	signer := n.signer
	n.certMu.RUnlock()
	c, err := n.certFor(ctx, signer)
	if err != nil {
		return err
	}
	n.certMu.Lock()
	if n.signer == signer { // not replaced by SetIdentity meanwhile
		n.cert = c
	}
	n.certMu.Unlock()
	return nil
}

func (n *Node) certFor(ctx context.Context, s gm.Signer) (*tls.Certificate, error) {
	now := n.cfg.Now()
	return newCertificate(ctx, n.cfg.ChainID, s.PublicKey(), s.Sign, now.Add(-time.Minute), now.Add(n.cfg.CertLifetime))
}

// SetIdentity makes s the node's identity, as when its key is rotated:
// later handshakes present a transport certificate bound to s, every
// connection (made under the old identity) is closed, and the admitted
// peers are dialled again under the rules for the new identity. Messages
// queued for peers are dropped.
func (n *Node) SetIdentity(ctx context.Context, s gm.Signer) error {
	c, err := n.certFor(ctx, s)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	n.certMu.Lock()
	n.signer, n.cert = s, c
	n.certMu.Unlock()
	old := n.self
	n.self = s.PublicKey().ID()
	if n.self == old {
		return nil
	}
	n.log.Info("peer: identity changed; reconnecting every peer", "old", old, "new", n.self)
	var peers []Peer
	for id, ps := range n.peers {
		ps.mu.Lock()
		addr := ps.addr
		ps.mu.Unlock()
		peers = append(peers, Peer{Key: ps.key, Addr: addr})
		ps.shutdown(codeReplaced, "identity changed")
		delete(n.peers, id)
	}
	n.setPeersLocked(peers)
	return nil
}

// certLoop renews the transport certificate at half its lifetime.
func (n *Node) certLoop() {
	for {
		n.certMu.RLock()
		expiry := n.cert.Leaf.NotAfter
		n.certMu.RUnlock()
		wait := max(expiry.Sub(n.cfg.Now())/2, time.Second)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := n.renewCert(n.ctx); err != nil {
			n.log.Error("peer: renewing the transport certificate", "err", err)
		}
	}
}

func (n *Node) currentCert() *tls.Certificate {
	n.certMu.RLock()
	defer n.certMu.RUnlock()
	return n.cert
}

// tlsConfig returns the TLS configuration for a listener (expect nil) or
// for dialing the peer with identity *expect.
func (n *Node) tlsConfig(expect *gm.KeyID) *tls.Config {
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		id, err := verifyBinding(rawCerts, n.cfg.ChainID, n.cfg.Now())
		if err != nil {
			n.log.Warn("peer: refused a handshake", "err", err)
			return err
		}
		kid := id.ID()
		if expect != nil && kid != *expect {
			err := fmt.Errorf("%w: dialled %s, answered by %s", ErrBinding, *expect, kid)
			n.log.Warn("peer: refused a handshake", "err", err)
			return err
		}
		if !n.admitted(kid) {
			err := fmt.Errorf("%w: identity %s is not admitted", ErrBinding, kid)
			n.log.Warn("peer: refused a handshake", "err", err)
			return err
		}
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{ALPN},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // the binding check below replaces PKIX
		VerifyPeerCertificate: verify,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return n.currentCert(), nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return n.currentCert(), nil
		},
	}
}

// admitted reports whether id is in the admitted set.
func (n *Node) admitted(id gm.KeyID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.peers[id]
	return ok
}

// identityOf returns the verified identity of an established connection.
func (n *Node) identityOf(c *quic.Conn) (gm.KeyID, error) {
	certs := c.ConnectionState().TLS.PeerCertificates
	raw := make([][]byte, len(certs))
	for i, cert := range certs {
		raw[i] = cert.Raw
	}
	// The handshake verified the binding already; parse it again to
	// learn the identity, without the clock (it may have moved on).
	id, err := verifyBinding(raw, n.cfg.ChainID, certs[0].NotBefore)
	if err != nil {
		return gm.KeyID{}, err
	}
	return id.ID(), nil
}

// SetPeers replaces the admitted set. Connections of identities no longer
// in it are closed and their queues dropped; new identities get a queue,
// and this node dials those whose key id is greater than its own (the
// other side dials the rest), so that each pair keeps one connection.
func (n *Node) SetPeers(peers []Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	n.setPeersLocked(peers)
}

func (n *Node) setPeersLocked(peers []Peer) {
	want := make(map[gm.KeyID]Peer, len(peers))
	for _, p := range peers {
		if id := p.Key.ID(); id != n.self {
			want[id] = p
		}
	}
	for id, ps := range n.peers {
		if _, ok := want[id]; !ok {
			n.log.Info("peer: identity removed from the admitted set", "peer", id)
			ps.shutdown(codeRemoved, "identity no longer admitted")
			delete(n.peers, id)
		}
	}
	for id, p := range want {
		if ps, ok := n.peers[id]; ok {
			ps.mu.Lock()
			ps.addr = p.Addr
			ps.mu.Unlock()
			continue
		}
		ctx, cancel := context.WithCancel(n.ctx)
		ps := &peerState{id: id, key: p.Key, ctx: ctx, cancel: cancel, addr: p.Addr,
			queue: newSendQueue(n.cfg.QueueMessages, n.cfg.QueueBytes), changed: make(chan struct{})}
		n.peers[id] = ps
		n.wg.Go(func() { n.writeLoop(ps) })
		if bytes.Compare(n.self[:], id[:]) < 0 {
			n.wg.Go(func() { n.dialLoop(ps) })
		}
	}
}

func (n *Node) peer(id gm.KeyID) *peerState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[id]
}

// Connected lists the peers with a live connection, sorted. On the dialling
// side a connection counts from the end of its handshake, which in TLS 1.3
// comes before the peer has checked this node's certificate: a peer that
// refuses this identity shows here for about a round trip per attempt.
func (n *Node) Connected() []gm.KeyID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []gm.KeyID
	for id, ps := range n.peers {
		if ps.current() != nil {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// Send queues msg for the peer with identity to. It does not wait for
// delivery; a message is lost if the connection breaks while it is in
// flight (consensus retransmits by its own timers).
func (n *Node) Send(to gm.KeyID, msg []byte) error {
	if len(msg) > n.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(msg))
	}
	ps := n.peer(to)
	if ps == nil {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, to)
	}
	if !ps.queue.push(msg) {
		return fmt.Errorf("%w: peer %s", ErrQueueFull, to)
	}
	return nil
}

// Broadcast queues msg for every admitted peer and returns how many
// queues took it.
func (n *Node) Broadcast(msg []byte) int {
	if len(msg) > n.cfg.MaxMessageSize {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	sent := 0
	for _, ps := range n.peers {
		if ps.queue.push(msg) {
			sent++
		}
	}
	return sent
}

// Request sends req to the peer on a new stream and waits for its answer.
func (n *Node) Request(ctx context.Context, to gm.KeyID, req []byte) ([]byte, error) {
	if len(req) > n.cfg.MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(req))
	}
	ps := n.peer(to)
	if ps == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, to)
	}
	c := ps.current()
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, to)
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("peer: opening request stream to %s: %w", to, err)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(0)
		s.CancelWrite(0)
	})
	defer stop()
	if err := writeFrame(s, req); err != nil {
		return nil, fmt.Errorf("peer: request to %s: %w", to, err)
	}
	s.Close()
	resp, err := readFrame(s, n.cfg.MaxMessageSize+1)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("peer: response from %s: %w", to, err)
	}
	if len(resp) == 0 {
		return nil, fmt.Errorf("peer: empty response from %s", to)
	}
	if resp[0] != 0 {
		return nil, &RemoteError{Peer: to, Msg: string(resp[1:])}
	}
	return resp[1:], nil
}

// RemoteError is a request the peer's handler refused.
type RemoteError struct {
	Peer gm.KeyID
	Msg  string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("peer %s: %s", e.Peer, e.Msg) }

func (ps *peerState) current() *quic.Conn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.conn
}

// watch returns the current connection and a channel closed when it
// changes.
func (ps *peerState) watch() (*quic.Conn, <-chan struct{}) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.conn, ps.changed
}

// setConn installs c (or nil) as the connection, closing a previous one.
func (ps *peerState) setConn(c *quic.Conn) {
	ps.mu.Lock()
	old := ps.conn
	ps.conn = c
	close(ps.changed)
	ps.changed = make(chan struct{})
	ps.mu.Unlock()
	if old != nil && old != c {
		old.CloseWithError(codeReplaced, "replaced by a newer connection")
	}
}

// dropConn clears c if it is still the current connection.
func (ps *peerState) dropConn(c *quic.Conn) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.conn == c {
		ps.conn = nil
		close(ps.changed)
		ps.changed = make(chan struct{})
	}
}

func (ps *peerState) shutdown(code quic.ApplicationErrorCode, why string) {
	ps.cancel()
	ps.queue.close()
	ps.mu.Lock()
	c := ps.conn
	ps.conn = nil
	ps.mu.Unlock()
	if c != nil {
		c.CloseWithError(code, why)
	}
}

func (n *Node) acceptLoop() {
	for {
		c, err := n.ln.Accept(n.ctx)
		if err != nil {
			return
		}
		id, err := n.identityOf(c)
		if err != nil {
			c.CloseWithError(codeProtocol, "no identity")
			continue
		}
		ps := n.peer(id)
		if ps == nil || ps.ctx.Err() != nil {
			c.CloseWithError(codeRemoved, "identity not admitted")
			continue
		}
		n.log.Debug("peer: accepted connection", "peer", id, "addr", c.RemoteAddr())
		n.adopt(ps, c)
	}
}

// adopt makes c the peer's connection and serves its incoming streams.
func (n *Node) adopt(ps *peerState, c *quic.Conn) {
	ps.setConn(c)
	n.wg.Go(func() {
		n.serveConn(ps, c)
		ps.dropConn(c)
	})
}

// dialLoop keeps a connection to the peer, reconnecting with back-off.
//
// A TLS 1.3 client finishes its handshake before the server has checked
// the client's certificate, so a peer that refuses this node's identity
// (it was removed, or its key rotated and the peer does not know yet)
// closes each connection right after it opens. A connection that ends
// sooner than stableConn therefore counts as a failed dial: the next one
// waits out the back-off instead of hammering the peer with handshakes.
func (n *Node) dialLoop(ps *peerState) {
	const stableConn = 2 * time.Second
	backoff := n.cfg.MinBackoff
	var since time.Time // when the current or last connection was made
	for ps.ctx.Err() == nil {
		if c, changed := ps.watch(); c != nil {
			select {
			case <-ps.ctx.Done():
				return
			case <-c.Context().Done():
				ps.dropConn(c)
				if time.Since(since) >= stableConn {
					backoff = n.cfg.MinBackoff
				} else if !n.sleepBackoff(ps, &backoff, "connection closed at once", context.Cause(c.Context())) {
					return
				}
			case <-changed:
			}
			continue
		}
		ps.mu.Lock()
		addr := ps.addr
		ps.mu.Unlock()
		c, err := n.dial(ps, addr)
		if err == nil {
			since = time.Now()
			n.log.Debug("peer: connected", "peer", ps.id, "addr", addr)
			n.adopt(ps, c)
			continue
		}
		if ps.ctx.Err() != nil {
			return
		}
		if !n.sleepBackoff(ps, &backoff, "dial failed", err) {
			return
		}
	}
}

// sleepBackoff waits about *backoff (with jitter) and doubles it up to
// the maximum. It reports false when the peer's context ended.
func (n *Node) sleepBackoff(ps *peerState, backoff *time.Duration, what string, err error) bool {
	n.log.Debug("peer: "+what, "peer", ps.id, "err", err, "retry_in", *backoff)
	select {
	case <-ps.ctx.Done():
		return false
	case <-time.After(time.Duration(float64(*backoff) * (0.8 + 0.4*rand.Float64()))):
	}
	*backoff = min(2**backoff, n.cfg.MaxBackoff)
	return true
}

func (n *Node) dial(ps *peerState, addr string) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ps.ctx, 10*time.Second)
	defer cancel()
	id := ps.id
	return n.tr.Dial(ctx, ua, n.tlsConfig(&id), n.qconf)
}

// serveConn reads the peer's message stream and request streams until the
// connection ends. A framing violation closes the connection.
func (n *Node) serveConn(ps *peerState, c *quic.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			s, err := c.AcceptStream(c.Context())
			if err != nil {
				return
			}
			wg.Go(func() { n.serveRequest(ps.id, c, s) })
		}
	})
	for {
		s, err := c.AcceptUniStream(c.Context())
		if err != nil {
			return
		}
		wg.Go(func() {
			for {
				msg, err := readFrame(s, n.cfg.MaxMessageSize)
				if err != nil {
					if !errors.Is(err, io.EOF) && c.Context().Err() == nil {
						n.violation(ps.id, c, err)
					}
					return
				}
				n.cfg.Handler.HandleMessage(ps.id, msg)
			}
		})
	}
}

func (n *Node) violation(id gm.KeyID, c *quic.Conn, err error) {
	var serr *quic.StreamError
	var aerr *quic.ApplicationError
	if errors.As(err, &serr) || errors.As(err, &aerr) {
		return // the stream or connection was reset: not garbage
	}
	n.log.Warn("peer: protocol violation, disconnecting", "peer", id, "addr", c.RemoteAddr(), "err", err)
	c.CloseWithError(codeProtocol, "framing violated")
}

func (n *Node) serveRequest(from gm.KeyID, c *quic.Conn, s *quic.Stream) {
	defer s.Close()
	req, err := readFrame(s, n.cfg.MaxMessageSize)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, io.ErrUnexpectedEOF) {
			n.violation(from, c, err)
		}
		s.CancelRead(0)
		return
	}
	ctx, cancel := context.WithTimeout(c.Context(), n.cfg.RequestTimeout)
	defer cancel()
	resp, herr := n.cfg.Handler.HandleRequest(ctx, from, req)
	var out []byte
	switch {
	case herr != nil:
		out = append([]byte{1}, herr.Error()...)
	case len(resp) > n.cfg.MaxMessageSize:
		out = append([]byte{1}, "response too large"...)
	default:
		out = append([]byte{0}, resp...)
	}
	if err := writeFrame(s, out); err != nil {
		n.log.Debug("peer: writing response", "peer", from, "err", err)
	}
}

// writeLoop drains the peer's queue into a message stream on its current
// connection, opening a new stream whenever the connection changes.
func (n *Node) writeLoop(ps *peerState) {
	var stream *quic.SendStream
	var streamConn *quic.Conn
	for {
		msg := ps.queue.pop()
		if msg == nil {
			select {
			case <-ps.ctx.Done():
				return
			case <-ps.queue.ready:
				continue
			}
		}
		for {
			c, changed := ps.watch()
			if c != nil {
				if c != streamConn {
					s, err := c.OpenUniStreamSync(ps.ctx)
					if err != nil {
						if ps.ctx.Err() != nil {
							return
						}
						ps.dropConn(c)
						continue
					}
					stream, streamConn = s, c
				}
				break
			}
			select {
			case <-ps.ctx.Done():
				return
			case <-changed:
			}
		}
		if err := writeFrame(stream, msg); err != nil {
			n.log.Debug("peer: send failed, message lost", "peer", ps.id, "err", err)
			stream, streamConn = nil, nil
		}
	}
}
