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

func account(t *testing.T, c *chain, a ledger.Address) *ledger.Account {
	t.Helper()
	acct, err := app.GetAccount(c.store, a)
	if err != nil {
		t.Fatal(err)
	}
	return acct
}

func admins(t *testing.T, c *chain) uint32 {
	t.Helper()
	b, _ := c.store.Get([]byte("m/admins"))
	if len(b) != 4 {
		t.Fatalf("admin count %x", b)
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func pendingProposals(c *chain) int { return countPrefix(c, "p/") }

func TestAccountRegister(t *testing.T) {
	kc := keyCache{}
	newKey := kc.key(t, "newcomer")
	nk := ledger.KeyBytes(newKey.PublicKey())
	reg := func(roles ledger.Role, signers ...string) func(c *chain) spec {
		return func(c *chain) spec {
			ss := append(c.signers(signers...), newKey)
			return spec{from: signers[0], signers: ss, body: &txs.AccountRegister{PublicKey: nk, Institution: "Port of Tianjin", Roles: roles}}
		}
	}
	ca := kc.key(t, "ca")
	caCert, err := gm.CreateCertificate(context.Background(), &gm.CertificateTemplate{
		Subject: pkixName("test CA"), NotBefore: nowish(), NotAfter: nowish().AddDate(5, 0, 0), IsCA: true, MaxPathLen: 0,
	}, ca.PublicKey(), nil, ca)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(key *gm.PublicKey) []byte {
		cert, err := gm.CreateCertificate(context.Background(), &gm.CertificateTemplate{
			Subject: pkixName("newcomer"), NotBefore: nowish(), NotAfter: nowish().AddDate(1, 0, 0),
		}, key, caCert, ca)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Raw()
	}
	ownCert, bobCert := issue(newKey.PublicKey()), issue(kc.key(t, "bob").PublicKey())
	runCases(t, []testCase{
		{name: "member", spec: reg(ledger.RoleMember|ledger.RoleKiosk, "admin1"), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			a := account(t, c, ledger.Address(nk.ID()))
			if a == nil || a.Institution != "Port of Tianjin" || a.Roles != ledger.RoleMember|ledger.RoleKiosk || a.KeyHeight != c.height {
				t.Fatalf("account %+v", a)
			}
			if k, _ := app.AccountByKey(c.store, nk); k == nil || k.Address != a.Address {
				t.Fatal("key index missing")
			}
			if len(out.Events) != 1 || *out.Events[0].Target != a.Address {
				t.Fatalf("events %+v", out.Events)
			}
		}},
		{name: "with its certificate", spec: func(c *chain) spec {
			s := reg(ledger.RoleMember, "admin1")(c)
			s.body.(*txs.AccountRegister).Certificate = ownCert
			return s
		}},
		{name: "certificate for another key", want: reason.BadBody, spec: func(c *chain) spec {
			s := reg(ledger.RoleMember, "admin1")(c)
			s.body.(*txs.AccountRegister).Certificate = bobCert
			return s
		}},
		{name: "new key did not sign", want: reason.MissingKeyProof, spec: func(c *chain) spec {
			s := reg(ledger.RoleMember, "admin1")(c)
			s.signers = c.signers("admin1")
			return s
		}},
		{name: "not an administrator", want: reason.NotPermitted, spec: reg(ledger.RoleMember, "alice")},
		{name: "already registered", want: reason.AccountExists, setup: func(c *chain) { c.ok(reg(ledger.RoleMember, "admin1")(c)) },
			spec: reg(ledger.RoleMember, "admin1")},
		{name: "key is another account's current key", want: reason.KeyInUse, setup: func(c *chain) {
			// bob rotates to the newcomer's key.
			c.ok(spec{from: "bob", signers: []gm.Signer{c.keys["bob"], newKey}, body: &txs.AccountRotateKey{NewKey: nk}})
		}, spec: reg(ledger.RoleMember, "admin1")},
		{name: "privileged role proposes", spec: reg(ledger.RoleRegulator, "admin1"), check: func(t *testing.T, c *chain, out *app.Output, id ledger.TxID) {
			if account(t, c, ledger.Address(nk.ID())) != nil {
				t.Fatal("registered without quorum")
			}
			p, _ := app.GetProposal(c.store, id)
			if p == nil || len(p.Approvals) != 1 || p.Approvals[0] != *c.addr("admin1") {
				t.Fatalf("proposal %+v", p)
			}
			if len(out.Events) != 1 || out.Events[0].Kind != app.EventProposed {
				t.Fatalf("events %+v", out.Events)
			}
		}},
		{name: "privileged role with quorum", spec: reg(ledger.RoleAdmin, "admin1", "admin2"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if a := account(t, c, ledger.Address(nk.ID())); a == nil || !a.Roles.Has(ledger.RoleAdmin) {
				t.Fatal("admin not registered")
			}
			if admins(t, c) != 4 {
				t.Fatalf("admin count %d", admins(t, c))
			}
		}},
		{name: "privileged role from a non-administrator", want: reason.GovernanceOnly, spec: reg(ledger.RoleOfficer, "alice")},
		{name: "quorum co-signer not an administrator", want: reason.NotAdmin, spec: reg(ledger.RoleOfficer, "admin1", "alice")},
	})
}

func TestAccountFreeze(t *testing.T) {
	freeze := func(from, who string, signers ...string) func(c *chain) spec {
		return func(c *chain) spec {
			s := spec{from: from, to: c.addr(who), body: &txs.AccountFreeze{Reason: "suspicious activity"}}
			if len(signers) > 0 {
				s.signers = c.signers(signers...)
			}
			return s
		}
	}
	runCases(t, []testCase{
		{name: "by the regulator", spec: freeze("regulator", "alice"), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if !account(t, c, *c.addr("alice")).Frozen {
				t.Fatal("not frozen")
			}
			if ev := out.Events[0]; ev.Note != "suspicious activity" || *ev.Target != *c.addr("alice") || ev.Actor != *c.addr("regulator") {
				t.Fatalf("event %+v", ev)
			}
		}},
		{name: "by an administrator", spec: freeze("admin1", "kiosk")},
		{name: "by a member", want: reason.NotPermitted, spec: freeze("bob", "alice")},
		{name: "unknown account", want: reason.AccountNotFound, spec: func(c *chain) spec {
			a := ledger.Address(digest("x"))
			return spec{from: "regulator", to: &a, body: &txs.AccountFreeze{Reason: "x"}}
		}},
		{name: "twice", want: reason.AlreadyFrozen, setup: func(c *chain) { c.ok(freeze("regulator", "alice")(c)) }, spec: freeze("regulator", "alice")},
		{name: "an administrator needs a quorum", spec: freeze("admin1", "admin3"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if account(t, c, *c.addr("admin3")).Frozen || pendingProposals(c) != 1 {
				t.Fatal("a single administrator froze another")
			}
		}},
		{name: "an administrator with a quorum", spec: freeze("admin1", "admin3", "admin1", "admin2"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if !account(t, c, *c.addr("admin3")).Frozen || admins(t, c) != 2 {
				t.Fatal("not frozen or count wrong")
			}
		}},
		{name: "below the threshold", want: reason.ThresholdUnreachable, setup: func(c *chain) {
			c.ok(freeze("admin1", "admin3", "admin1", "admin2")(c))
		}, spec: freeze("admin1", "admin2", "admin1", "admin2")},
		{name: "the regulator cannot freeze a privileged account alone", want: reason.GovernanceOnly, spec: freeze("regulator", "officer")},
		{name: "oneself", want: reason.SelfAction, spec: freeze("admin1", "admin1", "admin1", "admin2")},
	})
}

