package app_test

import (
	"bytes"
	"errors"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/envelope"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// blobStore stands in for storage's content-addressed payload store: it
// keeps payloads by digest and erases what execution tells it to.
type blobStore map[gm.Digest][]byte

func (s blobStore) keep(b *ledger.Block) {
	for _, tx := range b.Txs {
		if tx.Payload != nil {
			s[*tx.Body.PayloadDigest] = bytes.Clone(tx.Payload)
		}
	}
}

func (s blobStore) erase(out *app.Output) {
	for _, e := range out.Erasures {
		delete(s, e.Payload)
	}
}

// TestMaskErasesPayloadProofsStillVerify: after a mask, no stored byte of
// the payload remains in state, in the stored block body or in the blob
// store, and the block's inclusion proof of the record still verifies.
func TestMaskErasesPayloadProofsStillVerify(t *testing.T) {
	c := newChain(t, nil, nil)
	blobs := blobStore{}
	payload := []byte("UNLAWFUL-CONTENT: a distinctive byte string 7f3a9c")
	put := c.tx(spec{from: "kiosk", payload: payload, body: &txs.RecordPut{
		RecordType: "port.manifest", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(payload))}})
	filler := c.tx(simplePut(c, "alice"))
	block := c.nextBlock(filler, put)
	out, err := c.x.ExecuteBlock(c.store, c.root, block)
	if err != nil || !out.Results[1].OK() {
		t.Fatalf("put: %v %+v", err, out.Results)
	}
	c.store.Apply(out.Writes)
	block.Header.StateRoot = out.StateRoot
	c.root, c.height, c.time, c.prev = out.StateRoot, block.Header.Height, block.Header.Timestamp, block.ID()
	blobs.keep(block)
	stored, err := ledger.EncodeBody(block.Txs) // what storage erasure-codes
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, payload) {
		t.Fatal("the stored block body carries the payload")
	}
	header := block.Header

	maskOut := c.ok(spec{from: "regulator", body: &txs.RecordMask{Record: put.ID(), Reason: "court order 2024-17"}})
	blobs.erase(maskOut)

	// No byte string of the payload is left anywhere this node stores.
	needle := payload[:24]
	c.store.Each(func(k, v []byte) {
		if bytes.Contains(k, needle) || bytes.Contains(v, needle) {
			t.Fatalf("payload bytes remain in state at %q", k)
		}
	})
	for d, b := range blobs {
		if bytes.Contains(b, needle) {
			t.Fatalf("payload bytes remain in blob %s", d)
		}
	}
	// The record still names the payload's digest, and the block's proofs
	// verify from the stored body alone.
	r, _ := app.GetRecord(c.store, put.ID())
	if r.Digest != gm.SM3(payload) || r.Masked == nil {
		t.Fatalf("record %+v", r)
	}
	txsBack, err := ledger.DecodeBody(stored)
	if err != nil {
		t.Fatal(err)
	}
	replayed := ledger.Block{Header: header, Txs: txsBack}
	if err := replayed.CheckBody(); err != nil {
		t.Fatalf("stored body no longer matches the header: %v", err)
	}
	proof, err := replayed.ProveTx(1)
	if err != nil {
		t.Fatal(err)
	}
	id := put.ID()
	if err := proof.Verify(header.TxRoot, id[:]); err != nil {
		t.Fatalf("inclusion proof after masking: %v", err)
	}
	if txsBack[1].ID() != id || *txsBack[1].Body.PayloadDigest != gm.SM3(payload) {
		t.Fatal("stored transaction changed")
	}
}

// TestReplayWithoutPayloads: a node catching up executes committed blocks
// from stored bodies, which have no payloads; it must reach the same root.
func TestReplayWithoutPayloads(t *testing.T) {
	kc := keyCache{}
	a := newChain(t, kc, nil)
	b := newChain(t, kc, nil)
	payload := []byte("document")
	put := a.tx(spec{from: "kiosk", payload: payload, body: &txs.RecordPut{
		RecordType: "note", Subject: *a.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(payload))}})
	full := a.nextBlock(put)
	outA, err := a.x.ExecuteBlock(a.store, a.root, full)
	if err != nil {
		t.Fatal(err)
	}
	stripped := b.nextBlock(put.WithoutPayload())
	outB, err := b.x.ExecuteBlock(b.store, b.root, stripped)
	if err != nil {
		t.Fatal(err)
	}
	if outA.StateRoot != outB.StateRoot || !outB.Results[0].OK() {
		t.Fatalf("replay without payload differs: %+v", outB.Results)
	}
}

