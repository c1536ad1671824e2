package app_test

import (
	"bytes"
	"strings"
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
)

func TestGenesis(t *testing.T) {
	kc := keyCache{}
	c := newChain(t, kc, nil)
	g1, err := app.Genesis(c.doc)
	if err != nil {
		t.Fatal(err)
	}
	// Through its encoding, on another node: the same state.
	enc, err := ledger.Marshal(c.doc)
	if err != nil {
		t.Fatal(err)
	}
	doc2, err := app.DecodeGenesis(enc)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := app.Genesis(doc2)
	if err != nil {
		t.Fatal(err)
	}
	if g1.StateRoot != g2.StateRoot || len(g1.Writes) != len(g2.Writes) {
		t.Fatal("genesis is not deterministic")
	}
	want, _ := ledger.NextStateRoot(ledger.GenesisStateRoot(chainID), g1.Writes)
	if g1.StateRoot != want || g1.Validators.N() != 1 {
		t.Fatal("genesis root or validators wrong")
	}
	// What genesis set up is readable.
	if id, _ := app.ChainID(c.store); id != chainID {
		t.Fatalf("chain id %q", id)
	}
	p, _ := app.Params(c.store)
	if p != c.doc.Params {
		t.Fatal("params differ")
	}
	if a, _ := app.GetAccount(c.store, *c.addr("admin2")); a == nil || !a.Roles.Has(ledger.RoleAdmin) {
		t.Fatal("administrator missing")
	}
	if admins(t, c) != 3 {
		t.Fatalf("admin count %d", admins(t, c))
	}
	tip, _ := app.GetTip(c.store)
	if tip.Height != 0 || tip.Time != genesisTime {
		t.Fatalf("tip %+v", tip)
	}
	sb, _ := c.doc.SignBytes()
	if !bytes.HasPrefix(sb, []byte("hallmark/genesis/v1\x00")) {
		t.Fatal("sign bytes lack the domain tag")
	}
}

func TestGenesisRefuses(t *testing.T) {
	kc := keyCache{}
	base := newChain(t, kc, nil).doc
	clone := func() *app.GenesisDoc {
		d := *base
		d.Accounts = append([]app.GenesisAccount(nil), base.Accounts...)
		d.Validators = append([]ledger.PeerConfig(nil), base.Validators...)
		return &d
	}
	for _, tc := range []struct {
		name  string
		tweak func(d *app.GenesisDoc)
		want  string
	}{
		{"version", func(d *app.GenesisDoc) { d.Version = 2 }, "version"},
		{"no chain id", func(d *app.GenesisDoc) { d.ChainID = "" }, "chain id"},
		{"no time", func(d *app.GenesisDoc) { d.Time = 0 }, "time"},
		{"bad params", func(d *app.GenesisDoc) { d.Params.TxWindowMs = 0 }, "parameters"},
		{"no validators", func(d *app.GenesisDoc) { d.Validators = nil }, "validators"},
		{"duplicate validator", func(d *app.GenesisDoc) { d.Validators = append(d.Validators, d.Validators[0]) }, "validators"},
		{"duplicate account", func(d *app.GenesisDoc) { d.Accounts = append(d.Accounts, d.Accounts[0]) }, "twice"},
		{"account without institution", func(d *app.GenesisDoc) { d.Accounts[3].Institution = "" }, "institution"},
		{"threshold above administrators", func(d *app.GenesisDoc) { d.Params.GovThreshold = 4 }, "administrators"},
		{"no administrator", func(d *app.GenesisDoc) {
			d.Accounts = d.Accounts[3:]
			d.Params.GovThreshold = 1
		}, "administrators"},
		{"bad filter", func(d *app.GenesisDoc) { d.Filter = txs.FilterRules{Keywords: []string{"B", "A"}} }, "filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := clone()
			tc.tweak(d)
			_, err := app.Genesis(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one about %q", err, tc.want)
			}
		})
	}
}
