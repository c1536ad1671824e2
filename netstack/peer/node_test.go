package peer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"hallmark/gm"
	"hallmark/ledger/ledgertest"
)

const testChain = "hallmark-peer-test"

type received struct {
	from gm.KeyID
	msg  []byte
}

// recorder is a Handler that records messages and echoes requests.
type recorder struct {
	msgs chan received
}

func newRecorder() *recorder { return &recorder{msgs: make(chan received, 1024)} }

func (r *recorder) HandleMessage(from gm.KeyID, msg []byte) { r.msgs <- received{from, msg} }

func (r *recorder) HandleRequest(_ context.Context, from gm.KeyID, req []byte) ([]byte, error) {
	if bytes.Equal(req, []byte("fail")) {
		return nil, errors.New("no such shard")
	}
	return append([]byte("echo:"), req...), nil
}

type testNode struct {
	*Node
	key *gm.PrivateKey
	rec *recorder
}

func startNode(t *testing.T, key *gm.PrivateKey, mod func(*Config)) *testNode {
	t.Helper()
	rec := newRecorder()
	cfg := Config{
		ChainID: testChain, Signer: key, ListenAddr: "127.0.0.1:0", Handler: rec,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		MaxMessageSize: 1 << 16,
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, key: key, rec: rec}
}

func (n *testNode) peer() Peer { return Peer{Key: n.key.PublicKey(), Addr: n.Addr().String()} }

// mesh admits every node at every other node.
func mesh(nodes ...*testNode) {
	var all []Peer
	for _, n := range nodes {
		all = append(all, n.peer())
	}
	for _, n := range nodes {
		n.SetPeers(all)
	}
}

