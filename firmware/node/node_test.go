package node

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/netstack/kiosk"
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
