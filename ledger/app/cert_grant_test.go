package app_test

import (
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func certBody(c *chain, doc string) *txs.CertIssue {
	return &txs.CertIssue{
		Holder: *c.addr("alice"), Kind: "business.licence", Serial: "BL-0001", Document: digest(doc),
		NotBefore: genesisTime, NotAfter: genesisTime + 365*24*3600*1000,
	}
}

func TestCertIssue(t *testing.T) {
	runCases(t, []testCase{
		{name: "accepted", spec: func(c *chain) spec { return spec{from: "issuer", body: certBody(c, "licence")} },
			check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
				st, cert, err := app.VerifyCertificate(c.store, digest("licence"), c.time)
				if err != nil || st != app.CertValid || cert.ID != id || cert.Issuer != *c.addr("issuer") {
					t.Fatalf("verify: %v %+v %v", st, cert, err)
				}
				if st, _, _ := app.VerifyCertificate(c.store, digest("licence"), genesisTime+366*24*3600*1000); st != app.CertExpired {
					t.Fatalf("after notAfter: %v", st)
				}
				if st, _, _ := app.VerifyCertificate(c.store, digest("licence"), genesisTime-1); st != app.CertNotYetValid {
					t.Fatalf("before notBefore: %v", st)
				}
				if st, _, _ := app.VerifyCertificate(c.store, digest("other"), c.time); st != app.CertUnknown {
					t.Fatalf("unknown document: %v", st)
				}
			}},
		{name: "not an issuer", want: reason.NotPermitted, spec: func(c *chain) spec { return spec{from: "alice", body: certBody(c, "x")} }},
		{name: "duplicate live certificate", want: reason.CertDuplicate, setup: func(c *chain) {
			c.ok(spec{from: "issuer", body: certBody(c, "licence")})
		}, spec: func(c *chain) spec { return spec{from: "issuer", body: certBody(c, "licence")} }},
		{name: "reissue after revocation", setup: func(c *chain) {
			tx := c.tx(spec{from: "issuer", body: certBody(c, "licence")})
			c.run(tx)
			c.ok(spec{from: "issuer", body: &txs.CertRevoke{Certificate: tx.ID(), Reason: "lost"}})
		}, spec: func(c *chain) spec { return spec{from: "issuer", body: certBody(c, "licence")} },
			check: func(t *testing.T, c *chain, _ *app.Output, id ledger.TxID) {
				if st, cert, _ := app.VerifyCertificate(c.store, digest("licence"), c.time); st != app.CertValid || cert.ID != id {
					t.Fatalf("reissued: %v", st)
				}
			}},
		{name: "invalid validity", want: reason.BadBody, spec: func(c *chain) spec {
			b := certBody(c, "x")
			b.NotAfter = b.NotBefore
			return spec{from: "issuer", body: b}
		}},
		{name: "blocked kind", want: reason.FilterRecordType, setup: func(c *chain) {
			setFilter(c, txs.FilterRules{BlockedRecordTypes: []string{"business.licence"}})
		}, spec: func(c *chain) spec { return spec{from: "issuer", body: certBody(c, "x")} }},
	})
}

func TestCertRevoke(t *testing.T) {
	var cert ledger.TxID
	setup := func(c *chain) {
		tx := c.tx(spec{from: "issuer", body: certBody(c, "licence")})
		c.run(tx)
		cert = tx.ID()
	}
	revoke := func(from string) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: from, body: &txs.CertRevoke{Certificate: cert, Reason: "fraudulent application"}}
		}
	}
	runCases(t, []testCase{
		{name: "by its issuer", setup: setup, spec: revoke("issuer"), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			st, cr, _ := app.VerifyCertificate(c.store, digest("licence"), c.time)
			if st != app.CertRevokedStat || cr.Revoked.By != *c.addr("issuer") || cr.Revoked.Reason != "fraudulent application" {
				t.Fatalf("status %v %+v", st, cr.Revoked)
			}
			if len(out.Events) != 1 || *out.Events[0].Target != *c.addr("alice") {
				t.Fatalf("events %+v", out.Events)
			}
		}},
		{name: "by the regulator", setup: setup, spec: revoke("regulator")},
		{name: "by another issuer", want: reason.NotCertIssuer, setup: func(c *chain) {
			setup(c)
			kc := keyCache{}
			c.newActor(kc, "issuer2", ledger.RoleIssuer)
		}, spec: revoke("issuer2")},
		{name: "by a member", want: reason.NotPermitted, setup: setup, spec: revoke("alice")},
		{name: "unknown certificate", want: reason.CertNotFound, spec: revoke("issuer")},
		{name: "twice", want: reason.CertRevoked, setup: func(c *chain) {
			setup(c)
			c.ok(revoke("issuer")(c))
		}, spec: revoke("issuer")},
	})
}

