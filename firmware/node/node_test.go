package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/netstack/kiosk"
	"hallmark/storage"
)

// kioskClient dials node tn's kiosk port and checks receipts against the
// receipt key its identity delegated, as a kiosk does.
func kioskClient(t *testing.T, c *cluster, tn *testNode) *client.Client {
	t.Helper()
	var st struct {
		ReceiptDelegation string `json:"receiptDelegation"`
		PublicKey         string `json:"peerPublicKey"`
	}
	if code := tn.api("GET", "/v1/status", nil, nil, &st); code != 200 {
		t.Fatalf("status: %d", code)
	}
	raw, err := hex.DecodeString(st.ReceiptDelegation)
	if err != nil {
		t.Fatal(err)
	}
	key, err := client.ReceiptKey(raw, tn.signer.PublicKey(), c.chain.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kc, err := client.Dial(client.Config{NodeAddr: tn.n.Addrs().Kiosk, NodeKey: key, InitialBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	return kc
}

func submitJSON(t *testing.T, tn *testNode, tx *ledger.Transaction) int {
	t.Helper()
	body, err := json.Marshal(tx)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Status string `json:"status"`
	}
	return tn.api("POST", "/v1/transactions", body, http.Header{"Content-Type": {"application/json"}}, &resp)
}

func TestSingleNode(t *testing.T) {
	c := newCluster(t, clusterOptions{n: 1})
	c.startAll()
	tn := c.nodes[0]
	c.waitHeight(2, 20*time.Second)

	// Over HTTP.
	viaHTTP := c.chain.Record(t, c.chain.Kiosk, "customs.declaration")
	if code := submitJSON(t, tn, viaHTTP); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}
	// Over the kiosk datagram path, receipts checked against the delegated key.
	kc := kioskClient(t, c, tn)
	viaUDP := c.chain.Record(t, c.chain.Kiosk, "customs.declaration")
	r, err := kc.Submit(t.Context(), viaUDP)
	if err != nil || r.Status != kiosk.StatusAccepted {
		t.Fatalf("kiosk submit: %+v %v", r, err)
	}
	for _, tx := range []*ledger.Transaction{viaHTTP, viaUDP} {
		st := c.waitCommitted(tn, tx.ID(), 20*time.Second)
		if st.Result == nil || st.Result.Code != 0 {
			t.Fatalf("result %+v", st.Result)
		}
		var rec struct {
			ID     gm.Digest `json:"id"`
			Height uint64    `json:"height"`
		}
		if code := tn.api("GET", "/v1/records/"+tx.ID().String(), nil, nil, &rec); code != 200 || rec.ID != tx.ID() || rec.Height != st.Height {
			t.Fatalf("record: %d %+v", code, rec)
		}
	}
	// A resend gets the receipt the node remembers; over HTTP a second
	// submission is a duplicate.
	if r2, err := kc.Submit(t.Context(), viaUDP); err != nil || r2 != r {
		t.Fatalf("kiosk resend: %+v %v, first receipt %+v", r2, err, r)
	}
	var dup struct{ Status string }
	if code := tn.api("POST", "/v1/transactions", mustJSON(t, viaHTTP), nil, &dup); code != 200 || dup.Status != "duplicate" {
		t.Fatalf("HTTP resubmit: %d %+v", code, dup)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Four nodes on loopback QUIC: transactions submitted to different nodes
// by both paths commit everywhere, and every node stores the same chain.
// A node that stops misses blocks, restarts from its store, catches up
// and agrees.
func TestFourNodes(t *testing.T) {
	// Node 2 keeps only the last two bodies: older ones it rebuilds from
	// its peers' shards, over QUIC, when asked.
	c := newCluster(t, clusterOptions{n: 4, window: func(i int) int {
		if i == 2 {
			return 2
		}
		return 1000
	}})
	c.startAll()
	c.waitHeight(3, 30*time.Second)

	var ids []ledger.TxID
	kc := kioskClient(t, c, c.nodes[1])
	for i := range 6 {
		tx := c.chain.Record(t, c.chain.Kiosk, "customs.declaration")
		ids = append(ids, tx.ID())
		if i%2 == 0 {
			if code := submitJSON(t, c.nodes[i%4], tx); code != http.StatusAccepted {
				t.Fatalf("submit to node %d: %d", i%4, code)
			}
		} else if r, err := kc.Submit(t.Context(), tx); err != nil || r.Status != kiosk.StatusAccepted {
			t.Fatalf("kiosk submit: %+v %v", r, err)
		}
	}
	for _, id := range ids {
		for _, tn := range c.nodes {
			if st := c.waitCommitted(tn, id, 30*time.Second); st.Result == nil || st.Result.Code != 0 {
				t.Fatalf("node %d: result %+v", tn.idx, st.Result)
			}
		}
	}
	c.checkAgreement()

	// A block whose body node 2 pruned comes back whole, rebuilt from shards.
	first, err := c.nodes[0].n.Store().TxLocation(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	c.waitHeight(first.Height+4, 30*time.Second)
	var want, got struct {
		Txs []ledger.Transaction `json:"transactionList"`
	}
	if _, err := c.nodes[2].n.Store().Body(t.Context(), first.Height, nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("node 2 still holds the body locally (%v): the test would prove nothing", err)
	}
	path := "/v1/blocks/" + strconv.FormatUint(first.Height, 10)
	if code := c.nodes[0].api("GET", path, nil, nil, &want); code != 200 {
		t.Fatalf("node 0 block: %d", code)
	}
	if code := c.nodes[2].api("GET", path, nil, nil, &got); code != 200 || len(got.Txs) == 0 || got.Txs[first.Index].ID() != ids[0] {
		t.Fatalf("node 2 rebuilt block: %d, %d transactions", code, len(got.Txs))
	}
	if len(got.Txs) != len(want.Txs) {
		t.Fatalf("rebuilt block has %d transactions, want %d", len(got.Txs), len(want.Txs))
	}
	// The block's transaction ids alone, from the node holding the body and
	// from the one rebuilding it: the same ids in the same order.
	for _, tn := range []*testNode{c.nodes[0], c.nodes[2]} {
		var light struct {
			Height uint64        `json:"blockHeight"`
			TxIDs  []ledger.TxID `json:"transactionIds"`
		}
		if code := tn.api("GET", path+"?view=txids", nil, nil, &light); code != 200 || light.Height != first.Height || len(light.TxIDs) != len(want.Txs) {
			t.Fatalf("node %d txids: %d, height %d, %d ids, want %d", tn.idx, code, light.Height, len(light.TxIDs), len(want.Txs))
		}
		for i := range want.Txs {
			if light.TxIDs[i] != want.Txs[i].ID() {
				t.Fatalf("node %d txids[%d] = %s, the block says %s", tn.idx, i, light.TxIDs[i], want.Txs[i].ID())
			}
		}
	}
	var e map[string]any
	if code := c.nodes[0].api("GET", "/v1/blocks/999999?view=txids", nil, nil, &e); code != 404 {
		t.Fatalf("txids of a block not yet made: %d", code)
	}
	if code := c.nodes[0].api("GET", path+"?view=headers", nil, nil, &e); code != 400 {
		t.Fatalf("an unknown view of a block: %d", code)
	}

	// Restart: node 3 stops; the others go on; it comes back and catches up.
	victim := c.nodes[3]
	victim.stop()
	stoppedAt := victim.height()
	live := c.nodes[:3]
	c.waitHeight(stoppedAt+8, 30*time.Second, live...)
	more := c.chain.Record(t, c.chain.Alice, "kyc.consent")
	if code := submitJSON(t, c.nodes[0], more); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}
	c.waitCommitted(c.nodes[0], more.ID(), 30*time.Second)
	victim.start(true)
	target := c.nodes[0].height() + 2
	c.waitHeight(target, 60*time.Second)
	c.waitCommitted(victim, more.ID(), 30*time.Second)
	if h := c.checkAgreement(); h < target {
		t.Fatalf("agreed up to %d, want %d", h, target)
	}
}

// A parameter change by governance ends the epoch at the next multiple of
// the epoch length; the node runs on in the new epoch with the new
// parameters, and after a restart it resumes in that epoch from its store.
func TestEpochChangeAndRestart(t *testing.T) {
	params := ledger.DefaultParams()
	params.BaseTimeoutMs, params.MaxTimeoutMs, params.EpochLength = 500, 4000, 4
	c := newCluster(t, clusterOptions{n: 1, params: &params})
	c.startAll()
	tn := c.nodes[0]
	c.waitHeight(1, 20*time.Second)
	changed := params
	changed.MaxBlockTxs = 1234
	data, err := txs.Encode(&txs.ParamsChange{Params: changed})
	if err != nil {
		t.Fatal(err)
	}
	gov, err := c.chain.Tx(c.chain.Admin, ledger.TxParamsChange, data, nil, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	body := mustJSON(t, gov)
	if code := tn.api("POST", "/v1/admin/transactions", body, signed(t, c, c.chain.Admin, "POST", "/v1/admin/transactions", body, time.Now()), nil); code != 202 {
		t.Fatalf("gov.params: %d", code)
	}
	st := c.waitCommitted(tn, gov.ID(), 20*time.Second)
	if st.Result == nil || st.Result.Code != 0 {
		t.Fatalf("gov.params result %+v", st.Result)
	}
	c.waitFor("epoch 2", 20*time.Second, func() bool { return tn.n.driver.Status().Epoch == 2 })
	if got := tn.n.currentEpoch().Params.MaxBlockTxs; got != 1234 {
		t.Fatalf("epoch 2 runs with MaxBlockTxs %d", got)
	}
	h := tn.height()
	tn.stop()
	tn.start(true)
	if ep := tn.n.currentEpoch(); ep.Epoch() != 2 {
		t.Fatalf("restarted in epoch %d", ep.Epoch())
	}
	c.waitHeight(h+3, 20*time.Second)
	if e := tn.n.driver.Status().Epoch; e != 2 {
		t.Fatalf("consensus runs in epoch %d after the restart", e)
	}
	tx := c.chain.Record(t, c.chain.Kiosk, "customs.declaration")
	if code := submitJSON(t, tn, tx); code != http.StatusAccepted {
		t.Fatalf("submit after restart: %d", code)
	}
	c.waitCommitted(tn, tx.ID(), 20*time.Second)
}
