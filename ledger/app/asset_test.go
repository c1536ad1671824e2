package app_test

import (
	"math"
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func balance(t *testing.T, c *chain, symbol, who string) uint64 {
	t.Helper()
	n, err := app.Balance(c.store, symbol, *c.addr(who))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func supply(t *testing.T, c *chain, symbol string) uint64 {
	t.Helper()
	a, err := app.GetAsset(c.store, symbol)
	if err != nil || a == nil {
		t.Fatalf("asset %s: %v", symbol, err)
	}
	return a.Supply
}

func issueEB(c *chain, initial, max uint64) {
	c.t.Helper()
	c.ok(spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB", Name: "e-bill", Decimals: 2, MaxSupply: max, Initial: initial}})
}

func TestAssetIssue(t *testing.T) {
	runCases(t, []testCase{
		{name: "accepted", spec: func(c *chain) spec {
			return spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB-2024", Name: "财政电子票据", Initial: 1000, MaxSupply: 5000}}
		}, check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
			a, _ := app.GetAsset(c.store, "EB-2024")
			if a.Supply != 1000 || a.Issuer != *c.addr("issuer") || balance(t, c, "EB-2024", "issuer") != 1000 {
				t.Fatalf("asset %+v", a)
			}
		}},
		{name: "exists", want: reason.AssetExists, setup: func(c *chain) { issueEB(c, 0, 0) }, spec: func(c *chain) spec {
			return spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB", Name: "again"}}
		}},
		{name: "not an issuer", want: reason.NotPermitted, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.AssetIssue{Symbol: "EB", Name: "x"}}
		}},
		{name: "initial above max", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "issuer", body: &txs.AssetIssue{Symbol: "EB", Name: "x", Initial: 6, MaxSupply: 5}}
		}},
		{name: "bad symbol", want: reason.BadBody, spec: func(c *chain) spec {
			return spec{from: "issuer", body: &txs.AssetIssue{Symbol: "eb", Name: "x"}}
		}},
	})
}

func TestAssetMint(t *testing.T) {
	mint := func(from string, n uint64) func(c *chain) spec {
		return func(c *chain) spec { return spec{from: from, body: &txs.AssetMint{Symbol: "EB", Amount: n}} }
	}
	runCases(t, []testCase{
		{name: "accepted", setup: func(c *chain) { issueEB(c, 10, 100) }, spec: mint("issuer", 90),
			check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
				if supply(t, c, "EB") != 100 || balance(t, c, "EB", "issuer") != 100 {
					t.Fatal("supply or balance wrong")
				}
			}},
		{name: "above the cap", want: reason.SupplyExceeded, setup: func(c *chain) { issueEB(c, 10, 100) }, spec: mint("issuer", 91)},
		{name: "overflow", want: reason.SupplyExceeded, setup: func(c *chain) { issueEB(c, math.MaxUint64-5, 0) }, spec: mint("issuer", 6)},
		{name: "up to the integer range", setup: func(c *chain) { issueEB(c, math.MaxUint64-5, 0) }, spec: mint("issuer", 5)},
		{name: "not this asset's issuer", want: reason.NotAssetIssuer, setup: func(c *chain) {
			issueEB(c, 10, 0)
			c.newActor(keyCache{}, "issuer2", ledger.RoleIssuer)
		}, spec: mint("issuer2", 1)},
		{name: "unknown asset", want: reason.AssetNotFound, spec: mint("issuer", 1)},
		{name: "zero amount", want: reason.BadBody, setup: func(c *chain) { issueEB(c, 10, 0) }, spec: mint("issuer", 0)},
	})
}

