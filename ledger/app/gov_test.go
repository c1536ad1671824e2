package app_test

import (
	"context"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func validators(t *testing.T, c *chain) *ledger.ValidatorSet {
	t.Helper()
	vs, err := app.Validators(c.store)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestNodeAdd(t *testing.T) {
	kc := keyCache{}
	n1 := kc.key(t, "node1")
	add := func(signers ...string) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: signers[0], signers: c.signers(signers...), body: &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}}
		}
	}
	runCases(t, []testCase{
		{name: "with a quorum", spec: add("admin1", "admin2"), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			vs := validators(t, c)
			if vs.N() != 2 || vs.IndexOf(n1.PublicKey().ID()) != 1 {
				t.Fatalf("validators %+v", vs)
			}
			if out.Reconfig == nil || out.Reconfig.Validators == nil || out.Reconfig.Validators.N() != 2 || out.Reconfig.Validators.Epoch != 1 {
				t.Fatalf("reconfig %+v", out.Reconfig)
			}
			if info, _ := app.GetNode(c.store, n1.PublicKey().ID()); info == nil || info.Height != c.height {
				t.Fatal("node info missing")
			}
		}},
		{name: "one approval proposes", spec: add("admin1"), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if validators(t, c).N() != 1 || out.Reconfig != nil || pendingProposals(c) != 1 {
				t.Fatal("added without quorum")
			}
		}},
		{name: "not an administrator", want: reason.GovernanceOnly, spec: add("officer")},
		{name: "a non-administrator among the signers", want: reason.NotAdmin, spec: add("admin1", "bob")},
		{name: "already a validator", want: reason.NodeExists, setup: func(c *chain) { c.ok(add("admin1", "admin2")(c)) }, spec: add("admin1", "admin2")},
		{name: "already a validator refused when proposed", want: reason.NodeExists, setup: func(c *chain) { c.ok(add("admin1", "admin2")(c)) }, spec: add("admin3")},
		{name: "bad peer config", want: reason.BadBody, spec: func(c *chain) spec {
			p := peer(n1, "no-port")
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.NodeAdd{Peer: p}}
		}},
	})
}

func TestNodeRemove(t *testing.T) {
	kc := keyCache{}
	n1 := kc.key(t, "node1")
	twoNodes := func(c *chain) {
		c.ok(spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}})
	}
	remove := func(id gm.KeyID) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin3"), body: &txs.NodeRemove{Peer: id}}
		}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: twoNodes, spec: remove(n1.PublicKey().ID()), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if validators(t, c).N() != 1 || out.Reconfig.Validators.N() != 1 {
				t.Fatal("not removed")
			}
			if info, _ := app.GetNode(c.store, n1.PublicKey().ID()); info != nil {
				t.Fatal("node info left")
			}
		}},
		{name: "unknown", want: reason.NodeNotFound, spec: remove(n1.PublicKey().ID())},
		{name: "the last one", want: reason.LastValidator, spec: func(c *chain) spec { return remove(c.node.PublicKey().ID())(c) }},
	})
}

func TestNodeRotateKey(t *testing.T) {
	kc := keyCache{}
	fresh := kc.key(t, "node0-new")
	stmt := func(c *chain, chain string) *txs.NodeRotateKey {
		s := txs.NodeKeyStatement{ChainID: chain, Old: ledger.KeyBytes(c.node.PublicKey()), New: ledger.KeyBytes(fresh.PublicKey()), Timestamp: genesisTime}
		o, n, err := txs.SignNodeKeyStatement(context.Background(), &s, c.node, fresh)
		if err != nil {
			t.Fatal(err)
		}
		return &txs.NodeRotateKey{Statement: s, OldSignature: o, NewSignature: n}
	}
	quorum := func(body txs.Body) func(c *chain) spec {
		return func(c *chain) spec { return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: body} }
	}
	runCases(t, []testCase{
		{name: "accepted", spec: func(c *chain) spec { return quorum(stmt(c, chainID))(c) }, check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			vs := validators(t, c)
			if vs.IndexOf(fresh.PublicKey().ID()) != 0 || vs.IndexOf(c.node.PublicKey().ID()) != -1 {
				t.Fatalf("validators %+v", vs)
			}
			rc := out.Reconfig
			if rc == nil || len(rc.NodeKeys) != 1 || rc.NodeKeys[0].Old != c.node.PublicKey().ID() || rc.NodeKeys[0].New != ledger.KeyBytes(fresh.PublicKey()) {
				t.Fatalf("reconfig %+v", rc)
			}
		}},
		{name: "statement for another chain", want: reason.BadRotation, spec: func(c *chain) spec { return quorum(stmt(c, "elsewhere"))(c) }},
		{name: "forged new-key signature", want: reason.BadBody, spec: func(c *chain) spec {
			b := stmt(c, chainID)
			b.NewSignature = b.OldSignature
			return quorum(b)(c)
		}},
		{name: "not a validator's key", want: reason.NodeNotFound, spec: func(c *chain) spec {
			b := stmt(c, chainID)
			other := kc.key(t, "other")
			b.Statement.Old = ledger.KeyBytes(other.PublicKey())
			o, n, _ := txs.SignNodeKeyStatement(context.Background(), &b.Statement, other, fresh)
			b.OldSignature, b.NewSignature = o, n
			return quorum(b)(c)
		}},
	})
}