func TestAccountUnfreeze(t *testing.T) {
	unfreeze := func(c *chain) spec {
		return spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountUnfreeze{Reason: "cleared"}}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: func(c *chain) {
			c.ok(spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountFreeze{Reason: "x"}})
		}, spec: unfreeze, check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if account(t, c, *c.addr("alice")).Frozen {
				t.Fatal("still frozen")
			}
			c.ok(simplePut(c, "alice")) // and it can act again
		}},
		{name: "not frozen", want: reason.NotFrozen, spec: unfreeze},
		{name: "no reason", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountUnfreeze{}}
		}},
	})
}

func TestAccountRotateKey(t *testing.T) {
	kc := keyCache{}
	fresh := kc.key(t, "alice-new")
	fk := ledger.KeyBytes(fresh.PublicKey())
	runCases(t, []testCase{
		{name: "own key", spec: func(c *chain) spec {
			return spec{from: "alice", signers: []gm.Signer{c.keys["alice"], fresh}, body: &txs.AccountRotateKey{NewKey: fk}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			a := account(t, c, *c.addr("alice"))
			if a.PublicKey != fk || a.KeyHeight != c.height {
				t.Fatalf("account %+v", a)
			}
			if r, _ := c.one(simplePut(c, "alice")); r.Code != reason.SenderNotSigner {
				t.Fatalf("old key still accepted: %s", r.Code)
			}
			s := simplePut(c, "alice")
			s.signers = []gm.Signer{fresh}
			c.ok(s)
		}},
		{name: "new key did not sign", want: reason.MissingKeyProof, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.AccountRotateKey{NewKey: fk}}
		}},
		{name: "old key did not sign", want: reason.SenderNotSigner, spec: func(c *chain) spec {
			return spec{from: "alice", signers: []gm.Signer{fresh}, body: &txs.AccountRotateKey{NewKey: fk}}
		}},
		{name: "key in use", want: reason.KeyInUse, spec: func(c *chain) spec {
			bk := ledger.KeyBytes(c.keys["bob"].PublicKey())
			return spec{from: "alice", signers: c.signers("alice", "bob"), body: &txs.AccountRotateKey{NewKey: bk}}
		}},
		{name: "recovery by a quorum", spec: func(c *chain) spec {
			return spec{from: "admin1", to: c.addr("alice"), signers: []gm.Signer{c.keys["admin1"], c.keys["admin2"], fresh},
				body: &txs.AccountRotateKey{NewKey: fk}}
		}, check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if account(t, c, *c.addr("alice")).PublicKey != fk {
				t.Fatal("not recovered")
			}
			if len(out.Events) != 1 || *out.Events[0].Target != *c.addr("alice") {
				t.Fatalf("events %+v", out.Events)
			}
		}},
		{name: "recovery by a member", want: reason.GovernanceOnly, spec: func(c *chain) spec {
			return spec{from: "bob", to: c.addr("alice"), signers: []gm.Signer{c.keys["bob"], fresh}, body: &txs.AccountRotateKey{NewKey: fk}}
		}},
	})
}