func TestPayloadChecks(t *testing.T) {
	c := newChain(t, nil, nil)
	setFilter(c, txs.FilterRules{Keywords: []string{"contraband"}, MaxPayloadBytes: 4096})
	plainPut := func(p []byte) ledger.Transaction {
		return c.tx(spec{from: "kiosk", payload: p, body: &txs.RecordPut{
			RecordType: "note", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(p))}})
	}
	env, readers := sealedFor(t, []byte("contraband inside, but sealed"), c, "alice", "regulator")
	sealed := func(payload []byte, rs []ledger.Address) ledger.Transaction {
		return c.tx(spec{from: "alice", payload: payload, body: &txs.RecordPut{
			RecordType: "kyc", Subject: *c.addr("alice"), Kind: txs.PayloadSealed, Size: uint64(len(payload)), Readers: rs}})
	}
	missing := plainPut([]byte("fine"))
	missing.Payload = nil
	tampered := plainPut([]byte("signed text"))
	tampered.Payload = []byte("other text!")
	wrongSize := c.tx(spec{from: "kiosk", payload: []byte("12345"), body: &txs.RecordPut{
		RecordType: "note", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: 6}})
	stray := c.tx(simplePut(c, "alice"))
	stray.Payload = []byte("nobody asked for this")
	for _, tc := range []struct {
		name string
		tx   ledger.Transaction
		want reason.Code
	}{
		{"plain and clean", plainPut([]byte("fine")), reason.OK},
		{"keyword in a plaintext payload", plainPut([]byte("ships CONTRABAND goods")), reason.FilterKeyword},
		{"keyword in a binary payload", plainPut([]byte{0xff, 0x00, 'c', 'o', 'n', 't', 'r', 'a', 'b', 'a', 'n', 'd'}), reason.FilterKeyword},
		{"over the rule's size", plainPut(make([]byte, 5000)), reason.FilterSize},
		{"payload not attached", missing, reason.PayloadMissing},
		{"payload swapped after signing", tampered, reason.PayloadMismatch},
		{"payload of another size than declared", wrongSize, reason.PayloadMismatch},
		{"payload on a transaction that names none", stray, reason.UnexpectedPayload},
		{"sealed", sealed(env, readers), reason.OK},
		{"sealed for other readers than listed", sealed(env, []ledger.Address{*c.addr("alice")}), reason.PayloadMismatch},
		{"sealed but not an envelope", sealed([]byte("plain text pretending"), readers), reason.PayloadMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.x.CheckTx(c.store, &tc.tx, c.time+blockStep)
			if got := reason.Of(err); got != tc.want {
				t.Fatalf("CheckTx: %s (%v), want %s", got, err, tc.want)
			}
			perr := app.CheckProposal(c.store, c.nextBlock(tc.tx))
			if (perr == nil) != (tc.want == reason.OK) {
				t.Fatalf("CheckProposal: %v", perr)
			}
			var re *reason.Error
			if perr != nil && (!errors.As(perr, &re) || re.Code != tc.want) {
				t.Fatalf("CheckProposal code: %v", perr)
			}
		})
	}
}

func TestEnvelopeReadsForReadersOnly(t *testing.T) {
	c := newChain(t, nil, nil)
	doc := []byte("identity document of alice")
	env, _ := sealedFor(t, doc, c, "alice", "regulator")
	for _, who := range []string{"alice", "regulator"} {
		got, err := envelope.Open(env, c.keys[who])
		if err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("%s cannot open: %v", who, err)
		}
	}
	if _, err := envelope.Open(env, c.keys["bob"]); !errors.Is(err, envelope.ErrNotReader) {
		t.Fatalf("bob opened it: %v", err)
	}
}

// TestExecutionIgnoresPayloads: whatever payload a block's transactions
// carry — the right one, none, or a wrong one that a voter's
// CheckProposal would refuse — execution gives the same output, so nodes
// replaying stored bodies (which have no payloads) agree with the nodes
// that executed the proposal.
func TestExecutionIgnoresPayloads(t *testing.T) {
	c := newChain(t, nil, nil)
	doc := []byte("the real document")
	put := c.tx(spec{from: "kiosk", payload: doc, body: &txs.RecordPut{
		RecordType: "note", Subject: *c.addr("bob"), Kind: txs.PayloadPlain, Size: uint64(len(doc))}})
	variants := map[string][]byte{"right": doc, "none": nil, "wrong": []byte("x"), "stray-looking": make([]byte, 5000)}
	var roots []gm.Digest
	for name, p := range variants {
		tx := put
		tx.Payload = p
		out, err := c.x.ExecuteBlock(c.store, c.root, c.nextBlock(tx))
		if err != nil || !out.Results[0].OK() {
			t.Fatalf("%s: %v %+v", name, err, out.Results)
		}
		roots = append(roots, out.StateRoot)
	}
	for _, r := range roots[1:] {
		if r != roots[0] {
			t.Fatal("execution depends on the payload")
		}
	}
}