func TestGrantAccess(t *testing.T) {
	grant := func(class string, until int64) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: "alice", to: c.addr("org"), body: &txs.GrantAccess{RecordType: class, Until: until}}
		}
	}
	later := genesisTime + 3600_000
	runCases(t, []testCase{
		{name: "accepted", spec: grant("kyc.identity", later), check: func(t *testing.T, c *chain, out *app.Output, id ledger.TxID) {
			g, err := app.GetGrant(c.store, *c.addr("alice"), *c.addr("org"), "kyc.identity")
			if err != nil || g == nil || g.ID != id || g.Until != later {
				t.Fatalf("grant %+v %v", g, err)
			}
			held, err := app.GrantsToGrantee(c.store, *c.addr("org"))
			if err != nil || len(held) != 1 || held[0].ID != id {
				t.Fatalf("grants held: %+v %v", held, err)
			}
			if len(out.Events) != 1 || *out.Events[0].Grant != id {
				t.Fatalf("events %+v", out.Events)
			}
		}},
		{name: "every type", spec: grant("*", later)},
		{name: "no recipient", want: reason.BadRecipient, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.GrantAccess{RecordType: "kyc", Until: later}}
		}},
		{name: "unknown grantee", want: reason.GranteeUnknown, spec: func(c *chain) spec {
			a := ledger.Address(digest("nobody"))
			return spec{from: "alice", to: &a, body: &txs.GrantAccess{RecordType: "kyc", Until: later}}
		}},
		{name: "frozen grantee", want: reason.GranteeFrozen, setup: func(c *chain) {
			c.ok(spec{from: "regulator", to: c.addr("org"), body: &txs.AccountFreeze{Reason: "x"}})
		}, spec: grant("kyc", later)},
		{name: "to oneself", want: reason.SelfAction, spec: func(c *chain) spec {
			return spec{from: "alice", to: c.addr("alice"), body: &txs.GrantAccess{RecordType: "kyc", Until: later}}
		}},
		{name: "already over", want: reason.GrantExpired, spec: grant("kyc", genesisTime)},
		{name: "bad class", want: reason.BadBody, spec: grant("KYC!", later)},
	})
}

func TestRevokeAccess(t *testing.T) {
	revoke := func(c *chain) spec {
		return spec{from: "alice", to: c.addr("org"), body: &txs.RevokeAccess{RecordType: "kyc"}}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: func(c *chain) {
			c.ok(spec{from: "alice", to: c.addr("org"), body: &txs.GrantAccess{RecordType: "kyc", Until: genesisTime + 3600_000}})
		}, spec: revoke, check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			if g, _ := app.GetGrant(c.store, *c.addr("alice"), *c.addr("org"), "kyc"); g != nil {
				t.Fatal("grant still there")
			}
			if held, _ := app.GrantsToGrantee(c.store, *c.addr("org")); len(held) != 0 {
				t.Fatalf("grantee index still lists %d", len(held))
			}
		}},
		{name: "no such grant", want: reason.GrantNotFound, spec: revoke},
	})
}

