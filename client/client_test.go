package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/ledgertest"
	"hallmark/netstack/kiosk"
)

// fakeNode answers every datagram with a receipt signed by signer.
func fakeNode(t *testing.T, signer gm.Signer, status kiosk.Status, reason kiosk.Reason) (addr string, sent chan []byte) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	sent = make(chan []byte, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			dg := append([]byte(nil), buf[:n]...)
			sent <- dg
			h, err := kiosk.ParseHeader(dg)
			if err != nil {
				continue
			}
			r, err := kiosk.SignReceipt(context.Background(), signer, kiosk.Receipt{TxID: h.TxID, DatagramDigest: gm.SM3(dg), Status: status, Reason: reason})
			if err != nil {
				continue
			}
			conn.WriteToUDP(r, from)
		}
	}()
	return conn.LocalAddr().String(), sent
}

func newTx(t *testing.T) *ledger.Transaction {
	key := ledgertest.Key(t)
	tx, err := NewTransaction(context.Background(), key, TxParams{ChainID: "c", Type: ledger.TxRecordPut, Data: []byte("d")})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Body.Nonce == 0 || tx.Body.Timestamp == 0 || tx.Body.Entity.Sender != ledger.AddressOf(key.PublicKey()) {
		t.Fatalf("defaults not filled: %+v", tx.Body)
	}
	if err := tx.VerifySignatures(); err != nil {
		t.Fatal(err)
	}
	return tx
}

func TestSubmitVerifiesReceipt(t *testing.T) {
	node := ledgertest.Key(t)
	addr, sent := fakeNode(t, node, kiosk.StatusAccepted, kiosk.ReasonNone)
	c, err := Dial(Config{NodeAddr: addr, NodeKey: node.PublicKey(), Attempts: 3, InitialBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tx := newTx(t)
	r, err := c.Submit(context.Background(), tx)
	if err != nil || r.Status != kiosk.StatusAccepted || r.TxID != tx.ID() {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	if got := len(sent); got != 1 {
		t.Fatalf("%d datagrams sent, want 1", got)
	}
}

func TestSubmitIgnoresForeignReceiptsAndRetries(t *testing.T) {
	node, impostor := ledgertest.Key(t), ledgertest.Key(t)
	addr, sent := fakeNode(t, impostor, kiosk.StatusAccepted, kiosk.ReasonNone)
	c, err := Dial(Config{NodeAddr: addr, NodeKey: node.PublicKey(), Attempts: 3, InitialBackoff: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Submit(context.Background(), newTx(t))
	if !errors.Is(err, ErrNoReceipt) {
		t.Fatalf("got %v, want ErrNoReceipt", err)
	}
	if got := len(sent); got != 3 {
		t.Fatalf("%d attempts, want 3", got)
	}
	// 30 + 60 + 120 ms of back-off, each within ±20%.
	if el := time.Since(start); el < 160*time.Millisecond {
		t.Fatalf("retries did not back off: %v", el)
	}
}

func TestSubmitRetriesWhileBusy(t *testing.T) {
	node := ledgertest.Key(t)
	addr, sent := fakeNode(t, node, kiosk.StatusRejected, kiosk.ReasonBusy)
	c, err := Dial(Config{NodeAddr: addr, NodeKey: node.PublicKey(), Attempts: 3, InitialBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Submit(context.Background(), newTx(t))
	if err != nil || r.Reason != kiosk.ReasonBusy {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	if got := len(sent); got != 3 {
		t.Fatalf("%d attempts, want 3", got)
	}
}

func TestSubmitHonoursContext(t *testing.T) {
	node := ledgertest.Key(t)
	c, err := Dial(Config{NodeAddr: "127.0.0.1:9", NodeKey: node.PublicKey(), InitialBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Submit(ctx, newTx(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

// A node that signs receipts with a delegated software key: the kiosk
// derives that key from the delegation and the node identity it knows,
// and accepts its receipts.
func TestSubmitWithDelegatedReceiptKey(t *testing.T) {
	identity := ledgertest.Key(t)
	receiptKey := ledgertest.Key(t)
	now := time.Now()
	d, err := kiosk.SignDelegation(context.Background(), identity, "c", receiptKey.PublicKey(), now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := d.Encode()
	if _, err := ReceiptKey(enc, receiptKey.PublicKey(), "c", now); err == nil {
		t.Fatal("a delegation checked against the wrong identity was accepted")
	}
	key, err := ReceiptKey(enc, identity.PublicKey(), "c", now)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := fakeNode(t, receiptKey, kiosk.StatusAccepted, kiosk.ReasonNone)
	c, err := Dial(Config{NodeAddr: addr, NodeKey: key, Attempts: 3, InitialBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Submit(context.Background(), newTx(t)); err != nil || r.Status != kiosk.StatusAccepted {
		t.Fatalf("receipt %+v, %v", r, err)
	}
}
