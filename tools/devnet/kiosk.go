package devnet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/netstack/kiosk"
)

// LoadAccount reads a devnet account's key from Dir/keys.
func LoadAccount(dir, name string) (*gm.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, "keys", name+".pem"))
	if err != nil {
		return nil, err
	}
	return gm.ParsePKCS8PEM(b)
}

// kioskStats counts the demo kiosk's work.
type kioskStats struct {
	sent, accepted, rejected, lost atomic.Uint64
}

// Run starts the devnet, prints where everything is, runs the demo kiosk
// and waits for ctx to end (Ctrl-C) or a node to fail; then it stops
// everything.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	n, err := Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C while starting: Start stopped what it had begun.
			fmt.Fprintln(opts.Out, "devnet: stopped while starting; state kept in", opts.Dir)
			return nil
		}
		return err
	}
	defer func() {
		fmt.Fprintln(opts.Out, "devnet: stopping the nodes and their TPMs…")
		if err := n.Stop(); err != nil {
			fmt.Fprintln(opts.Out, "devnet:", err)
		}
		fmt.Fprintln(opts.Out, "devnet: stopped; state kept in", n.opts.Dir)
	}()
	n.banner()
	kctx, stopKiosk := context.WithCancel(ctx)
	defer stopKiosk()
	var stats kioskStats
	first := make(chan ledger.TxID, 1)
	var wg sync.WaitGroup
	if opts.Rate > 0 {
		wg.Go(func() {
			if err := n.runKiosk(kctx, opts.Rate, &stats, first); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(opts.Out, "devnet: demo kiosk:", err)
			}
		})
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	watch := time.NewTicker(500 * time.Millisecond)
	defer watch.Stop()
	lastSent, lastTime := uint64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			stopKiosk()
			wg.Wait()
			return nil
		case id := <-first:
			n.howToQuery(id)
		case <-watch.C:
			if name, err, done := n.Exited(); done {
				stopKiosk()
				wg.Wait()
				return fmt.Errorf("devnet: %s exited (%v); see %s", name, err, filepath.Join(n.opts.Dir, name, "hallmarkd.log"))
			}
		case now := <-tick.C:
			var h any = "?"
			if st, err := Status(ctx, "http://"+n.State.Nodes[0].API); err == nil {
				h = st["committedHeight"]
			}
			sent := stats.sent.Load()
			fmt.Fprintf(opts.Out, "devnet: height %v; kiosk sent %d (%.1f/s), accepted %d, rejected %d, unanswered %d\n",
				h, sent, float64(sent-lastSent)/now.Sub(lastTime).Seconds(), stats.accepted.Load(), stats.rejected.Load(), stats.lost.Load())
			lastSent, lastTime = sent, now
		}
	}
}

// runKiosk submits record.put transactions at rate per second, round-robin
// over the nodes' kiosk ports, checking receipts against each node's
// delegated receipt key.
func (n *Net) runKiosk(ctx context.Context, rate float64, st *kioskStats, first chan<- ledger.TxID) error {
	key, err := LoadAccount(n.opts.Dir, "kiosk")
	if err != nil {
		return err
	}
	var clients []*client.Client
	for _, ns := range n.State.Nodes {
		c, err := dialKiosk(ctx, ns, n.State.ChainID)
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, c)
	}
	self := ledger.AddressOf(key.PublicKey())
	// Pace by the clock rather than one send per tick, so that a busy
	// machine delays sends instead of dropping them.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sem := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds() * rate)
		for ; i < due; i++ {
			doc := gm.SM3(fmt.Appendf(nil, "devnet demo record %d at %s", i, time.Now().Format(time.RFC3339Nano)))
			data, err := txs.Encode(&txs.RecordPut{RecordType: "demo.declaration", Subject: self, Digest: &doc})
			if err != nil {
				return err
			}
			tx, err := client.NewTransaction(ctx, key, client.TxParams{ChainID: n.State.ChainID, Type: ledger.TxRecordPut, Data: data,
				Memo: fmt.Sprintf("devnet demo record %d", i)})
			if err != nil {
				return err
			}
			c := clients[i%len(clients)]
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			st.sent.Add(1)
			wg.Go(func() {
				defer func() { <-sem }()
				r, err := c.Submit(ctx, tx)
				switch {
				case err != nil:
					st.lost.Add(1)
				case r.Status == kiosk.StatusRejected:
					st.rejected.Add(1)
				default:
					st.accepted.Add(1)
				}
			})
			if i == 0 {
				select {
				case first <- tx.ID():
				default:
				}
			}
		}
	}
}