// TestAuthorizeRead covers the audited read path.
func TestAuthorizeRead(t *testing.T) {
	c := newChain(t, nil, nil)
	payload := []byte("passport scan")
	put := c.tx(spec{from: "kiosk", payload: payload, body: &txs.RecordPut{
		RecordType: "kyc.identity", Subject: *c.addr("alice"), Kind: txs.PayloadPlain, Size: uint64(len(payload))}})
	c.run(put)
	rec := put.ID()
	grantTx := c.tx(spec{from: "alice", to: c.addr("org"), body: &txs.GrantAccess{RecordType: "kyc.identity", Until: c.time + 10_000}})
	c.run(grantTx)
	node := gm.KeyID(digest("node"))
	read := func(who string, at int64) app.ReadDecision {
		t.Helper()
		d, err := app.AuthorizeRead(c.store, app.ReadRequest{Reader: *c.addr(who), Record: rec, Time: at, Purpose: "account opening", Node: node})
		if err != nil {
			t.Fatal(err)
		}
		ev := d.Event
		if ev.Kind != app.EventRead || ev.Actor != *c.addr(who) || *ev.Record != rec || ev.Time != at || *ev.Node != node || ev.Note != "account opening" || ev.Height != c.height {
			t.Fatalf("event %+v", ev)
		}
		if d.Allowed != (ev.Outcome == reason.OK) {
			t.Fatalf("allowed %v with outcome %s", d.Allowed, ev.Outcome)
		}
		return d
	}
	for _, tc := range []struct {
		who   string
		at    int64
		basis app.ReadBasis
		code  reason.Code
	}{
		{"kiosk", c.time, app.BasisOwner, reason.OK},
		{"alice", c.time, app.BasisSubject, reason.OK},
		{"org", c.time, app.BasisGrant, reason.OK},
		{"org", c.time + 10_000, app.BasisNone, reason.ReadDenied}, // the grant has ended
		{"regulator", c.time, app.BasisRegulator, reason.OK},
		{"bob", c.time, app.BasisNone, reason.ReadDenied},
	} {
		d := read(tc.who, tc.at)
		if d.Basis != tc.basis || d.Event.Outcome != tc.code {
			t.Errorf("%s at %d: basis %v outcome %s, want %v %s", tc.who, tc.at, d.Basis, d.Event.Outcome, tc.basis, tc.code)
		}
		if tc.basis == app.BasisGrant && (d.Grant == nil || *d.Event.Grant != grantTx.ID()) {
			t.Errorf("grant read does not name the grant")
		}
	}
	// Unknown reader, unknown record.
	if d, _ := app.AuthorizeRead(c.store, app.ReadRequest{Reader: ledger.Address(digest("x")), Record: rec}); d.Event.Outcome != reason.ReaderNotFound {
		t.Errorf("unknown reader: %s", d.Event.Outcome)
	}
	if d, _ := app.AuthorizeRead(c.store, app.ReadRequest{Reader: *c.addr("alice"), Record: digest("x")}); d.Event.Outcome != reason.RecordNotFound {
		t.Errorf("unknown record: %s", d.Event.Outcome)
	}
	// Revoked grant, frozen reader, masked record.
	c.ok(spec{from: "alice", to: c.addr("org"), body: &txs.RevokeAccess{RecordType: "kyc.identity"}})
	if d := read("org", c.time); d.Allowed {
		t.Error("read allowed after revocation")
	}
	c.ok(spec{from: "regulator", to: c.addr("bob"), body: &txs.AccountFreeze{Reason: "x"}})
	if d := read("bob", c.time); d.Event.Outcome != reason.ReaderFrozen {
		t.Errorf("frozen reader: %s", d.Event.Outcome)
	}
	c.ok(spec{from: "regulator", body: &txs.RecordMask{Record: rec, Reason: "x"}})
	if d := read("regulator", c.time); d.Allowed || d.Event.Outcome != reason.RecordMasked {
		t.Errorf("masked record: %s", d.Event.Outcome)
	}
}

func TestAuditChain(t *testing.T) {
	ev := app.AuditEvent{Kind: app.EventRead, Time: 1, Actor: ledger.Address(digest("a"))}
	h1, err := app.ChainAudit(gm.Digest{}, &ev)
	if err != nil {
		t.Fatal(err)
	}
	ev2 := ev
	ev2.Time = 2
	h2a, _ := app.ChainAudit(h1, &ev2)
	h2b, _ := app.ChainAudit(h1, &ev)
	if h1.IsZero() || h2a == h2b || h2a == h1 {
		t.Fatal("chain does not commit to its events")
	}
	// Order matters.
	g1, _ := app.ChainAudit(gm.Digest{}, &ev2)
	g2, _ := app.ChainAudit(g1, &ev)
	if g2 == h2a {
		t.Fatal("chain does not commit to order")
	}
}