func TestParamsChange(t *testing.T) {
	change := func(f func(*ledger.Params)) func(c *chain) spec {
		return func(c *chain) spec {
			p := c.doc.Params
			f(&p)
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.ParamsChange{Params: p}}
		}
	}
	runCases(t, []testCase{
		{name: "raise the threshold", spec: change(func(p *ledger.Params) { p.GovThreshold = 3 }), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if p, _ := app.Params(c.store); p.GovThreshold != 3 || out.Reconfig.Params.GovThreshold != 3 {
				t.Fatal("threshold not changed")
			}
			// Two approvals no longer suffice.
			c.ok(change(func(p *ledger.Params) { p.GovThreshold = 1 })(c))
			if p, _ := app.Params(c.store); p.GovThreshold != 3 || pendingProposals(c) != 1 {
				t.Fatal("two approvals passed a threshold of three")
			}
		}},
		{name: "threshold above the administrators", want: reason.ThresholdUnreachable, spec: change(func(p *ledger.Params) { p.GovThreshold = 4 })},
		{name: "invalid", want: reason.BadBody, spec: change(func(p *ledger.Params) { p.TxWindowMs = 0 })},
	})
}

func TestProtocolUpgrade(t *testing.T) {
	up := func(v uint32, h uint64) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.ProtocolUpgrade{Version: v, ActivationHeight: h}}
		}
	}
	runCases(t, []testCase{
		{name: "accepted", spec: up(2, 100), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			ps, _ := app.Protocol(c.store)
			if ps.Version != 1 || ps.Next != 2 || ps.Activation != 100 || ps.At(99) != 1 || ps.At(100) != 2 || out.Reconfig.Protocol.Next != 2 {
				t.Fatalf("protocol %+v", ps)
			}
		}},
		{name: "not newer", want: reason.VersionNotNewer, spec: up(1, 100)},
		{name: "not above the scheduled one", want: reason.VersionNotNewer, setup: func(c *chain) { c.ok(up(3, 100)(c)) }, spec: up(2, 200)},
		{name: "activation passed", want: reason.ActivationPassed, spec: up(2, 1)},
	})
}

func TestFilterUpdate(t *testing.T) {
	runCases(t, []testCase{
		{name: "accepted", spec: func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.FilterUpdate{Rules: txs.FilterRules{Keywords: []string{"spam"}}}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			r, _ := app.FilterRules(c.store)
			if len(r.Keywords) != 1 {
				t.Fatalf("rules %+v", r)
			}
		}},
		{name: "unsorted keywords", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.FilterUpdate{Rules: txs.FilterRules{Keywords: []string{"b", "a"}}}}
		}},
		{name: "upper-case keyword", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "admin1", signers: c.signers("admin1", "admin2"), body: &txs.FilterUpdate{Rules: txs.FilterRules{Keywords: []string{"Spam"}}}}
		}},
	})
}

