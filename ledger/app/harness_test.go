package app_test

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

const (
	chainID     = "hallmark-test"
	genesisTime = int64(1_700_000_000_000)
	blockStep   = int64(1000)
)

// chain is a single node's view of a test chain: a MemStore, the state
// root, and named actors with keys.
type chain struct {
	t      testing.TB
	x      *app.Executor
	store  *app.MemStore
	root   gm.Digest
	height uint64
	time   int64
	prev   ledger.BlockID
	nonce  uint64
	keys   map[string]*gm.PrivateKey
	addrs  map[string]ledger.Address
	node   *gm.PrivateKey
	doc    *app.GenesisDoc
}

// actors and their roles at genesis.
var genesisActors = []struct {
	name  string
	roles ledger.Role
}{
	{"admin1", ledger.RoleAdmin}, {"admin2", ledger.RoleAdmin}, {"admin3", ledger.RoleAdmin},
	{"regulator", ledger.RoleRegulator}, {"officer", ledger.RoleOfficer},
	{"issuer", ledger.RoleIssuer | ledger.RoleMember}, {"kiosk", ledger.RoleKiosk},
	{"alice", ledger.RoleMember}, {"bob", ledger.RoleMember}, {"org", ledger.RoleMember},
}

// keyCache makes key generation deterministic across the two chains of
// a determinism test: the same seed name gives the same key.
type keyCache map[string]*gm.PrivateKey

func (kc keyCache) key(t testing.TB, name string) *gm.PrivateKey {
	if k, ok := kc[name]; ok {
		return k
	}
	// Derive a scalar from the name: deterministic, valid (SM3 output is
	// far below n with overwhelming probability; retry otherwise).
	for i := 0; ; i++ {
		d := gm.SM3([]byte(fmt.Sprintf("hallmark-test-key/%s/%d", name, i)))
		k, err := gm.NewPrivateKey(d[:])
		if err == nil {
			kc[name] = k
			return k
		}
	}
}

func newChain(t testing.TB, kc keyCache, tweak func(*app.GenesisDoc)) *chain {
	t.Helper()
	if kc == nil {
		kc = keyCache{}
	}
	c := &chain{
		t: t, x: app.New(), store: app.NewMemStore(), keys: map[string]*gm.PrivateKey{},
		addrs: map[string]ledger.Address{},
	}
	params := ledger.DefaultParams()
	params.GovThreshold = 2
	c.node = kc.key(t, "node0")
	doc := &app.GenesisDoc{
		Version: app.GenesisVersion, ChainID: chainID, Time: genesisTime, Params: params,
		Validators: []ledger.PeerConfig{peer(c.node, "198.18.0.1:7000")},
	}
	for _, a := range genesisActors {
		k := kc.key(t, a.name)
		c.keys[a.name] = k
		c.addrs[a.name] = ledger.AddressOf(k.PublicKey())
		doc.Accounts = append(doc.Accounts, app.GenesisAccount{
			PublicKey: ledger.KeyBytes(k.PublicKey()), Institution: "inst-" + a.name, Roles: a.roles,
		})
	}
	if tweak != nil {
		tweak(doc)
	}
	c.doc = doc
	g, err := app.Genesis(doc)
	if err != nil {
		t.Fatalf("genesis: %v", err)
	}
	c.store.Apply(g.Writes)
	c.root, c.time = g.StateRoot, genesisTime
	return c
}

func peer(k *gm.PrivateKey, addr string) ledger.PeerConfig {
	pk := ledger.KeyBytes(k.PublicKey())
	return ledger.PeerConfig{
		ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: pk.ID(), Address: addr,
		PublicKey: pk, Organisation: "org",
	}
}

// spec describes a transaction to build.
type spec struct {
	typ     ledger.TxType
	from    string          // sender account name
	sender  *ledger.Address // overrides the sender address
	signers []gm.Signer     // default: from's key
	to      *ledger.Address
	body    txs.Body
	data    []byte // overrides the encoded body
	payload []byte
	digest  *gm.Digest // overrides the payload digest
	memo    string
	ts      int64 // default: the next block's time
	chain   string
}

func (c *chain) addr(name string) *ledger.Address {
	a, ok := c.addrs[name]
	if !ok {
		c.t.Fatalf("no actor %q", name)
	}
	return &a
}

