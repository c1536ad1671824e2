package node

import (
	"context"
	"encoding/binary"
	"time"

	"hallmark/firmware/mempool"
	"hallmark/ledger"
)

// gossiper spreads transactions this node accepted from kiosks and the
// API to every peer, in batches, so that whichever node leads a round can
// propose them; and admits the batches peers send.
type gossiper struct {
	n         *Node
	broadcast func(batch []byte) // to every peer
	out       chan []byte        // encoded transactions to send
	in        chan []byte        // batches received
	every     time.Duration
	maxBuf    int
}

func newGossiper(n *Node) *gossiper {
	return &gossiper{
		n: n, broadcast: func(batch []byte) { n.transport.broadcast(batch) },
		out: make(chan []byte, 16384), in: make(chan []byte, 256), every: 5 * time.Millisecond, maxBuf: 1 << 20,
	}
}

// accepted queues a transaction for the next batch.
func (g *gossiper) accepted(enc []byte) {
	select {
	case g.out <- enc:
	default:
		g.n.metrics.GossipDropped.Inc()
	}
}

// received queues a peer's batch for admission.
func (g *gossiper) received(batch []byte) {
	select {
	case g.in <- batch:
	default:
		g.n.metrics.GossipDropped.Inc()
	}
}

// runSend batches and broadcasts until ctx ends. A batch is
// tagTxs ‖ (uvarint length ‖ transaction)*. A transaction that finds no
// batch sent in the last g.every goes at once (with whatever queued beside
// it); otherwise it waits for the next tick. So a trickle is not delayed
// by the batching, and a stream is sent at most once per g.every (plus
// full batches), as before.
func (g *gossiper) runSend(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	buf := []byte{tagTxs}
	var last time.Time
	flush := func(now time.Time) {
		if len(buf) > 1 {
			g.broadcast(buf)
			buf = []byte{tagTxs}
			last = now
		}
	}
	add := func(enc []byte) {
		buf = binary.AppendUvarint(buf, uint64(len(enc)))
		buf = append(buf, enc...)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case enc := <-g.out:
			add(enc)
			now := time.Now()
			if len(buf) >= g.maxBuf {
				flush(now)
			} else if now.Sub(last) >= g.every {
				// Take what else is queued, then send.
				for more := true; more && len(buf) < g.maxBuf; {
					select {
					case enc := <-g.out:
						add(enc)
					default:
						more = false
					}
				}
				flush(now)
			}
		case now := <-t.C:
			flush(now)
		}
	}
}

// runReceive admits peers' batches until ctx ends.
func (g *gossiper) runReceive(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-g.in:
			txs, encs := decodeBatch(batch)
			if len(txs) == 0 {
				continue
			}
			for _, err := range g.n.pool.AddEncoded(txs, encs, mempool.FromPeer) {
				g.n.countRejection(err)
			}
		}
	}
}

// decodeBatch decodes a gossiped batch, dropping what does not decode. It
// returns each transaction with its encoding (a slice of b).
func decodeBatch(b []byte) ([]*ledger.Transaction, [][]byte) {
	var out []*ledger.Transaction
	var encs [][]byte
	var dec ledger.TxDecoder
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > ledger.MaxTxBytes+ledger.MaxPayloadBytes+64 {
			return out, encs
		}
		enc := b[k : k+int(n)]
		tx, err := dec.Decode(enc)
		b = b[k+int(n):]
		if err != nil {
			continue
		}
		out = append(out, tx)
		encs = append(encs, enc)
	}
	return out, encs
}