func waitConnected(t *testing.T, n *testNode, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(n.Connected()) < want {
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %d of %d peers connected", n.ID(), len(n.Connected()), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func expectMsg(t *testing.T, n *testNode, from gm.KeyID, msg []byte) {
	t.Helper()
	select {
	case r := <-n.rec.msgs:
		if r.from != from || !bytes.Equal(r.msg, msg) {
			t.Fatalf("got %q from %s, want %q from %s", r.msg, r.from, msg, from)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message %q", msg)
	}
}

func TestTwoNodes(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), nil)
	b := startNode(t, ledgertest.Key(t), nil)
	mesh(a, b)
	waitConnected(t, a, 1)
	waitConnected(t, b, 1)
	for i := range 100 {
		must(t, a.Send(b.ID(), fmt.Appendf(nil, "a%d", i)))
		must(t, b.Send(a.ID(), fmt.Appendf(nil, "b%d", i)))
	}
	// Messages to one peer arrive in order.
	for i := range 100 {
		expectMsg(t, b, a.ID(), fmt.Appendf(nil, "a%d", i))
		expectMsg(t, a, b.ID(), fmt.Appendf(nil, "b%d", i))
	}
	ctx := context.Background()
	resp, err := a.Request(ctx, b.ID(), []byte("shard 3"))
	if err != nil || string(resp) != "echo:shard 3" {
		t.Fatalf("request: %q, %v", resp, err)
	}
	_, err = b.Request(ctx, a.ID(), []byte("fail"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "no such shard" {
		t.Fatalf("failing request: %v", err)
	}
	if err := a.Send(b.ID(), make([]byte, 1<<16+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize send: %v", err)
	}
	if err := a.Send(gm.KeyID{1}, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
}

func TestFourNodes(t *testing.T) {
	var nodes []*testNode
	for range 4 {
		nodes = append(nodes, startNode(t, ledgertest.Key(t), nil))
	}
	mesh(nodes...)
	for _, n := range nodes {
		waitConnected(t, n, 3)
	}
	for i, n := range nodes {
		if got := n.Broadcast(fmt.Appendf(nil, "from %d", i)); got != 3 {
			t.Fatalf("broadcast reached %d queues", got)
		}
	}
	for i, n := range nodes {
		seen := map[string]bool{}
		for range 3 {
			select {
			case r := <-n.rec.msgs:
				seen[string(r.msg)] = true
			case <-time.After(10 * time.Second):
				t.Fatalf("node %d: only %v", i, seen)
			}
		}
		for j := range nodes {
			if j != i && !seen[fmt.Sprintf("from %d", j)] {
				t.Fatalf("node %d missed node %d's broadcast: %v", i, j, seen)
			}
		}
	}
	// Concurrent requests across the mesh.
	var wg sync.WaitGroup
	for _, n := range nodes {
		for _, m := range nodes {
			if n == m {
				continue
			}
			wg.Go(func() {
				resp, err := n.Request(context.Background(), m.ID(), []byte("catch-up"))
				if err != nil || string(resp) != "echo:catch-up" {
					t.Errorf("request %s→%s: %q %v", n.ID(), m.ID(), resp, err)
				}
			})
		}
	}
	wg.Wait()
}

// dialRaw performs a QUIC handshake to n presenting cert, the way a
// misbehaving peer would, and returns the error.
func dialRaw(t *testing.T, n *testNode, cert *tls.Certificate) (*quic.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	}
	c, err := quic.DialAddr(ctx, n.Addr().String(), tlsConf, &quic.Config{HandshakeIdleTimeout: 3 * time.Second})
	if err != nil {
		return nil, err
	}
	// The server verifies the client certificate after the client's
	// handshake completes; a refusal arrives as a close right after.
	select {
	case <-c.Context().Done():
		return nil, context.Cause(c.Context())
	case <-time.After(500 * time.Millisecond):
		return c, nil
	}
}

func TestRefusesBadIdentities(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), nil)
	member, outsider := ledgertest.Key(t), ledgertest.Key(t)
	a.SetPeers([]Peer{{Key: member.PublicKey(), Addr: "127.0.0.1:9"}})
	ctx := context.Background()
	now := time.Now()

	good, err := newCertificate(ctx, testChain, member.PublicKey(), member.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	c, err := dialRaw(t, a, good)
	if err != nil {
		t.Fatalf("the admitted member itself was refused: %v", err)
	}
	c.CloseWithError(0, "")

	forged, err := newCertificate(ctx, testChain, member.PublicKey(), outsider.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	unadmitted, err := newCertificate(ctx, testChain, outsider.PublicKey(), outsider.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	expired, err := newCertificate(ctx, testChain, member.PublicKey(), member.Sign, now.Add(-2*time.Hour), now.Add(-time.Hour))
	must(t, err)
	otherChain, err := newCertificate(ctx, "another-chain", member.PublicKey(), member.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	plain := &tls.Certificate{Certificate: good.Certificate[:0:0], PrivateKey: good.PrivateKey}
	plain.Certificate = append(plain.Certificate, stripBinding(t, good))

	for name, cert := range map[string]*tls.Certificate{
		"forged binding": forged, "unadmitted identity": unadmitted, "expired certificate": expired,
		"other chain": otherChain, "no binding": plain,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dialRaw(t, a, cert)
			t.Logf("refused: %v", err)
			if err == nil {
				c.CloseWithError(0, "")
				t.Fatal("handshake accepted")
			}
			if got := a.Connected(); len(got) != 0 {
				t.Fatalf("connected peers %v", got)
			}
		})
	}
}

// stripBinding re-issues cert's key in a certificate without the binding.
func stripBinding(t *testing.T, cert *tls.Certificate) []byte {
	t.Helper()
	tmpl := *cert.Leaf
	tmpl.ExtraExtensions = nil
	tmpl.Extensions = nil
	der, err := x509CreateSelfSigned(&tmpl, cert)
	must(t, err)
	return der
}

func TestExpiredNodeCannotConnect(t *testing.T) {
	// b's clock is two days behind: the certificate it makes has expired
	// by a's clock.
	a := startNode(t, ledgertest.Key(t), nil)
	b := startNode(t, ledgertest.Key(t), func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
	})
	mesh(a, b)
	time.Sleep(500 * time.Millisecond)
	if len(a.Connected()) != 0 || len(b.Connected()) != 0 {
		t.Fatalf("connected with an expired certificate: %v %v", a.Connected(), b.Connected())
	}
}

func TestRemovedIdentityIsDisconnected(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), nil)
	b := startNode(t, ledgertest.Key(t), nil)
	c := startNode(t, ledgertest.Key(t), nil)
	mesh(a, b, c)
	waitConnected(t, a, 2)
	a.SetPeers([]Peer{b.peer()})
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs := c.Connected()
		if len(cs) == 1 && cs[0] == b.ID() && len(a.Connected()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a %v, c %v", a.Connected(), c.Connected())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Send(c.ID(), []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to removed peer: %v", err)
	}
	// c keeps trying, and keeps being refused.
	time.Sleep(300 * time.Millisecond)
	if len(a.Connected()) != 1 {
		t.Fatalf("removed identity reconnected: %v", a.Connected())
	}
}