// dialKiosk connects to a node's kiosk port, with the receipt key its
// identity delegated (checked against the node's validator key).
func dialKiosk(ctx context.Context, ns NodeState, chainID string) (*client.Client, error) {
	st, err := Status(ctx, "http://"+ns.API)
	if err != nil {
		return nil, err
	}
	d, _ := st["receiptDelegation"].(string)
	raw, err := hex.DecodeString(d)
	if err != nil {
		return nil, fmt.Errorf("devnet: %s: receipt delegation: %w", ns.Name, err)
	}
	node, err := nodeKey(ctx, ns)
	if err != nil {
		return nil, err
	}
	rk, err := client.ReceiptKey(raw, node, chainID, time.Now())
	if err != nil {
		return nil, fmt.Errorf("devnet: %s: %w", ns.Name, err)
	}
	return client.Dial(client.Config{NodeAddr: ns.Kiosk, NodeKey: rk})
}

// nodeKey returns the node's identity key: the one its current epoch's
// validator set lists at its peer address, since a security officer may
// have rotated the key the devnet generated (docs/OPERATIONS.md §9), or
// that key if the node does not say.
func nodeKey(ctx context.Context, ns NodeState) (*gm.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var vs struct {
		Validators []ledger.PeerConfig `json:"validators"`
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+ns.API+"/v1/validators", nil)
	if err != nil {
		return nil, err
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		err = json.NewDecoder(resp.Body).Decode(&vs)
		resp.Body.Close()
		if err == nil {
			for _, p := range vs.Validators {
				if p.Address == ns.Peer {
					return p.PublicKey.Parse()
				}
			}
		}
	}
	return ns.Key()
}

func (n *Net) banner() {
	out := n.opts.Out
	fmt.Fprintf(out, "\nHallmark devnet: chain %s, %d validators on loopback, each key in its own swtpm\n\n", n.State.ChainID, len(n.State.Nodes))
	fmt.Fprintf(out, "  %-6s %-23s %-31s %-16s %s\n", "node", "HTTP API", "metrics", "kiosk (UDP)", "peer (QUIC)")
	for _, ns := range n.State.Nodes {
		fmt.Fprintf(out, "  %-6s %-23s %-31s %-16s %s\n", ns.Name, "http://"+ns.API, "http://"+ns.Metrics+"/metrics", ns.Kiosk, ns.Peer)
	}
	fmt.Fprintf(out, "\n  logs: %s/nodeN/hallmarkd.log    account keys: %s/keys/*.pem\n", n.opts.Dir, n.opts.Dir)
	fmt.Fprintf(out, "  cluster health: bin/hallmarkctl status --devnet %s\n", n.opts.Dir)
	if n.opts.Rate > 0 {
		fmt.Fprintf(out, "  a demo kiosk submits %.0f signed records per second over the datagram path\n", n.opts.Rate)
	}
	fmt.Fprintf(out, "  Ctrl-C stops everything.\n\n")
}

func (n *Net) howToQuery(id ledger.TxID) {
	api := "http://" + n.State.Nodes[0].API
	fmt.Fprintf(n.opts.Out, "devnet: the kiosk's first record is %s; query it with\n", id)
	fmt.Fprintf(n.opts.Out, "  curl -s %s/v1/records/%s\n", api, id)
	fmt.Fprintf(n.opts.Out, "  curl -s %s/v1/transactions/%s\n", api, id)
	fmt.Fprintf(n.opts.Out, "  bin/hallmarkctl query record %s --api %s\n\n", id, api)
}

// metricValue reads one sample of a metric from a Prometheus text page.
func metricValue(url, series string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", series, url)
}