// TestCollectedApprovals: a proposal stored by one administrator is
// completed by gov.approve transactions.
func TestCollectedApprovals(t *testing.T) {
	c := newChain(t, nil, func(d *app.GenesisDoc) { d.Params.GovThreshold = 3 })
	kc := keyCache{}
	n1 := kc.key(t, "node1")
	prop := c.tx(spec{from: "admin1", body: &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}})
	if out := c.run(prop); !out.Results[0].OK() || out.Events[0].Kind != app.EventProposed {
		t.Fatalf("propose: %+v", out.Results[0])
	}
	approve := func(from string, signers ...string) spec {
		if signers == nil {
			signers = []string{from}
		}
		return spec{from: from, signers: c.signers(signers...), body: &txs.GovApprove{Proposal: prop.ID()}}
	}
	c.want(reason.AlreadyApproved, approve("admin1"))
	c.want(reason.NotPermitted, approve("alice"))
	c.want(reason.NotAdmin, approve("admin2", "admin2", "alice"))
	c.want(reason.ProposalNotFound, spec{from: "admin2", body: &txs.GovApprove{Proposal: digest("none")}})

	out := c.ok(approve("admin2"))
	if out.Reconfig != nil || validators(t, c).N() != 1 {
		t.Fatal("executed at 2 of 3")
	}
	if p, _ := app.GetProposal(c.store, prop.ID()); len(p.Approvals) != 2 {
		t.Fatalf("approvals %+v", p.Approvals)
	}
	out = c.ok(approve("admin3"))
	if out.Reconfig == nil || validators(t, c).N() != 2 {
		t.Fatal("not executed at 3 of 3")
	}
	var kinds []app.EventKind
	for _, ev := range out.Events {
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) != 2 || kinds[0] != app.EventApproved || kinds[1] != app.EventExecuted || out.Events[1].Actor != *c.addr("admin1") {
		t.Fatalf("events %+v", out.Events)
	}
	if pendingProposals(c) != 0 || countPrefix(c, "q/") != 0 {
		t.Fatal("proposal left behind")
	}
	c.want(reason.ProposalNotFound, approve("admin3")) // executed proposals cannot be approved again
}

// TestApprovalsLapse: an approval counts only while its administrator is
// active.
func TestApprovalsLapse(t *testing.T) {
	c := newChain(t, nil, nil) // threshold 2 of 3
	c.newActor(keyCache{}, "admin4", ledger.RoleAdmin)
	n1 := keyCache{}.key(t, "node1")
	prop := c.tx(spec{from: "admin1", body: &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}})
	c.run(prop)
	// admin1 is frozen by admin2 and admin3.
	c.ok(spec{from: "admin2", signers: c.signers("admin2", "admin3"), to: c.addr("admin1"), body: &txs.AccountFreeze{Reason: "compromised"}})
	c.ok(spec{from: "admin4", body: &txs.GovApprove{Proposal: prop.ID()}})
	if validators(t, c).N() != 1 {
		t.Fatal("a frozen administrator's approval counted")
	}
	c.ok(spec{from: "admin2", body: &txs.GovApprove{Proposal: prop.ID()}})
	if validators(t, c).N() != 2 {
		t.Fatal("two active approvals did not execute")
	}
}

// TestProposalFailsAtExecution: a proposal whose action became invalid
// while it waited fails the completing approval and stays pending.
func TestProposalFailsAtExecution(t *testing.T) {
	c := newChain(t, nil, nil)
	n1 := keyCache{}.key(t, "node1")
	add := &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}
	prop := c.tx(spec{from: "admin1", body: add})
	c.run(prop)
	c.ok(spec{from: "admin2", signers: c.signers("admin2", "admin3"), body: add}) // added directly meanwhile
	c.want(reason.NodeExists, spec{from: "admin2", body: &txs.GovApprove{Proposal: prop.ID()}})
	if p, _ := app.GetProposal(c.store, prop.ID()); p == nil || len(p.Approvals) != 1 {
		t.Fatal("failed approval changed the proposal")
	}
}

func TestProposalExpiry(t *testing.T) {
	c := newChain(t, nil, nil)
	n1 := keyCache{}.key(t, "node1")
	prop := c.tx(spec{from: "admin1", body: &txs.NodeAdd{Peer: peer(n1, "198.18.0.2:7000")}})
	c.run(prop)
	c.time += app.ProposalLifetimeMs - blockStep - 1
	if out := c.run(); len(out.Events) != 0 || pendingProposals(c) != 1 {
		t.Fatal("expired early")
	}
	out := c.run()
	if len(out.Events) != 1 || out.Events[0].Kind != app.EventExpired || *out.Events[0].Tx != prop.ID() {
		t.Fatalf("events %+v", out.Events)
	}
	if pendingProposals(c) != 0 || countPrefix(c, "q/") != 0 {
		t.Fatal("expired proposal kept")
	}
	c.want(reason.ProposalNotFound, spec{from: "admin2", body: &txs.GovApprove{Proposal: prop.ID()}})
}
