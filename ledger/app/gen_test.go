package app_test

import (
	"fmt"
	"math/rand/v2"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/envelope"
	"hallmark/ledger/txs"
)

// gen makes random, valid-shaped transactions of every type against a
// chain's actors: fields are drawn from small sets so that transactions
// collide (same assets, records, accounts) and exercise both success and
// every kind of refusal.
type gen struct {
	c       *chain
	r       *rand.Rand
	kc      keyCache
	records []ledger.TxID
	certs   []ledger.TxID
	props   []ledger.TxID
	fresh   int
}

var genSymbols = []string{"EB", "TOKEN", "BILL-1"}
var genTypes = []string{"customs.declaration", "kyc.identity", "note"}

func newGen(c *chain, seed uint64, kc keyCache) *gen {
	return &gen{c: c, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kc: kc}
}

func (g *gen) actor() string { return genesisActors[g.r.IntN(len(genesisActors))].name }

// likely returns one of names most of the time and any actor otherwise.
func (g *gen) likely(names ...string) string {
	if g.r.IntN(6) == 0 {
		return g.actor()
	}
	return names[g.r.IntN(len(names))]
}

func (g *gen) pick(ids []ledger.TxID) gm.Digest {
	if len(ids) == 0 || g.r.IntN(8) == 0 {
		return digest(fmt.Sprint("missing", g.r.IntN(3)))
	}
	return ids[g.r.IntN(len(ids))]
}

func (g *gen) amount() uint64 {
	switch g.r.IntN(10) {
	case 0:
		return 0 // invalid
	case 1:
		return 1<<64 - 1 - uint64(g.r.IntN(3))
	}
	return uint64(g.r.IntN(60))
}

