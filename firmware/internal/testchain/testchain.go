// Package testchain builds genesis documents and signed transactions for
// the firmware packages' tests: validators with software keys (or keys
// given by the test, such as TPM keys), and a cast of accounts with roles.
package testchain

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"hallmark/firmware/genesis"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

// Chain is a test consortium's genesis and the keys behind it.
type Chain struct {
	ID  string
	Doc *app.GenesisDoc
	// Validators are the validator signers, in validator-set order.
	Validators []gm.Signer
	// Accounts by role.
	Admin, Regulator, Kiosk, Alice, Officer *gm.PrivateKey
	nonce                                   atomic.Uint64
}

// Options shape a test chain.
type Options struct {
	// Validators sign for the validators; their addresses are Addrs.
	Validators []gm.Signer
	Addrs      []string
	// Params default to ledger.DefaultParams with a short base timeout.
	Params *ledger.Params
	// Time is the genesis time (default: an hour ago).
	Time int64
}

// New returns a chain for the validators in o.
func New(t testing.TB, o Options) *Chain {
	t.Helper()
	if len(o.Validators) == 0 || len(o.Validators) != len(o.Addrs) {
		t.Fatalf("testchain: %d validators, %d addresses", len(o.Validators), len(o.Addrs))
	}
	c := &Chain{ID: "hallmark-test", Validators: o.Validators}
	var err error
	for _, k := range []**gm.PrivateKey{&c.Admin, &c.Regulator, &c.Kiosk, &c.Alice, &c.Officer} {
		if *k, err = gm.GenerateKey(nil); err != nil {
			t.Fatal(err)
		}
	}
	params := ledger.DefaultParams()
	params.BaseTimeoutMs = 500
	params.MaxTimeoutMs = 4000
	if o.Params != nil {
		params = *o.Params
	}
	if o.Time == 0 {
		o.Time = time.Now().Add(-time.Hour).UnixMilli()
	}
	doc := &app.GenesisDoc{Version: app.GenesisVersion, ChainID: c.ID, Time: o.Time, Params: params}
	for i, v := range o.Validators {
		doc.Validators = append(doc.Validators, Peer(v.PublicKey(), o.Addrs[i]))
	}
	for _, a := range []struct {
		k     *gm.PrivateKey
		roles ledger.Role
		name  string
	}{
		{c.Admin, ledger.RoleAdmin, "admin"}, {c.Regulator, ledger.RoleRegulator, "regulator"},
		{c.Kiosk, ledger.RoleKiosk, "kiosk"}, {c.Alice, ledger.RoleMember, "alice"},
		{c.Officer, ledger.RoleOfficer, "officer"},
	} {
		doc.Accounts = append(doc.Accounts, app.GenesisAccount{
			PublicKey: ledger.KeyBytes(a.k.PublicKey()), Institution: "test " + a.name, Roles: a.roles,
		})
	}
	if err := doc.Validate(); err != nil {
		t.Fatalf("testchain: %v", err)
	}
	c.Doc = doc
	return c
}

// File returns the chain's genesis file, approved by the admin (the
// governance threshold of test chains is 1), with a root CA for the
// validators' organisation.
func (c *Chain) File(t testing.TB) *provisioning.GenesisFile {
	t.Helper()
	ca, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := provisioning.QuickGenesis(context.Background(), c.Doc, provisioning.QuickOptions{CAKey: ca, Admins: []gm.Signer{c.Admin}})
	if err != nil {
		t.Fatalf("testchain: %v", err)
	}
	return g
}

// Peer is the validator-set entry of a key at addr.
func Peer(k *gm.PublicKey, addr string) ledger.PeerConfig {
	pk := ledger.KeyBytes(k)
	return ledger.PeerConfig{
		ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: "test", PeerID: pk.ID(),
		Address: addr, PublicKey: pk, Organisation: "test",
	}
}

// Record returns a signed record.put from signer about itself, with a
// fresh nonce and the current time.
func (c *Chain) Record(t testing.TB, signer *gm.PrivateKey, recordType string) *ledger.Transaction {
	t.Helper()
	tx, err := c.RecordAt(signer, recordType, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// RecordAt is Record with a given timestamp, returning errors.
func (c *Chain) RecordAt(signer *gm.PrivateKey, recordType string, ts int64) (*ledger.Transaction, error) {
	addr := ledger.AddressOf(signer.PublicKey())
	doc := gm.SM3(fmt.Appendf(nil, "document %d", c.nonce.Add(1)))
	data, err := txs.Encode(&txs.RecordPut{RecordType: recordType, Subject: addr, Digest: &doc})
	if err != nil {
		return nil, err
	}
	return c.Tx(signer, ledger.TxRecordPut, data, nil, ts)
}

// Tx returns a signed transaction of typ from signer's account.
func (c *Chain) Tx(signer *gm.PrivateKey, typ ledger.TxType, data []byte, recipient *ledger.Address, ts int64) (*ledger.Transaction, error) {
	tx := &ledger.Transaction{Body: ledger.TxBody{
		Version: ledger.TxVersion, ChainID: c.ID, Type: typ, Timestamp: ts, Nonce: c.nonce.Add(1),
		Signers: []ledger.PublicKeyBytes{ledger.KeyBytes(signer.PublicKey())},
		Entity:  ledger.Entity{Sender: ledger.AddressOf(signer.PublicKey()), Recipient: recipient, Data: data},
	}}
	if err := tx.Sign(context.Background(), signer); err != nil {
		return nil, err
	}
	return tx, nil
}

// SoftwareValidators returns n fresh software keys as signers.
func SoftwareValidators(t testing.TB, n int) []gm.Signer {
	t.Helper()
	out := make([]gm.Signer, n)
	for i := range out {
		k, err := gm.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = k
	}
	return out
}

// WriteGenesis writes the chain's genesis file to path, in the form a
// node loads (firmware/genesis). Tests that run nodes from files write
// their genesis here rather than encoding it themselves, so that they
// follow the genesis file format when it changes.
func (c *Chain) WriteGenesis(t testing.TB, path string) {
	t.Helper()
	if err := genesis.Write(path, c.File(t)); err != nil {
		t.Fatalf("testchain: %v", err)
	}
}
