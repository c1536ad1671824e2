package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

// Status is the part of a node's status document the tests read.
type Status struct {
	KeyID           gm.KeyID       `json:"peerId"`
	Role            string         `json:"role"`
	FastPath        string         `json:"fastPath"`
	Epoch           uint64         `json:"epoch"`
	Round           uint64         `json:"round"`
	CommittedHeight uint64         `json:"committedHeight"`
	CommittedBlock  ledger.BlockID `json:"committedBlockId"`
	Storage         struct {
		TipHeight uint64         `json:"tipHeight"`
		TipID     ledger.BlockID `json:"tipBlockId"`
	} `json:"storage"`
	Mempool struct {
		Transactions int `json:"transactions"`
	} `json:"mempool"`
	Peers             []PeerStatus `json:"peers"`
	ReceiptDelegation string       `json:"receiptDelegation"`
}

// PeerStatus is one validator peer in a node's status.
type PeerStatus struct {
	KeyID     gm.KeyID `json:"peerId"`
	Connected bool     `json:"connected"`
}

// ConnectedPeers counts the peers the node has a live connection to.
func (s *Status) ConnectedPeers() int {
	n := 0
	for _, p := range s.Peers {
		if p.Connected {
			n++
		}
	}
	return n
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// get fetches path from node i's API and decodes the JSON into out.
func (c *Cluster) get(ctx context.Context, i int, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.Nodes[i].API+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return &HTTPError{Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s%s: %w", c.Nodes[i].API, path, err)
	}
	return nil
}

// HTTP returns the cluster's HTTP client (its connections start in the
// client namespace).
func (c *Cluster) HTTP() *http.Client { return c.http }

// Status fetches node i's status.
func (c *Cluster) Status(ctx context.Context, i int) (*Status, error) {
	var s Status
	if err := c.get(ctx, i, "/v1/status", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Height returns node i's stored tip height.
func (c *Cluster) Height(ctx context.Context, i int) (uint64, error) {
	var h struct {
		Height uint64 `json:"blockHeight"`
	}
	if err := c.get(ctx, i, "/v1/height", &h); err != nil {
		return 0, err
	}
	return h.Height, nil
}

// Block is a committed block as a node serves it: its header, checked
// against the block id the node states, and its transactions' ids.
type Block struct {
	Header ledger.Header
	ID     ledger.BlockID
	TxIDs  []ledger.TxID
}

type blockJSON struct {
	TxList []struct {
		ID ledger.TxID `json:"transactionId"`
	} `json:"transactionList"`
}

// Block fetches node i's block at height h. The header's id is computed
// from its fields and must match the id the node states.
func (c *Cluster) Block(ctx context.Context, i int, h uint64) (*Block, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.Nodes[i].API+"/v1/blocks/"+strconv.FormatUint(h, 10), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, &HTTPError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	var hdr ledger.Header // verifies blockIdentity against the fields
	if err := json.Unmarshal(body, &hdr); err != nil {
		return nil, fmt.Errorf("%s block %d: %w", c.Nodes[i].Name, h, err)
	}
	var bj blockJSON
	if err := json.Unmarshal(body, &bj); err != nil {
		return nil, fmt.Errorf("%s block %d: %w", c.Nodes[i].Name, h, err)
	}
	if hdr.Height != h {
		return nil, fmt.Errorf("%s: asked for block %d, got %d", c.Nodes[i].Name, h, hdr.Height)
	}
	b := &Block{Header: hdr, ID: hdr.ID()}
	for _, t := range bj.TxList {
		b.TxIDs = append(b.TxIDs, t.ID)
	}
	if len(b.TxIDs) != int(hdr.TxCount) {
		return nil, fmt.Errorf("%s block %d: %d transactions listed, header counts %d", c.Nodes[i].Name, h, len(b.TxIDs), hdr.TxCount)
	}
	return b, nil
}

// Heights returns every node's stored tip height (-1 where the API does
// not answer).
func (c *Cluster) Heights(ctx context.Context) []int64 {
	out := make([]int64, len(c.Nodes))
	for i := range c.Nodes {
		h, err := c.Height(ctx, i)
		if err != nil {
			out[i] = -1
			continue
		}
		out[i] = int64(h)
	}
	return out
}

// WaitHeight waits until each of the given nodes (all if none given) has
// stored height h.
func (c *Cluster) WaitHeight(ctx context.Context, h uint64, timeout time.Duration, nodes ...int) error {
	if nodes == nil {
		for i := range c.Nodes {
			nodes = append(nodes, i)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		behind := false
		for _, i := range nodes {
			if got, err := c.Height(ctx, i); err != nil || got < h {
				behind = true
				break
			}
		}
		if !behind {
			return nil
		}
		if ex := c.Exited(); len(ex) > 0 {
			return fmt.Errorf("clustertest: waiting for height %d: nodes exited: %v", h, ex)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: height %d not reached by nodes %v within %v (heights %v)", h, nodes, timeout, c.Heights(ctx))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Chain is a node's view of the committed chain: block id by height.
type Chain map[uint64]ledger.BlockID

// ChainOf reads node i's block ids from height `from` to `to` inclusive.
func (c *Cluster) ChainOf(ctx context.Context, i int, from, to uint64) (Chain, error) {
	out := Chain{}
	for h := from; h <= to; h++ {
		b, err := c.Block(ctx, i, h)
		if err != nil {
			return nil, err
		}
		out[h] = b.ID
	}
	return out, nil
}

// Agreement is the outcome of CheckAgreement.
type Agreement struct {
	// Height is the height every node had stored when the check began;
	// every node's block ids agree at every height up to it.
	Height uint64
	// Txs counts the transactions in those blocks.
	Txs int
}

// CheckAgreement compares every node's block at every height from 0 to
// the lowest tip: all ids must be equal. It also checks that each block
// links to its predecessor. Before it compares, it waits up to settle for
// the nodes to reach the highest tip seen, so that a node that is a
// moment behind does not shorten the comparison.
func (c *Cluster) CheckAgreement(ctx context.Context, settle time.Duration) (Agreement, error) {
	all := make([]int, len(c.Nodes))
	for i := range all {
		all[i] = i
	}
	return c.CheckAgreementOf(ctx, settle, all...)
}

// CheckAgreementOf is CheckAgreement over the given nodes only (a node
// that left the consortium stops following it).
func (c *Cluster) CheckAgreementOf(ctx context.Context, settle time.Duration, nodes ...int) (Agreement, error) {
	if len(nodes) == 0 {
		return Agreement{}, errors.New("clustertest: no node to compare")
	}
	var top uint64
	for _, i := range nodes {
		h, err := c.Height(ctx, i)
		if err != nil {
			return Agreement{}, fmt.Errorf("clustertest: %s does not answer: %w", c.Nodes[i].Name, err)
		}
		top = max(top, h)
	}
	if err := c.WaitHeight(ctx, top, settle, nodes...); err != nil {
		return Agreement{}, err
	}
	var ag Agreement
	ag.Height = top
	prev := make([]ledger.BlockID, len(nodes))
	for h := uint64(0); h <= top; h++ {
		ids := make([]ledger.BlockID, len(nodes))
		for k, i := range nodes {
			b, err := c.Block(ctx, i, h)
			if err != nil {
				return ag, err
			}
			if h > 0 && b.Header.PrevHash != prev[k] {
				return ag, fmt.Errorf("clustertest: %s: block %d does not link to block %d", c.Nodes[i].Name, h, h-1)
			}
			ids[k] = b.ID
			if k == 0 {
				ag.Txs += len(b.TxIDs)
			}
		}
		for k := 1; k < len(ids); k++ {
			if ids[k] != ids[0] {
				return ag, fmt.Errorf("clustertest: height %d: %s has block %s, %s has %s", h, c.Nodes[nodes[k]].Name, ids[k], c.Nodes[nodes[0]].Name, ids[0])
			}
		}
		prev = ids
	}
	return ag, nil
}

// Metric reads one sample of node i's Prometheus metrics: name with the
// given labels (as `key="value"` strings, in any order).
func (c *Cluster) Metric(ctx context.Context, i int, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.Nodes[i].API+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var got []string
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			got = strings.Split(rest[1:end], ",")
			rest = rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") {
			continue // a longer metric name
		}
		match := true
		for _, l := range labels {
			if !slices.Contains(got, l) {
				match = false
				break
			}
		}
		if !match || len(got) != len(labels) {
			continue
		}
		return strconv.ParseFloat(strings.TrimSpace(rest), 64)
	}
	return 0, fmt.Errorf("%w: %s%v on %s", errNoMetric, name, labels, c.Nodes[i].Name)
}

var errNoMetric = errors.New("clustertest: no such metric")

// BlockTxIDs returns the ids of the transactions in node i's block at
// height h, decoding nothing else (the benchmark's commit watcher).
func (c *Cluster) BlockTxIDs(ctx context.Context, i int, h uint64) ([]ledger.TxID, error) {
	var light struct {
		Height uint64        `json:"blockHeight"`
		TxIDs  []ledger.TxID `json:"transactionIds"`
	}
	if err := c.get(ctx, i, "/v1/blocks/"+strconv.FormatUint(h, 10)+"?view=txids", &light); err != nil {
		return nil, err
	}
	if light.Height != h {
		return nil, fmt.Errorf("node %d answered for block %d with block %d", i, h, light.Height)
	}
	return light.TxIDs, nil
}

// Validators is node i's view of the validator set: the current epoch's
// and the committed state's (the next epoch's while a change is pending).
type Validators struct {
	Epoch      uint64              `json:"epoch"`
	Validators []ledger.PeerConfig `json:"validators"`
	Committed  []ledger.PeerConfig `json:"committed"`
	Pending    bool                `json:"pending"`
}

// Has reports whether key id is in the current epoch's set.
func (v *Validators) Has(id gm.KeyID) bool {
	return slices.ContainsFunc(v.Validators, func(p ledger.PeerConfig) bool { return p.PeerID == id })
}

// Validators fetches node i's validator sets.
func (c *Cluster) Validators(ctx context.Context, i int) (*Validators, error) {
	var v Validators
	if err := c.get(ctx, i, "/v1/validators", &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// CommitSigners returns the epoch of the commit certificate node i stores
// with block h and the validators whose signatures it carries (nil when
// the block has none stored).
func (c *Cluster) CommitSigners(ctx context.Context, i int, h uint64) (uint64, []gm.KeyID, error) {
	var b struct {
		Proof *struct {
			Epoch   uint64     `json:"epoch"`
			Signers []gm.KeyID `json:"signers"`
		} `json:"commitProof"`
	}
	if err := c.get(ctx, i, "/v1/blocks/"+strconv.FormatUint(h, 10), &b); err != nil {
		return 0, nil, err
	}
	if b.Proof == nil {
		return 0, nil, nil
	}
	return b.Proof.Epoch, b.Proof.Signers, nil
}
