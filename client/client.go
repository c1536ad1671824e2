// Package client is the Go SDK a kiosk or back-office system uses to
// submit transactions to a Hallmark node over the kiosk datagram port. It
// builds and signs a transaction (through any gm.Signer, so a kiosk's key
// may live in a TPM), sends it as one datagram, retries with exponential
// back-off and checks the node's signed receipt against the node's known
// public key. docs/PROTOCOL.md describes the wire format for kiosks
// written in other languages.
package client

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

// ErrNoReceipt is returned when every attempt went unanswered. The
// transaction may still have been accepted (its receipts lost): ask the
// node's HTTP API for it by id before signing it anew.
var ErrNoReceipt = errors.New("client: no receipt from the node")

// TxParams describe a transaction to build.
type TxParams struct {
	ChainID   string
	Type      ledger.TxType
	Recipient *ledger.Address
	Data      []byte
	Memo      string
	// Sender is the account the transaction is sent from; zero means the
	// account registered with the signer's key.
	Sender ledger.Address
	// Timestamp in ms since 1970 UTC; zero means now.
	Timestamp int64
	// Nonce distinguishes otherwise identical transactions; zero means
	// random.
	Nonce uint64
}

// NewTransaction builds a transaction from p and signs it with signer.
func NewTransaction(ctx context.Context, signer gm.Signer, p TxParams) (*ledger.Transaction, error) {
	if p.Timestamp == 0 {
		p.Timestamp = time.Now().UnixMilli()
	}
	if p.Nonce == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("client: nonce: %w", err)
		}
		p.Nonce = binary.BigEndian.Uint64(b[:])
	}
	if p.Sender.IsZero() {
		p.Sender = ledger.AddressOf(signer.PublicKey())
	}
	tx := &ledger.Transaction{Body: ledger.TxBody{
		Version:   ledger.TxVersion,
		ChainID:   p.ChainID,
		Type:      p.Type,
		Timestamp: p.Timestamp,
		Nonce:     p.Nonce,
		Signers:   []ledger.PublicKeyBytes{ledger.KeyBytes(signer.PublicKey())},
		Entity:    ledger.Entity{Sender: p.Sender, Recipient: p.Recipient, Data: p.Data, Memo: p.Memo},
	}}
	if err := tx.Sign(ctx, signer); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := tx.Validate(); err != nil {
		return nil, fmt.Errorf("client: built an invalid transaction: %w", err)
	}
	return tx, nil
}

// Config configures a [Client].
type Config struct {
	// NodeAddr is the node's kiosk port, host:port.
	NodeAddr string
	// NodeKey is the public key the node signs receipts with: the receipt
	// key its identity delegated (see [ReceiptKey]), or the identity key
	// itself for a node that signs receipts with it.
	NodeKey *gm.PublicKey
	// Attempts is how many times a datagram is sent (default 6).
	Attempts int
	// InitialBackoff is the wait for a receipt after the first send
	// (default 250 ms); each further wait doubles, up to MaxBackoff
	// (default 4 s), with ±20% jitter.
	InitialBackoff, MaxBackoff time.Duration
}

// ReceiptKey checks a node's receipt-key delegation (the bytes its status
// API publishes) against the node's identity key, which the kiosk knows
// from enrolment, and returns the key that signs the node's receipts. Use
// it as [Config.NodeKey]. A delegation of another node or chain, outside
// its validity at now, or with a bad signature is refused.
func ReceiptKey(delegation []byte, node *gm.PublicKey, chainID string, now time.Time) (*gm.PublicKey, error) {
	d, err := kiosk.ParseDelegation(delegation)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	key, err := d.Verify(node, chainID, now)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return key, nil
}

// Client submits transactions to one node. It is safe for concurrent use:
// receipts are matched to waiting submissions by transaction id.
type Client struct {
	cfg  Config
	conn *net.UDPConn

	mu      sync.Mutex
	waiters map[ledger.TxID][]chan kiosk.Receipt
	done    chan struct{}
	readErr error
}