func (c *chain) tx(s spec) ledger.Transaction {
	c.t.Helper()
	if s.typ == 0 {
		s.typ = s.body.TxType()
	}
	if s.signers == nil {
		s.signers = []gm.Signer{c.keys[s.from]}
	}
	sender := s.sender
	if sender == nil {
		sender = c.addr(s.from)
	}
	data := s.data
	if data == nil && s.body != nil {
		var err error
		if data, err = txs.Encode(s.body); err != nil {
			c.t.Fatalf("encode body: %v", err)
		}
	}
	if s.ts == 0 {
		s.ts = c.time + blockStep
	}
	if s.chain == "" {
		s.chain = chainID
	}
	c.nonce++
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: s.chain, Type: s.typ, Timestamp: s.ts, Nonce: c.nonce,
		Entity: ledger.Entity{Sender: *sender, Recipient: s.to, Data: data, Memo: s.memo},
	}, Payload: s.payload}
	for _, sg := range s.signers {
		tx.Body.Signers = append(tx.Body.Signers, ledger.KeyBytes(sg.PublicKey()))
	}
	if s.payload != nil {
		d := gm.SM3(s.payload)
		tx.Body.PayloadDigest = &d
	}
	if s.digest != nil {
		tx.Body.PayloadDigest = s.digest
	}
	for _, sg := range s.signers {
		if err := tx.Sign(context.Background(), sg); err != nil {
			c.t.Fatalf("sign: %v", err)
		}
	}
	return tx
}

// nextBlock builds the next block holding txs, without executing it.
func (c *chain) nextBlock(list ...ledger.Transaction) *ledger.Block {
	b := &ledger.Block{Header: ledger.Header{
		Version: ledger.HeaderVersion, ChainID: chainID, Height: c.height + 1, PrevHash: c.prev,
		Timestamp: c.time + blockStep, Round: c.height + 1,
	}, Txs: list}
	if _, err := b.Seal(); err != nil {
		c.t.Fatalf("seal: %v", err)
	}
	return b
}

// run executes a block of txs, checks the output's own consistency,
// commits it and returns the output.
func (c *chain) run(list ...ledger.Transaction) *app.Output {
	c.t.Helper()
	b := c.nextBlock(list...)
	out, err := c.x.ExecuteBlock(c.store, c.root, b)
	if err != nil {
		c.t.Fatalf("execute block %d: %v", b.Header.Height, err)
	}
	if len(out.Results) != len(list) {
		c.t.Fatalf("%d results for %d transactions", len(out.Results), len(list))
	}
	want, err := ledger.NextStateRoot(c.root, out.Writes)
	if err != nil || want != out.StateRoot {
		c.t.Fatalf("state root %s is not NextStateRoot of the writes (%s, %v)", out.StateRoot, want, err)
	}
	// Executing again on the same state gives the same output.
	again, err := c.x.ExecuteBlock(c.store, c.root, b)
	if err != nil || again.StateRoot != out.StateRoot {
		c.t.Fatalf("re-execution differs: %v", err)
	}
	c.store.Apply(out.Writes)
	b.Header.StateRoot = out.StateRoot
	c.root, c.height, c.time, c.prev = out.StateRoot, b.Header.Height, b.Header.Timestamp, b.ID()
	return out
}

// one runs a block with a single transaction and returns its result.
func (c *chain) one(s spec) (app.TxResult, *app.Output) {
	c.t.Helper()
	out := c.run(c.tx(s))
	return out.Results[0], out
}

// want runs s alone in a block and fails unless its code is code.
func (c *chain) want(code reason.Code, s spec) *app.Output {
	c.t.Helper()
	r, out := c.one(s)
	if r.Code != code {
		c.t.Fatalf("%s: code %s (%d) %q, want %s (%d)", s.body.TxType(), r.Code, r.Code, r.Detail, code, code)
	}
	if code != reason.OK {
		for _, w := range out.Writes {
			if k := string(w.Key); k != "m/tip" && k != "m/horizon" && k[:2] != "x/" {
				c.t.Fatalf("failed transaction wrote %q", w.Key)
			}
		}
	}
	return out
}

func (c *chain) ok(s spec) *app.Output { c.t.Helper(); return c.want(reason.OK, s) }

// signers returns the named actors' keys.
func (c *chain) signers(names ...string) []gm.Signer {
	out := make([]gm.Signer, len(names))
	for i, n := range names {
		out[i] = c.keys[n]
	}
	return out
}

// newActor registers a fresh member account with roles, through an
// administrator (and a quorum for privileged roles).
func (c *chain) newActor(kc keyCache, name string, roles ledger.Role) {
	c.t.Helper()
	k := kc.key(c.t, name)
	body := &txs.AccountRegister{PublicKey: ledger.KeyBytes(k.PublicKey()), Institution: "inst-" + name, Roles: roles}
	signers := []gm.Signer{c.keys["admin1"], k}
	if roles&txs.PrivilegedRoles != 0 {
		signers = []gm.Signer{c.keys["admin1"], c.keys["admin2"], k}
	}
	c.ok(spec{from: "admin1", body: body, signers: signers})
	c.keys[name] = k
	c.addrs[name] = ledger.AddressOf(k.PublicKey())
}

func digest(s string) gm.Digest { return gm.SM3([]byte(s)) }

func dptr(s string) *gm.Digest { d := digest(s); return &d }

func pkixName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"Hallmark test"}}
}

func nowish() time.Time { return time.UnixMilli(genesisTime).UTC() }
