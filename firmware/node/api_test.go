package node

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
	"hallmark/storage"
)

type apiErr struct {
	Error struct {
		Status int    `json:"status"`
		Code   uint16 `json:"code"`
		Reason string `json:"reason"`
		Detail string `json:"detail"`
	} `json:"error"`
}

// signed returns the headers of a request signed by signer.
func signed(t *testing.T, c *cluster, signer gm.Signer, method, uri string, body []byte, at time.Time) http.Header {
	t.Helper()
	req, _ := http.NewRequest(method, "http://node"+uri, nil)
	if err := client.SignRequest(context.Background(), req, body, signer, c.chain.ID, at); err != nil {
		t.Fatal(err)
	}
	return req.Header
}

// audited reports whether the node's audit log has an entry whose action
// and outcome contain the given texts.
func audited(t *testing.T, tn *testNode, action, outcome string) bool {
	t.Helper()
	found := false
	err := tn.n.Store().AuditRange(context.Background(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour), func(r storage.AuditRecord) error {
		if strings.Contains(r.Entry.Action, action) && strings.Contains(r.Entry.Outcome, outcome) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestAPI(t *testing.T) {
	c := newCluster(t, clusterOptions{n: 1})
	c.startAll()
	tn := c.nodes[0]
	ch := c.chain
	c.waitHeight(1, 20*time.Second)

	// Malformed, oversize, wrong chain, admin type on the public endpoint.
	var e apiErr
	if code := tn.api("POST", "/v1/transactions", []byte(`{"chainId": 7`), nil, &e); code != 400 || e.Error.Code != uint16(reason.Malformed) {
		t.Fatalf("malformed JSON: %d %+v", code, e)
	}
	huge := bytes.Repeat([]byte("a"), 3<<20)
	if code := tn.api("POST", "/v1/transactions", huge, nil, &e); code != 413 || e.Error.Reason != "too-large" {
		t.Fatalf("oversize: %d %+v", code, e)
	}
	if code := tn.api("POST", "/v1/transactions", []byte{0xa2, 0x01}, http.Header{"Content-Type": {"application/cbor"}}, &e); code != 400 {
		t.Fatalf("malformed CBOR: %d %+v", code, e)
	}
	wrong := ch.Record(t, ch.Kiosk, "a.b")
	wrong.Body.ChainID, wrong.Signatures = "another-chain", nil
	if err := wrong.Sign(context.Background(), ch.Kiosk); err != nil {
		t.Fatal(err)
	}
	if code := tn.api("POST", "/v1/transactions", mustJSON(t, wrong), nil, &e); code != 400 || e.Error.Code != uint16(reason.WrongChain) {
		t.Fatalf("wrong chain: %d %+v", code, e)
	}
	alice := ledger.AddressOf(ch.Alice.PublicKey())
	freezeData, _ := txs.Encode(&txs.AccountFreeze{Reason: "court order 7"})
	freeze, err := ch.Tx(ch.Regulator, ledger.TxAccountFreeze, freezeData, &alice, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	freezeJSON := mustJSON(t, freeze)
	if code := tn.api("POST", "/v1/transactions", freezeJSON, nil, &e); code != 403 || e.Error.Reason != "admin-endpoint" {
		t.Fatalf("admin type on the public endpoint: %d %+v", code, e)
	}
	// Nothing refused reached the mempool.
	if tn.n.pool.Len() != 0 {
		t.Fatalf("mempool holds %d after refusals", tn.n.pool.Len())
	}
	// CBOR submission.
	rec := ch.Record(t, ch.Kiosk, "customs.declaration")
	enc, _ := ledger.EncodeTx(rec)
	if code := tn.api("POST", "/v1/transactions", enc, http.Header{"Content-Type": {"application/cbor"}}, nil); code != 202 {
		t.Fatalf("CBOR submission: %d", code)
	}

	// Admin endpoint: unsigned → 401, audited.
	const adminPath = "/v1/admin/transactions"
	if code := tn.api("POST", adminPath, freezeJSON, nil, &e); code != 401 || e.Error.Reason != "unauthenticated" {
		t.Fatalf("unsigned admin request: %d %+v", code, e)
	}
	if !audited(t, tn, "api POST "+adminPath, "unauthenticated") {
		t.Fatal("the unauthenticated request left no audit entry")
	}
	// A forged signature → 401; a stale one → 401.
	h := signed(t, c, ch.Regulator, "POST", adminPath, freezeJSON, time.Now())
	bad := h.Clone()
	bad.Set(client.HeaderSignature, strings.Repeat("11", 64))
	if code := tn.api("POST", adminPath, freezeJSON, bad, &e); code != 401 {
		t.Fatalf("forged signature: %d %+v", code, e)
	}
	stale := signed(t, c, ch.Regulator, "POST", adminPath, freezeJSON, time.Now().Add(-10*time.Minute))
	if code := tn.api("POST", adminPath, freezeJSON, stale, &e); code != 401 || !strings.Contains(e.Error.Detail, "clock") {
		t.Fatalf("stale request: %d %+v", code, e)
	}
	// A signature over another body does not carry over.
	if code := tn.api("POST", adminPath, mustJSON(t, rec), h, &e); code != 401 {
		t.Fatalf("signature for another body: %d %+v", code, e)
	}
	// Signed by an account without the role → 403, audited.
	kioskHdr := signed(t, c, ch.Kiosk, "POST", adminPath, freezeJSON, time.Now())
	if code := tn.api("POST", adminPath, freezeJSON, kioskHdr, &e); code != 403 || e.Error.Reason != "forbidden" {
		t.Fatalf("kiosk as admin: %d %+v", code, e)
	}
	if !audited(t, tn, "api POST "+adminPath, "forbidden") {
		t.Fatal("the forbidden request left no audit entry")
	}
	// The regulator may freeze; the same signed request cannot be replayed.
	if code := tn.api("POST", adminPath, freezeJSON, h, nil); code != 202 {
		t.Fatalf("regulator's freeze: %d", code)
	}
	if code := tn.api("POST", adminPath, freezeJSON, h, &e); code != 401 || !strings.Contains(e.Error.Detail, "already used") {
		t.Fatalf("replayed request: %d %+v", code, e)
	}
	c.waitCommitted(tn, freeze.ID(), 20*time.Second)
	var acct ledger.Account
	if code := tn.api("GET", "/v1/accounts/"+alice.String(), nil, nil, &acct); code != 200 || !acct.Frozen {
		t.Fatalf("alice after the freeze: %d %+v", code, acct)
	}
	late := ch.Record(t, ch.Alice, "kyc.consent")
	if code := tn.api("POST", "/v1/transactions", mustJSON(t, late), nil, &e); code != 422 || e.Error.Code != uint16(reason.SenderFrozen) {
		t.Fatalf("frozen sender: %d %+v", code, e)
	}

	// A record with a plaintext payload; audited reads of its content.
	payload := []byte("bill of lading 2026-0042")
	d := gm.SM3(payload)
	data, _ := txs.Encode(&txs.RecordPut{RecordType: "customs.scan", Subject: ledger.AddressOf(ch.Kiosk.PublicKey()), Kind: txs.PayloadPlain, Size: uint64(len(payload))})
	ptx := &ledger.Transaction{Body: ledger.TxBody{Version: 1, ChainID: ch.ID, Type: ledger.TxRecordPut, Timestamp: time.Now().UnixMilli(), Nonce: 4242,
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(ch.Kiosk.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(ch.Kiosk.PublicKey()), Data: data}, PayloadDigest: &d}, Payload: payload}
	if err := ptx.Sign(context.Background(), ch.Kiosk); err != nil {
		t.Fatal(err)
	}
	if code := tn.api("POST", "/v1/transactions", mustJSON(t, ptx), nil, &e); code != 202 {
		t.Fatalf("payload record: %d %+v", code, e)
	}
	c.waitCommitted(tn, ptx.ID(), 20*time.Second)
	contentPath := "/v1/records/" + ptx.ID().String() + "/content?purpose=inspection"
	if code := tn.api("GET", contentPath, nil, nil, &e); code != 401 {
		t.Fatalf("unsigned read: %d", code)
	}
	// The regulator reads it, and the read is audited.
	got := rawGet(t, tn, contentPath, signed(t, c, ch.Regulator, "GET", contentPath, nil, time.Now()))
	if !bytes.Equal(got, payload) {
		t.Fatalf("regulator read %q", got)
	}
	if !audited(t, tn, "record.read", "ok") {
		t.Fatal("the read left no audit entry")
	}
	// The admin has no basis to read it: 403 with the ledger's code, audited.
	if code := tn.api("GET", contentPath, nil, signed(t, c, ch.Admin, "GET", contentPath, nil, time.Now()), &e); code != 403 || e.Error.Code != uint16(reason.ReadDenied) {
		t.Fatalf("admin read: %d %+v", code, e)
	}
	if !audited(t, tn, "record.read", reason.ReadDenied.String()) {
		t.Fatal("the denied read left no audit entry")
	}
	// The regulator masks it; the payload is gone.
	maskData, _ := txs.Encode(&txs.RecordMask{Record: ptx.ID(), Reason: "unlawful content"})
	mask, _ := ch.Tx(ch.Regulator, ledger.TxRecordMask, maskData, nil, time.Now().UnixMilli())
	maskJSON := mustJSON(t, mask)
	if code := tn.api("POST", adminPath, maskJSON, signed(t, c, ch.Regulator, "POST", adminPath, maskJSON, time.Now()), &e); code != 202 {
		t.Fatalf("mask: %d %+v", code, e)
	}
	c.waitCommitted(tn, mask.ID(), 20*time.Second)
	if _, err := tn.n.Store().Payload(d); err == nil {
		t.Fatal("the masked payload is still stored")
	}
	if code := tn.api("GET", contentPath, nil, signed(t, c, ch.Regulator, "GET", contentPath, nil, time.Now()), &e); code == 200 {
		t.Fatalf("masked content served: %+v", e)
	}

	// Lookups that find nothing, and bad parameters.
	if code := tn.api("GET", "/v1/transactions/"+strings.Repeat("ab", 32), nil, nil, &e); code != 404 {
		t.Fatalf("unknown transaction: %d", code)
	}
	if code := tn.api("GET", "/v1/blocks/xyz", nil, nil, &e); code != 400 {
		t.Fatalf("bad height: %d", code)
	}
	if code := tn.api("GET", "/v1/nothing", nil, nil, &e); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
	// Block by height and by id agree; the metrics endpoint answers.
	var b1, b2 map[string]json.RawMessage
	tn.api("GET", "/v1/blocks/1", nil, nil, &b1)
	var id string
	json.Unmarshal(b1["blockIdentity"], &id)
	if code := tn.api("GET", "/v1/blocks/id/"+id, nil, nil, &b2); code != 200 || string(b2["blockHeight"]) != "1" {
		t.Fatalf("block by id: %d %s", code, b2["blockHeight"])
	}
	metrics := string(rawGet(t, tn, "/metrics", nil))
	for _, m := range []string{"hallmark_blocks_committed_total", "hallmark_commit_latency_seconds_bucket", "hallmark_mempool_transactions",
		"hallmark_xdp_packets_total", "hallmark_signature_verifications_total", `hallmark_api_auth_denied_total{outcome="unauthenticated"}`,
		// A single node leads every round: its blocks are built,
		// proposed, voted for, certified, committed and stored.
		`hallmark_block_stage_seconds_count{stage="proposed"}`, `hallmark_block_stage_seconds_count{stage="voted"}`,
		`hallmark_block_stage_seconds_count{stage="stored"}`, `hallmark_block_stage_seconds_count{stage="total"}`,
		`hallmark_tx_inclusion_seconds_count{origin="api"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

func rawGet(t *testing.T, tn *testNode, path string, h http.Header) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+tn.n.Addrs().API+path, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, buf.String())
	}
	return buf.Bytes()
}