// tx returns one random transaction for the next block.
func (g *gen) tx() ledger.Transaction {
	c := g.c
	from := g.actor()
	s := spec{from: from}
	other := c.addr(g.actor())
	admins := func() {
		n := 1 + g.r.IntN(3)
		s.from = "admin1"
		s.signers = c.signers([]string{"admin1", "admin2", "admin3"}[:n]...)
	}
	switch g.r.IntN(24) {
	case 0, 1, 2, 3:
		s.from = g.likely("alice", "bob", "kiosk", "issuer")
		b := &txs.RecordPut{RecordType: genTypes[g.r.IntN(3)], Subject: *other}
		switch g.r.IntN(3) {
		case 0:
			b.Digest = dptr(fmt.Sprint(g.r.IntN(5)))
		case 1:
			p := []byte(fmt.Sprint("payload ", g.r.IntN(4)))
			b.Kind, b.Size, s.payload = txs.PayloadPlain, uint64(len(p)), p
		case 2:
			reader := g.actor()
			env, err := envelope.Seal(nil, []byte("sealed document"), []envelope.Reader{{Address: *c.addr(reader), Key: c.keys[reader].PublicKey()}})
			if err != nil {
				g.c.t.Fatal(err)
			}
			b.Kind, b.Size, b.Readers, s.payload = txs.PayloadSealed, uint64(len(env)), []ledger.Address{*c.addr(reader)}, env
		}
		s.body = b
	case 4:
		s.from = g.likely("alice", "bob", "kiosk", "issuer")
		s.body = &txs.RecordSupersede{Previous: g.pick(g.records), Record: txs.RecordPut{RecordType: "note", Subject: *other, Digest: dptr("v")}}
	case 5:
		s.from = []string{"regulator", "regulator", "alice"}[g.r.IntN(3)]
		s.body = &txs.RecordMask{Record: g.pick(g.records), Reason: "order"}
	case 6:
		s.from = g.likely("issuer")
		s.body = &txs.CertIssue{Holder: *other, Kind: "licence", Document: digest(fmt.Sprint(g.r.IntN(4))),
			NotBefore: genesisTime, NotAfter: genesisTime + int64(g.r.IntN(100_000))}
	case 7:
		s.from = g.likely("issuer", "regulator")
		s.body = &txs.CertRevoke{Certificate: g.pick(g.certs), Reason: "revoked"}
	case 8:
		s.to = other
		s.body = &txs.GrantAccess{RecordType: genTypes[g.r.IntN(3)], Until: g.c.time + int64(g.r.IntN(10_000))}
	case 9:
		s.to = other
		s.body = &txs.RevokeAccess{RecordType: genTypes[g.r.IntN(3)]}
	case 10:
		s.from = g.likely("issuer")
		s.body = &txs.AssetIssue{Symbol: genSymbols[g.r.IntN(3)], Name: "asset", MaxSupply: uint64(g.r.IntN(3)) * 500, Initial: g.amount()}
	case 11:
		s.from = g.likely("issuer")
		s.body = &txs.AssetMint{Symbol: genSymbols[g.r.IntN(3)], Amount: g.amount()}
	case 12, 13:
		s.from, s.to = g.likely("issuer"), c.addr(g.likely("alice", "bob", "org"))
		s.body = &txs.AssetAllocate{Symbol: genSymbols[g.r.IntN(3)], Amount: g.amount()}
	case 14, 15:
		s.from, s.to = g.likely("alice", "bob", "org", "issuer"), c.addr(g.likely("alice", "bob", "org"))
		s.body = &txs.AssetTransfer{Symbol: genSymbols[g.r.IntN(3)], Amount: g.amount()}
	case 16:
		g.fresh++
		k := g.kc.key(g.c.t, fmt.Sprint("gen-", g.fresh))
		roles := []ledger.Role{ledger.RoleMember, ledger.RoleIssuer, ledger.RoleAdmin}[g.r.IntN(3)]
		admins()
		s.signers = append(s.signers, k)
		s.body = &txs.AccountRegister{PublicKey: ledger.KeyBytes(k.PublicKey()), Institution: "gen", Roles: roles}
	case 17:
		s.from, s.to = []string{"regulator", "admin1"}[g.r.IntN(2)], other
		if g.r.IntN(2) == 0 {
			s.body = &txs.AccountFreeze{Reason: "x"}
		} else {
			s.body = &txs.AccountUnfreeze{Reason: "y"}
		}
	case 18:
		s.to = other
		admins()
		s.body = &txs.AccountSetRoles{Roles: ledger.Role(1 + g.r.IntN(63))}
	case 19:
		admins()
		n := g.kc.key(g.c.t, fmt.Sprint("node", g.r.IntN(3)))
		if g.r.IntN(2) == 0 {
			s.body = &txs.NodeAdd{Peer: peer(n, "198.18.0.9:7000")}
		} else {
			s.body = &txs.NodeRemove{Peer: n.PublicKey().ID()}
		}
	case 20:
		admins()
		p := ledger.DefaultParams()
		p.GovThreshold = uint32(1 + g.r.IntN(4))
		s.body = &txs.ParamsChange{Params: p}
	case 21:
		admins()
		s.body = &txs.ProtocolUpgrade{Version: uint32(1 + g.r.IntN(4)), ActivationHeight: g.c.height + uint64(g.r.IntN(5))}
	case 22:
		s.from = []string{"admin1", "admin2", "admin3", "bob"}[g.r.IntN(4)]
		s.body = &txs.GovApprove{Proposal: g.pick(g.props)}
	case 23:
		// Only org rotates, and the generator signs with the new key
		// from then on (if the rotation failed, org's later
		// transactions fail: a refusal path too).
		s.from = "org"
		k := g.kc.key(g.c.t, fmt.Sprint("rot-", g.r.IntN(1000)))
		s.signers = []gm.Signer{c.keys["org"], k}
		defer func() { c.keys["org"] = k }()
		s.body = &txs.AccountRotateKey{NewKey: ledger.KeyBytes(k.PublicKey())}
	}
	// Occasionally break something outside the body.
	switch g.r.IntN(20) {
	case 0:
		s.ts = g.c.time - int64(g.c.doc.Params.TxWindowMs)
	case 1:
		s.memo = "a memo"
	}
	tx := g.c.tx(s)
	id := tx.ID()
	switch s.body.(type) {
	case *txs.RecordPut, *txs.RecordSupersede:
		g.records = append(g.records, id)
	case *txs.CertIssue:
		g.certs = append(g.certs, id)
	default:
		if tx.Body.Type>>8 == 0x06 {
			g.props = append(g.props, id)
		}
	}
	return tx
}

// block returns the next block with up to n random transactions, and
// sometimes a replay of an earlier transaction.
func (g *gen) block(n int, earlier []ledger.Transaction) *ledger.Block {
	list := make([]ledger.Transaction, 0, n+1)
	for range n {
		list = append(list, g.tx())
	}
	if len(earlier) > 0 && g.r.IntN(3) == 0 {
		list = append(list, earlier[g.r.IntN(len(earlier))])
	}
	// A block holds distinct transactions (Block.CheckBody).
	seen := map[ledger.TxID]bool{}
	out := list[:0]
	for _, tx := range list {
		if !seen[tx.ID()] {
			seen[tx.ID()] = true
			out = append(out, tx)
		}
	}
	return g.c.nextBlock(out...)
}

// supplyMatches checks the asset invariant on a state.
func supplyMatches(v app.View) error {
	for _, sym := range genSymbols {
		a, err := app.GetAsset(v, sym)
		if err != nil {
			return err
		}
		var sum, prev uint64
		overflow := false
		if err := app.Balances(v, sym, func(_ ledger.Address, n uint64) {
			prev = sum
			sum += n
			overflow = overflow || sum < prev
		}); err != nil {
			return err
		}
		if a == nil {
			if sum != 0 {
				return fmt.Errorf("%s: balances without an asset", sym)
			}
			continue
		}
		if overflow || sum != a.Supply {
			return fmt.Errorf("%s: supply %d, balances sum to %d (overflow %v)", sym, a.Supply, sum, overflow)
		}
	}
	return nil
}