func TestAccountSetRoles(t *testing.T) {
	set := func(who string, roles ledger.Role, signers ...string) func(c *chain) spec {
		return func(c *chain) spec {
			s := spec{from: signers[0], to: c.addr(who), signers: c.signers(signers...), body: &txs.AccountSetRoles{Roles: roles}}
			return s
		}
	}
	runCases(t, []testCase{
		{name: "ordinary roles", spec: set("alice", ledger.RoleMember|ledger.RoleIssuer, "admin1"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if account(t, c, *c.addr("alice")).Roles != ledger.RoleMember|ledger.RoleIssuer {
				t.Fatal("roles not set")
			}
		}},
		{name: "by a member", want: reason.NotPermitted, spec: set("bob", ledger.RoleIssuer, "alice")},
		{name: "admin role proposes", spec: set("alice", ledger.RoleAdmin, "admin1"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if account(t, c, *c.addr("alice")).Roles.Has(ledger.RoleAdmin) || pendingProposals(c) != 1 {
				t.Fatal("promoted without quorum")
			}
		}},
		{name: "admin role with quorum", spec: set("alice", ledger.RoleAdmin, "admin1", "admin3"), check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if !account(t, c, *c.addr("alice")).Roles.Has(ledger.RoleAdmin) || admins(t, c) != 4 {
				t.Fatal("not promoted")
			}
		}},
		{name: "demotion below the threshold", want: reason.ThresholdUnreachable, setup: func(c *chain) {
			c.ok(set("admin3", ledger.RoleMember, "admin1", "admin2")(c))
		}, spec: set("admin2", ledger.RoleMember, "admin1", "admin2")},
		{name: "unknown account", want: reason.AccountNotFound, spec: func(c *chain) spec {
			a := ledger.Address(digest("x"))
			return spec{from: "admin1", to: &a, body: &txs.AccountSetRoles{Roles: ledger.RoleMember}}
		}},
	})
}

// TestAccountChangedInBlock: an account read (and remembered decoded)
// earlier in a block is read afresh once a transaction of the same block
// changes it: a record from alice after alice is frozen in the block
// fails, and one before it succeeds. Likewise a Checker that checked a
// transaction from alice sees her frozen once its state changes.
func TestAccountChangedInBlock(t *testing.T) {
	c := newChain(t, keyCache{}, nil)
	put := func(doc string) ledger.Transaction {
		return c.tx(spec{from: "alice", body: &txs.RecordPut{RecordType: "customs.declaration", Subject: *c.addr("alice"), Digest: dptr(doc)}})
	}
	chk, err := c.x.NewChecker(c.store, c.time+blockStep)
	if err != nil {
		t.Fatal(err)
	}
	if err := chk.Check(ptr(put("early"))); err != nil {
		t.Fatalf("checker before the freeze: %v", err)
	}
	before := put("before")
	freeze := c.tx(spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountFreeze{Reason: "suspicious activity"}})
	after := put("after")
	out := c.run(before, freeze, after)
	if got := []reason.Code{out.Results[0].Code, out.Results[1].Code, out.Results[2].Code}; got[0] != reason.OK || got[1] != reason.OK || got[2] != reason.SenderFrozen {
		t.Fatalf("results %v, want OK, OK, SenderFrozen", got)
	}
	if err := chk.Check(ptr(put("late"))); reason.Of(err) != reason.SenderFrozen {
		t.Fatalf("checker after the freeze: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