func TestGarbageDisconnectsAndReconnects(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), nil)
	b := startNode(t, ledgertest.Key(t), nil)
	mesh(a, b)
	waitConnected(t, a, 1)
	waitConnected(t, b, 1)
	// b misbehaves on its connection to a: a frame longer than allowed.
	conn := b.Node.peer(a.ID()).current()
	s, err := conn.OpenUniStreamSync(context.Background())
	must(t, err)
	_, err = s.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	must(t, err)
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("garbage did not close the connection")
	}
	// The dialing side reconnects and traffic flows again.
	waitConnected(t, a, 1)
	waitConnected(t, b, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		must(t, b.Send(a.ID(), []byte("after")))
		select {
		case r := <-a.rec.msgs:
			if string(r.msg) == "after" {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic after reconnect")
		}
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	ka, kb := ledgertest.Key(t), ledgertest.Key(t)
	a := startNode(t, ka, nil)
	b := startNode(t, kb, nil)
	mesh(a, b)
	waitConnected(t, a, 1)
	addr := b.Addr().String()
	b.Close()
	b2 := startNode(t, kb, func(c *Config) { c.ListenAddr = addr })
	b2.SetPeers([]Peer{a.peer(), b2.peer()})
	waitConnected(t, b2, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a.Send(b2.ID(), []byte("again")) == nil {
			select {
			case r := <-b2.rec.msgs:
				if string(r.msg) == "again" {
					return
				}
			case <-time.After(200 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic after restart")
		}
	}
}

func TestSendQueueBounded(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), func(c *Config) { c.QueueMessages = 3 })
	// An admitted peer that never answers: messages wait in its queue.
	a.SetPeers([]Peer{{Key: ledgertest.Key(t).PublicKey(), Addr: unusedAddr(t)}})
	var id gm.KeyID
	for k := range a.peers {
		id = k
	}
	var full int
	for range 10 {
		if errors.Is(a.Send(id, []byte("m")), ErrQueueFull) {
			full++
		}
	}
	// The writer holds at most one popped message besides the queue.
	if full < 6 {
		t.Fatalf("only %d of 10 sends refused with a 3-message queue", full)
	}
}

func unusedAddr(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func x509CreateSelfSigned(tmpl *x509.Certificate, cert *tls.Certificate) ([]byte, error) {
	signer := cert.PrivateKey.(crypto.Signer)
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
}

// A node whose key is rotated switches its identity: its connections are
// made again under the new key, peers that admit the new key exchange
// messages with it under that key, and a peer that admits only the old key
// can no longer reach it.
func TestSetIdentity(t *testing.T) {
	a := startNode(t, ledgertest.Key(t), nil)
	b := startNode(t, ledgertest.Key(t), nil)
	c := startNode(t, ledgertest.Key(t), nil)
	mesh(a, b, c)
	waitConnected(t, a, 2)
	oldID := a.ID()
	next := ledgertest.Key(t)
	// b learns of the rotation first (it admits both keys), c never does.
	b.SetPeers([]Peer{a.peer(), {Key: next.PublicKey(), Addr: a.Addr().String()}, c.peer()})
	if err := a.SetIdentity(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if a.ID() != next.PublicKey().ID() {
		t.Fatal("identity unchanged")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(b.Connected(), next.PublicKey().ID()) {
		if time.Now().After(deadline) {
			t.Fatalf("b never connected to the new identity: %v", b.Connected())
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, a.Send(b.ID(), []byte("from the new key")))
	expectMsg(t, b, next.PublicKey().ID(), []byte("from the new key"))
	must(t, b.Send(next.PublicKey().ID(), []byte("to the new key")))
	expectMsg(t, a, b.ID(), []byte("to the new key"))
	// c admits only the old key: a's handshakes under the new one fail,
	// so nothing a sends reaches c, and c never counts a as a peer. (a may
	// count c for a round trip per attempt: a TLS 1.3 client finishes its
	// handshake before the server refuses its certificate.)
	for range 30 {
		_ = a.Send(c.ID(), []byte("across the rotation")) // ErrNotConnected most of the time
		if got := c.Connected(); slices.Contains(got, oldID) || slices.Contains(got, next.PublicKey().ID()) {
			t.Fatalf("c %v: connected to an identity of a", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-c.rec.msgs:
		t.Fatalf("c received %q from %s across an identity it does not admit", r.msg, r.from)
	case <-time.After(300 * time.Millisecond):
	}
}

// countingHandler counts log records whose message is msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// A node that a peer refuses (removed, or rotated before the peer knew)
// backs off between attempts instead of redialling as fast as handshakes
// complete: a TLS 1.3 client sees its handshake succeed before the server
// refuses it, and such a connection counts as a failed dial.
func TestRefusedIdentityBacksOff(t *testing.T) {
	ka, kb := ledgertest.Key(t), ledgertest.Key(t)
	for ida, idb := ka.PublicKey().ID(), kb.PublicKey().ID(); bytes.Compare(ida[:], idb[:]) > 0; ida, idb = ka.PublicKey().ID(), kb.PublicKey().ID() {
		ka, kb = kb, ka // the smaller id dials: make it a's
	}
	var refused atomic.Int64
	b := startNode(t, kb, func(c *Config) {
		c.Logger = slog.New(countingHandler{msg: "peer: refused a handshake", n: &refused})
	})
	a := startNode(t, ka, nil)
	b.SetPeers([]Peer{b.peer()}) // b admits nobody else
	a.SetPeers([]Peer{a.peer(), b.peer()})
	time.Sleep(1500 * time.Millisecond)
	// Back-off 20 ms doubling to 200 ms: about 10 attempts in 1.5 s.
	// Redialling at handshake speed makes many times that.
	if n := refused.Load(); n < 2 || n > 20 {
		t.Fatalf("b refused %d handshakes in 1.5 s; want a few, spaced by the back-off", n)
	}
}