// Dial opens a UDP socket to the node.
func Dial(cfg Config) (*Client, error) {
	if cfg.NodeKey == nil {
		return nil, errors.New("client: the node's public key is required to check receipts")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 6
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 4 * time.Second
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.NodeAddr)
	if err != nil {
		return nil, fmt.Errorf("client: node address %q: %w", cfg.NodeAddr, err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("client: dialing %s: %w", cfg.NodeAddr, err)
	}
	c := &Client{cfg: cfg, conn: conn, waiters: make(map[ledger.TxID][]chan kiosk.Receipt), done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// Close closes the socket; pending submissions fail.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// readLoop verifies every datagram that arrives and hands receipts to the
// submissions waiting for them. Anything that does not verify under the
// node's key is ignored.
func (c *Client) readLoop() {
	defer close(c.done)
	buf := make([]byte, 2*kiosk.ReceiptSize)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable surfaces as a read error on a
			// connected socket; the retry loop handles silence.
			continue
		}
		r, err := kiosk.VerifyReceipt(buf[:n], c.cfg.NodeKey)
		if err != nil {
			continue
		}
		c.mu.Lock()
		for _, ch := range c.waiters[r.TxID] {
			select {
			case ch <- r:
			default:
			}
		}
		c.mu.Unlock()
	}
}

func (c *Client) wait(id ledger.TxID) (chan kiosk.Receipt, func()) {
	ch := make(chan kiosk.Receipt, 4)
	c.mu.Lock()
	c.waiters[id] = append(c.waiters[id], ch)
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		list := c.waiters[id]
		for i, w := range list {
			if w == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(c.waiters, id)
		} else {
			c.waiters[id] = list
		}
	}
}

// Submit sends tx and waits for the node's receipt, retrying with back-off.
// It returns the receipt for accepted, duplicate and rejected outcomes (a
// rejection is a receipt, not an error), except that "busy" rejections
// are retried. It returns [ErrNoReceipt] if no attempt was answered.
func (c *Client) Submit(ctx context.Context, tx *ledger.Transaction) (kiosk.Receipt, error) {
	dg, err := kiosk.Encode(tx)
	if err != nil {
		return kiosk.Receipt{}, fmt.Errorf("client: %w", err)
	}
	return c.SubmitDatagram(ctx, dg)
}

// SubmitDatagram is Submit for a datagram already encoded.
func (c *Client) SubmitDatagram(ctx context.Context, dg []byte) (kiosk.Receipt, error) {
	h, err := kiosk.ParseHeader(dg)
	if err != nil {
		return kiosk.Receipt{}, fmt.Errorf("client: %w", err)
	}
	digest := gm.SM3(dg)
	ch, cancel := c.wait(h.TxID)
	defer cancel()

	backoff := c.cfg.InitialBackoff
	var last *kiosk.Receipt
	for attempt := 0; attempt < c.cfg.Attempts; attempt++ {
		if _, err := c.conn.Write(dg); err != nil && !isTransient(err) {
			return kiosk.Receipt{}, fmt.Errorf("client: sending: %w", err)
		}
		timer := time.NewTimer(jitter(backoff))
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return kiosk.Receipt{}, ctx.Err()
			case <-c.done:
				timer.Stop()
				return kiosk.Receipt{}, fmt.Errorf("client: closed: %w", net.ErrClosed)
			case r := <-ch:
				if !r.Answers(h.TxID, digest) {
					continue // a rejection of someone else's copy
				}
				if r.Status == kiosk.StatusRejected && r.Reason == kiosk.ReasonBusy {
					last = &r
					continue // wait out the back-off, then retry
				}
				timer.Stop()
				return r, nil
			case <-timer.C:
				break waiting
			}
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
	if last != nil {
		return *last, nil
	}
	return kiosk.Receipt{}, fmt.Errorf("%w after %d attempts (tx %s)", ErrNoReceipt, c.cfg.Attempts, h.TxID)
}

func isTransient(err error) bool {
	// A connected UDP socket reports an earlier ICMP error on the next
	// write; the datagram is still worth retrying.
	var op *net.OpError
	return errors.As(err, &op) && !errors.Is(err, net.ErrClosed)
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