func TestAssetAllocate(t *testing.T) {
	alloc := func(to string, n uint64) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: "issuer", to: c.addr(to), body: &txs.AssetAllocate{Symbol: "EB", Amount: n}}
		}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: func(c *chain) { issueEB(c, 100, 0) }, spec: alloc("alice", 40),
			check: func(t *testing.T, c *chain, _ *app.Output, _ ledger.TxID) {
				if balance(t, c, "EB", "alice") != 40 || balance(t, c, "EB", "issuer") != 60 || supply(t, c, "EB") != 100 {
					t.Fatal("balances wrong")
				}
			}},
		{name: "more than the issuer holds", want: reason.InsufficientBalance, setup: func(c *chain) { issueEB(c, 100, 0) }, spec: alloc("alice", 101)},
		{name: "unknown recipient", want: reason.RecipientUnknown, setup: func(c *chain) { issueEB(c, 100, 0) }, spec: func(c *chain) spec {
			a := ledger.Address(digest("nobody"))
			return spec{from: "issuer", to: &a, body: &txs.AssetAllocate{Symbol: "EB", Amount: 1}}
		}},
		{name: "frozen recipient", want: reason.RecipientFrozen, setup: func(c *chain) {
			issueEB(c, 100, 0)
			c.ok(spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountFreeze{Reason: "x"}})
		}, spec: alloc("alice", 1)},
		{name: "to the issuer itself", want: reason.SelfAction, setup: func(c *chain) { issueEB(c, 100, 0) }, spec: alloc("issuer", 1)},
		{name: "by a member", want: reason.NotPermitted, setup: func(c *chain) { issueEB(c, 100, 0) }, spec: func(c *chain) spec {
			return spec{from: "alice", to: c.addr("bob"), body: &txs.AssetAllocate{Symbol: "EB", Amount: 1}}
		}},
	})
}

func TestAssetTransfer(t *testing.T) {
	setup := func(c *chain) {
		issueEB(c, 100, 0)
		c.ok(spec{from: "issuer", to: c.addr("alice"), body: &txs.AssetAllocate{Symbol: "EB", Amount: 30}})
	}
	xfer := func(from, to string, n uint64) func(c *chain) spec {
		return func(c *chain) spec {
			return spec{from: from, to: c.addr(to), body: &txs.AssetTransfer{Symbol: "EB", Amount: n}}
		}
	}
	runCases(t, []testCase{
		{name: "accepted", setup: setup, spec: xfer("alice", "bob", 30), check: func(t *testing.T, c *chain, out *app.Output, _ ledger.TxID) {
			if balance(t, c, "EB", "alice") != 0 || balance(t, c, "EB", "bob") != 30 {
				t.Fatal("balances wrong")
			}
			if countPrefix(c, "b/EB\x00") != 2 { // issuer and bob; alice's zero balance is deleted
				t.Fatalf("%d balance keys", countPrefix(c, "b/EB\x00"))
			}
		}},
		{name: "insufficient", want: reason.InsufficientBalance, setup: setup, spec: xfer("alice", "bob", 31)},
		{name: "unknown asset", want: reason.AssetNotFound, spec: xfer("alice", "bob", 1)},
		{name: "frozen sender", want: reason.SenderFrozen, setup: func(c *chain) {
			setup(c)
			c.ok(spec{from: "regulator", to: c.addr("alice"), body: &txs.AccountFreeze{Reason: "x"}})
		}, spec: xfer("alice", "bob", 1)},
		{name: "frozen recipient", want: reason.RecipientFrozen, setup: func(c *chain) {
			setup(c)
			c.ok(spec{from: "regulator", to: c.addr("bob"), body: &txs.AccountFreeze{Reason: "x"}})
		}, spec: xfer("alice", "bob", 1)},
		{name: "no recipient", want: reason.BadRecipient, setup: setup, spec: func(c *chain) spec {
			return spec{from: "alice", body: &txs.AssetTransfer{Symbol: "EB", Amount: 1}}
		}},
	})
}

// TestNoDoubleSpendInBlock: two transfers of the same balance in one
// block; the second fails.
func TestNoDoubleSpendInBlock(t *testing.T) {
	c := newChain(t, nil, nil)
	issueEB(c, 100, 0)
	c.ok(spec{from: "issuer", to: c.addr("alice"), body: &txs.AssetAllocate{Symbol: "EB", Amount: 10}})
	a := c.tx(spec{from: "alice", to: c.addr("bob"), body: &txs.AssetTransfer{Symbol: "EB", Amount: 10}})
	b := c.tx(spec{from: "alice", to: c.addr("org"), body: &txs.AssetTransfer{Symbol: "EB", Amount: 10}})
	out := c.run(a, b)
	if !out.Results[0].OK() || out.Results[1].Code != reason.InsufficientBalance {
		t.Fatalf("results %+v", out.Results)
	}
	if balance(t, c, "EB", "bob") != 10 || balance(t, c, "EB", "org") != 0 || balance(t, c, "EB", "alice") != 0 {
		t.Fatal("balances wrong")
	}
}
