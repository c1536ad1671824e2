package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// run executes hallmarkctl in-process.
func runCtl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// fakeNode answers the API calls the commands make, like a node on chain
// "c" would, and records what it was sent.
type fakeNode struct {
	t      *testing.T
	height uint64
	block  string
	mu     sync.Mutex
	posted []*http.Request
	bodies [][]byte
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/status":
		json.NewEncoder(w).Encode(map[string]any{"chainId": "c", "role": "validator", "epoch": 1, "round": 9,
			"committedHeight": f.height, "committedBlockId": f.block, "fastPath": "twin", "custody": "tpm",
			"peers": []map[string]any{{"connected": true}, {"connected": false}}})
	case strings.HasPrefix(r.URL.Path, "/v1/blocks/"):
		json.NewEncoder(w).Encode(map[string]any{"blockIdentity": f.block})
	case r.Method == "POST":
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.posted, f.bodies = append(f.posted, r), append(f.bodies, b)
		f.mu.Unlock()
		var tx ledger.Transaction
		if err := json.Unmarshal(b, &tx); err != nil || tx.VerifySignatures() != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error": {"status": 400, "code": 100, "reason": "malformed", "detail": "%v"}}`, err)
			return
		}
		w.WriteHeader(202)
		json.NewEncoder(w).Encode(map[string]any{"transactionId": tx.ID(), "status": "accepted"})
	case strings.HasPrefix(r.URL.Path, "/v1/transactions/"):
		json.NewEncoder(w).Encode(map[string]any{"status": "committed", "blockHeight": 7, "result": map[string]any{"code": 0, "reason": "ok"}})
	default:
		w.WriteHeader(404)
	}
}

func TestStatusJudgesTheCluster(t *testing.T) {
	a := httptest.NewServer(&fakeNode{t: t, height: 12, block: strings.Repeat("ab", 32)})
	defer a.Close()
	b := httptest.NewServer(&fakeNode{t: t, height: 12, block: strings.Repeat("ab", 32)})
	defer b.Close()
	out, err := runCtl(t, "status", "--api", a.URL+","+b.URL)
	if err != nil || !strings.Contains(out, "cluster: healthy: 2/2") || !strings.Contains(out, "1/2") {
		t.Fatalf("healthy cluster: %v\n%s", err, out)
	}
	forked := httptest.NewServer(&fakeNode{t: t, height: 12, block: strings.Repeat("cd", 32)})
	defer forked.Close()
	out, err = runCtl(t, "status", "--api", a.URL+","+forked.URL)
	if err == nil || !strings.Contains(out, "NOT healthy") {
		t.Fatalf("disagreeing cluster: %v\n%s", err, out)
	}
	b.Close()
	out, err = runCtl(t, "status", "--api", a.URL+","+b.URL)
	if err == nil || !strings.Contains(out, "unreachable") {
		t.Fatalf("unreachable node: %v\n%s", err, out)
	}
}

func writeKey(t *testing.T) (string, *gm.PrivateKey) {
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := k.MarshalPKCS8PEM()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, k
}

func TestSubmitRecordAndFreeze(t *testing.T) {
	f := &fakeNode{t: t, height: 3, block: strings.Repeat("ab", 32)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	keyPath, key := writeKey(t)

	out, err := runCtl(t, "submit", "record", "--api", srv.URL, "--key", keyPath, "--type", "customs.declaration", "--text", "declaration 1")
	if err != nil || !strings.Contains(out, "accepted") || !strings.Contains(out, "committed at height 7: ok") {
		t.Fatalf("submit record: %v\n%s", err, out)
	}
	var tx ledger.Transaction
	if err := json.Unmarshal(f.bodies[0], &tx); err != nil {
		t.Fatal(err)
	}
	body, err := txs.Decode(tx.Body.Type, tx.Body.Entity.Data)
	if err != nil {
		t.Fatal(err)
	}
	rp := body.(*txs.RecordPut)
	if tx.Body.ChainID != "c" || rp.RecordType != "customs.declaration" || *rp.Digest != gm.SM3([]byte("declaration 1")) ||
		rp.Subject != ledger.AddressOf(key.PublicKey()) {
		t.Fatalf("record sent: %+v %+v", tx.Body, rp)
	}
	if f.posted[0].URL.Path != "/v1/transactions" || f.posted[0].Header.Get(client.HeaderSignature) != "" {
		t.Fatal("an ordinary submission went to the wrong endpoint or was signed")
	}

	target := ledger.AddressOf(key.PublicKey())
	out, err = runCtl(t, "submit", "freeze", "--api", srv.URL, "--key", keyPath, "--account", target.String(), "--reason", "order 7", "--wait", "0")
	if err != nil {
		t.Fatalf("submit freeze: %v\n%s", err, out)
	}
	req, reqBody := f.posted[1], f.bodies[1]
	if req.URL.Path != "/v1/admin/transactions" {
		t.Fatalf("freeze went to %s", req.URL.Path)
	}
	// The request signature verifies under the key, over this body.
	ms, _ := strconv.ParseInt(req.Header.Get(client.HeaderTime), 10, 64)
	msg, _ := client.APIRequestSignBytes("c", "POST", "/v1/admin/transactions", gm.SM3(reqBody), ms)
	sigRaw, _ := hex.DecodeString(req.Header.Get(client.HeaderSignature))
	var sig gm.Signature
	copy(sig[:], sigRaw)
	if !key.PublicKey().Verify(msg, sig) {
		t.Fatal("the admin request signature does not verify")
	}

	if out, err := runCtl(t, "submit", "record", "--api", srv.URL, "--type", "x.y", "--text", "t"); err == nil {
		t.Fatalf("submit without a key succeeded:\n%s", out)
	}
}
