package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hallmark/consensus"
	"hallmark/consensus/driver"
	"hallmark/firmware/api"
	"hallmark/firmware/internal/testchain"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// submitAdmin signs the request as signer and submits tx to the admin
// endpoint; it returns the status code.
func submitAdmin(t *testing.T, c *cluster, tn *testNode, signer gm.Signer, tx *ledger.Transaction) int {
	t.Helper()
	body := mustJSON(t, tx)
	return tn.api("POST", "/v1/admin/transactions", body, signed(t, c, signer, "POST", "/v1/admin/transactions", body, time.Now()), nil)
}

// govOK submits a governance transaction by the chain's administrator
// and waits until it commits successfully.
func govOK(t *testing.T, c *cluster, tn *testNode, typ ledger.TxType, body txs.Body) {
	t.Helper()
	data, err := txs.Encode(body)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.chain.Tx(c.chain.Admin, typ, data, nil, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if code := submitAdmin(t, c, tn, c.chain.Admin, tx); code != http.StatusAccepted {
		t.Fatalf("%s: %d", typ, code)
	}
	st := c.waitCommitted(tn, tx.ID(), 30*time.Second)
	if st.Result == nil || st.Result.Code != 0 {
		t.Fatalf("%s result %+v", typ, st.Result)
	}
}

// certificate returns the commit certificate stored with block h on tn
// and the validators that signed it, if the block has one.
func certificate(t *testing.T, tn *testNode, h uint64) (*consensus.QC, []ledger.PeerConfig) {
	t.Helper()
	rec, err := readRecord(tn.n.Store(), h)
	if err != nil || rec == nil {
		return nil, nil
	}
	p, err := rec.CommitProof()
	if err != nil || p == nil {
		return nil, nil
	}
	ep, _, err := tn.n.epochs.config(p.QC.Data.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	var signers []ledger.PeerConfig
	for i, v := range ep.Validators.Validators {
		if i/8 < len(p.QC.Signers) && p.QC.Signers[i/8]&(1<<(i%8)) != 0 {
			signers = append(signers, v)
		}
	}
	return &p.QC, signers
}

// signatureOf returns key's signature in the certificate, if it signed.
func signatureOf(qc *consensus.QC, signers []ledger.PeerConfig, id gm.KeyID) (gm.Signature, bool) {
	for i, v := range signers {
		if v.PeerID == id {
			return qc.Signatures[i], true
		}
	}
	return gm.Signature{}, false
}

func droppedBadSignatures(nodes ...*testNode) uint64 {
	var sum uint64
	for _, tn := range nodes {
		m := tn.n.driver.Metrics()
		m.Each(func(name string, v uint64) {
			if name == "dropped_bad_signature" {
				sum += v
			}
		})
	}
	return sum
}

// TestMembershipAndKeyRotation runs the node runtime through a validator
// set's life without restarting any node: a fifth node starts from the
// genesis, is not admitted until its gov.node-add commits, then follows the
// chain, syncs and votes and proposes from the epoch boundary; a validator
// rotates its key under load (created through the node's API, both keys
// held across the boundary, the new key signing certificates afterwards,
// votes signed with the old key refused, the old key destroyed); a
// validator is removed and leaves the admitted peers while the others go
// on committing.
func TestMembershipAndKeyRotation(t *testing.T) {
	ctx := context.Background()
	params := ledger.DefaultParams()
	params.BaseTimeoutMs, params.MaxTimeoutMs, params.EpochLength = 500, 4000, 5
	dir := t.TempDir()
	pass := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("node one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Node 1 keeps its key in custody (a dev key file), so that it creates
	// its next key there and destroys the old one.
	oldRef := "dev:" + filepath.Join(dir, "node1.dev")
	dev, err := hsm.Generate(ctx, oldRef, hsm.Options{Passphrase: []byte("node one")})
	if err != nil {
		t.Fatal(err)
	}
	oldKey := dev.PublicKey()
	dev.Close()
	signers := testchain.SoftwareValidators(t, 4)
	signers[1] = publicOnly{oldKey}
	c := newCluster(t, clusterOptions{signers: signers, params: &params,
		nodeKey: func(i int) string {
			if i == 1 {
				return oldRef
			}
			return "tpm:handle=0x81000010"
		},
		extra: fmt.Sprintf(`"keyPassphraseFile": %q`, pass)})
	for i, tn := range c.nodes {
		tn.start(i != 1)
	}
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.waitHeight(2, 20*time.Second, c.nodes[:4]...)

	// A steady trickle of records to node 0 throughout.
	var loadWG sync.WaitGroup
	loadCtx, stopLoad := context.WithCancel(ctx)
	var mu sync.Mutex
	var accepted []ledger.TxID
	var sent atomic.Int64
	loadWG.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			tx, err := c.chain.RecordAt(c.chain.Kiosk, "customs.declaration", time.Now().UnixMilli())
			if err != nil {
				continue
			}
			sent.Add(1)
			if code := submitJSON(t, n0, tx); code == http.StatusAccepted {
				mu.Lock()
				accepted = append(accepted, tx.ID())
				mu.Unlock()
			}
		}
	})
	defer func() {
		stopLoad()
		loadWG.Wait()
	}()

	// 1. A fifth node starts from the genesis: nobody admits it yet.
	k5, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr5 := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	n5 := c.addNode(k5, addr5, "tpm:handle=0x81000010", 1000, "")
	n5.start(true)
	time.Sleep(time.Second)
	if h := n5.height(); h != 0 {
		t.Fatalf("the fifth node synced to %d before governance admitted it", h)
	}
	if st := n5.n.driver.Status(); st.Validator {
		t.Fatal("the fifth node is a validator before governance admitted it")
	}
	govOK(t, c, n0, ledger.TxNodeAdd, &txs.NodeAdd{Peer: testchain.Peer(k5.PublicKey(), addr5)})
	c.waitFor("the fifth node to follow the chain", 30*time.Second, func() bool { return n5.height() > 0 })
	c.waitFor("the fifth node to become a validator", 30*time.Second, func() bool { return n5.n.driver.Status().Validator })
	id5 := k5.PublicKey().ID()
	voted, proposed := false, false
	var from uint64 = 1
	c.waitFor("the fifth node's votes in certificates and its proposals", 30*time.Second, func() bool {
		top := n0.height()
		for h := from; h <= top; h++ {
			hdr, err := n0.n.Store().Header(h)
			if err != nil {
				t.Fatal(err)
			}
			proposed = proposed || hdr.Header.Proposer == id5
			if qc, signers := certificate(t, n0, h); qc != nil {
				if sig, ok := signatureOf(qc, signers, id5); ok {
					if !k5.PublicKey().Verify(consensus.VoteSignBytes(c.chain.ID, qc.Data), sig) {
						t.Fatalf("height %d: the fifth node's signature in the certificate does not verify", h)
					}
					voted = true
				}
			}
		}
		from = top + 1
		return voted && proposed
	})
	t.Logf("the fifth node votes and proposes from epoch %d", n5.n.driver.Status().Epoch)

	// 2. Rotate node 1's key through its API.
	nextRef := "dev:" + filepath.Join(dir, "node1-next.dev")
	body := []byte(fmt.Sprintf(`{"ref": %q, "reason": "annual rotation"}`, nextRef))
	if code := n1.api("POST", "/v1/admin/node/keys", body, signed(t, c, c.chain.Regulator, "POST", "/v1/admin/node/keys", body, time.Now()), nil); code != http.StatusForbidden {
		t.Fatalf("a regulator asked for a rotation: %d, want 403", code)
	}
	var rot api.NodeKeyRotation
	var rotRaw struct {
		Statement string `json:"statement"`
	}
	if code := n1.api("POST", "/v1/admin/node/keys", body, signed(t, c, c.chain.Officer, "POST", "/v1/admin/node/keys", body, time.Now()), &rotRaw); code != http.StatusCreated {
		t.Fatalf("rotation: %d", code)
	}
	keys := listKeys(t, c, n1)
	if len(keys) != 2 {
		t.Fatalf("the node holds %d keys after preparing the rotation", len(keys))
	}
	rot.Statement = mustHex(t, rotRaw.Statement)
	again := []byte(fmt.Sprintf(`{"ref": %q}`, "dev:"+filepath.Join(dir, "third.dev")))
	if code := n1.api("POST", "/v1/admin/node/keys", again, signed(t, c, c.chain.Officer, "POST", "/v1/admin/node/keys", again, time.Now()), nil); code != http.StatusConflict {
		t.Fatalf("a second rotation while one is under way: %d, want 409", code)
	}
	stmt, err := txs.Decode(ledger.TxNodeRotateKey, rot.Statement)
	if err != nil {
		t.Fatalf("the node's statement is not what the chain accepts: %v", err)
	}
	newKey, err := stmt.(*txs.NodeRotateKey).Statement.New.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if stmt.(*txs.NodeRotateKey).Statement.Old.ID() != oldKey.ID() {
		t.Fatal("the statement rotates another key")
	}
	govOK(t, c, n0, ledger.TxNodeRotateKey, stmt)
	// Until the boundary the old key cannot be destroyed.
	if code := destroyKey(t, c, n1, oldKey.ID()); code != http.StatusConflict {
		t.Fatalf("destroying the old key before the boundary: %d, want 409", code)
	}
	c.waitFor("the new key in the current epoch", 30*time.Second, func() bool {
		ep := n0.n.currentEpoch()
		return ep.Validators.IndexOf(newKey.ID()) >= 0 && ep.Validators.IndexOf(oldKey.ID()) < 0
	})
	if n1.n.KeyID() != newKey.ID() {
		t.Fatalf("node 1 presents %s, not its new key", n1.n.KeyID())
	}
	from = n0.height()
	c.waitFor("a certificate signed with the new key", 30*time.Second, func() bool {
		top := n0.height()
		for h := from; h <= top; h++ {
			qc, signers := certificate(t, n0, h)
			cur := n0.n.currentEpoch()
			if qc == nil || cur.Epoch() != qc.Data.Epoch {
				continue
			}
			if sig, ok := signatureOf(qc, signers, newKey.ID()); ok {
				msg := consensus.VoteSignBytes(c.chain.ID, qc.Data)
				if !newKey.Verify(msg, sig) || oldKey.Verify(msg, sig) {
					t.Fatalf("height %d: node 1's signature is not its new key's", h)
				}
				return true
			}
		}
		from = top + 1
		return false
	})
	// Votes signed with the old key are refused from now on: forge some
	// (the test holds the old key file) for the coming rounds, as node 1's
	// index of the new epoch, and hand them to every validator.
	oldSigner, err := hsm.Open(ctx, oldRef, hsm.Options{Passphrase: []byte("node one")})
	if err != nil {
		t.Fatal(err)
	}
	ep := n0.n.currentEpoch()
	idx := ep.Validators.IndexOf(newKey.ID())
	validators := []*testNode{n0, n1, n2, c.nodes[3], n5}
	before := droppedBadSignatures(validators...)
	st := n0.n.driver.Status()
	for r := st.Round + 2; r < st.Round+8; r++ {
		d := consensus.VoteData{Epoch: ep.Epoch(), Round: r, BlockID: gm.SM3([]byte(fmt.Sprint("forged", r))), Height: st.CommittedHeight + 10}
		sig, err := oldSigner.Sign(ctx, consensus.VoteSignBytes(c.chain.ID, d))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := (&consensus.Message{Version: consensus.Version, Vote: &consensus.Vote{Data: d, Voter: uint32(idx), Signature: sig}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range validators {
			tn.n.transport.deliver(driver.Inbound{From: oldKey.ID(), Data: enc})
		}
	}
	oldSigner.Close()
	c.waitFor("votes signed with the old key dropped as bad signatures", 10*time.Second, func() bool {
		return droppedBadSignatures(validators...) > before
	})
	// After the grace the officer destroys the old key.
	c.waitFor("the old key destroyed", 30*time.Second, func() bool {
		return destroyKey(t, c, n1, oldKey.ID()) == http.StatusOK
	})
	if _, err := os.Stat(filepath.Join(dir, "node1.dev")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old key file is still there: %v", err)
	}
	if keys := listKeys(t, c, n1); len(keys) != 1 || keys[0].KeyID != newKey.ID() || !keys[0].Identity || !keys[0].InEpoch {
		t.Fatalf("keys after the rotation: %+v", keys)
	}

	// 3. Remove node 2: at the next epoch it stops voting and leaves the
	// admitted peers; the others go on.
	id2 := n2.signer.PublicKey().ID()
	govOK(t, c, n0, ledger.TxNodeRemove, &txs.NodeRemove{Peer: id2})
	c.waitFor("node 2 out of the epoch", 30*time.Second, func() bool {
		ep := n0.n.currentEpoch()
		return ep.Validators.IndexOf(id2) < 0
	})
	rest := []*testNode{n0, n1, c.nodes[3], n5}
	c.waitFor("node 2's identity dropped by every peer", 30*time.Second, func() bool {
		for _, tn := range rest {
			for _, p := range tn.n.peers.Connected() {
				if p == id2 {
					return false
				}
			}
		}
		return true
	})
	h := n0.height()
	c.waitHeight(h+10, 30*time.Second, rest...)
	if n2.height() >= n0.height() {
		t.Fatalf("the removed node keeps up (%d, node 0 %d)", n2.height(), n0.height())
	}

	// Every record the load got accepted commits, and the remaining
	// nodes agree.
	stopLoad()
	loadWG.Wait()
	mu.Lock()
	ids := append([]ledger.TxID(nil), accepted...)
	mu.Unlock()
	if len(ids) == 0 {
		t.Fatalf("no record accepted of %d sent", sent.Load())
	}
	for _, id := range ids {
		c.waitCommitted(n0, id, 30*time.Second)
	}
	minH := ^uint64(0)
	for _, tn := range rest {
		minH = min(minH, tn.height())
	}
	for hh := uint64(0); hh <= minH; hh++ {
		a, _ := n0.n.Store().Header(hh)
		for _, tn := range rest[1:] {
			b, err := tn.n.Store().Header(hh)
			if err != nil || b.ID != a.ID {
				t.Fatalf("height %d: the nodes disagree (%v)", hh, err)
			}
		}
	}
	t.Logf("%d records committed under membership changes; heights 0..%d agree", len(ids), minH)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listKeys(t *testing.T, c *cluster, tn *testNode) []api.NodeKey {
	t.Helper()
	var out struct {
		Keys []api.NodeKey `json:"keys"`
	}
	if code := tn.api("GET", "/v1/admin/node/keys", nil, signed(t, c, c.chain.Officer, "GET", "/v1/admin/node/keys", nil, time.Now()), &out); code != http.StatusOK {
		t.Fatalf("listing keys: %d", code)
	}
	return out.Keys
}

func destroyKey(t *testing.T, c *cluster, tn *testNode, id gm.KeyID) int {
	t.Helper()
	path := "/v1/admin/node/keys/" + id.String() + "/destroy"
	return tn.api("POST", path, nil, signed(t, c, c.chain.Officer, "POST", path, nil, time.Now()), nil)
}
