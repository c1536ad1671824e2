package txs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

func key(t testing.TB, seed string) *gm.PrivateKey {
	t.Helper()
	d := gm.SM3([]byte(seed))
	k, err := gm.NewPrivateKey(d[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// samples returns one valid body of every type.
func samples(t testing.TB) []txs.Body {
	a := ledger.Address(gm.SM3([]byte("a")))
	b := ledger.Address(gm.SM3([]byte("b")))
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	d := gm.SM3([]byte("doc"))
	k1, k2 := key(t, "k1"), key(t, "k2")
	pk := ledger.KeyBytes(k1.PublicKey())
	stmt := txs.NodeKeyStatement{ChainID: "c", Old: pk, New: ledger.KeyBytes(k2.PublicKey()), Timestamp: 5}
	os, ns, err := txs.SignNodeKeyStatement(context.Background(), &stmt, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	return []txs.Body{
		&txs.RecordPut{RecordType: "customs.declaration", Subject: a, Digest: &d},
		&txs.RecordPut{RecordType: "kyc", Subject: a, Kind: txs.PayloadSealed, Size: 200, Readers: []ledger.Address{a, b}},
		&txs.RecordSupersede{Previous: d, Record: txs.RecordPut{RecordType: "x", Subject: a, Kind: txs.PayloadPlain, Size: 3}},
		&txs.CertIssue{Holder: a, Kind: "licence", Serial: "S-1", Document: d, NotBefore: 1, NotAfter: 2},
		&txs.CertRevoke{Certificate: d, Reason: "lost"},
		&txs.GrantAccess{RecordType: "*", Until: 10},
		&txs.RevokeAccess{RecordType: "kyc"},
		&txs.AssetIssue{Symbol: "EB", Name: "电子票据", Decimals: 2, MaxSupply: 10, Initial: 5},
		&txs.AssetMint{Symbol: "EB", Amount: 1},
		&txs.AssetAllocate{Symbol: "EB", Amount: 1},
		&txs.AssetTransfer{Symbol: "EB", Amount: 1},
		&txs.AccountRegister{PublicKey: pk, Institution: "Tianjin Port", Roles: ledger.RoleKiosk},
		&txs.AccountFreeze{Reason: "r"},
		&txs.AccountUnfreeze{Reason: "r"},
		&txs.AccountRotateKey{NewKey: pk},
		&txs.AccountSetRoles{Roles: ledger.RoleMember},
		&txs.NodeAdd{Peer: ledger.PeerConfig{ProtocolVersion: "1", SoftwareVersion: "1", PeerID: pk.ID(), Address: "198.18.0.1:1", PublicKey: pk}},
		&txs.NodeRemove{Peer: pk.ID()},
		&txs.NodeRotateKey{Statement: stmt, OldSignature: os, NewSignature: ns},
		&txs.ParamsChange{Params: ledger.DefaultParams()},
		&txs.ProtocolUpgrade{Version: 2, ActivationHeight: 9},
		&txs.GovApprove{Proposal: d},
		&txs.FilterUpdate{Rules: txs.FilterRules{BlockedSenders: []ledger.Address{a, b}, Keywords: []string{"a", "b"}, MaxMemoBytes: 9}},
		&txs.RecordMask{Record: d, Reason: "order"},
		&txs.AuditAnchor{Log: gm.KeyID(d), FirstSeq: 1, LastSeq: 2, From: 1, To: 2, Head: d},
	}
}

func TestEveryTypeHasABody(t *testing.T) {
	covered := map[ledger.TxType]bool{}
	for _, b := range samples(t) {
		covered[b.TxType()] = true
		enc, err := txs.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := txs.Decode(b.TxType(), enc)
		if err != nil {
			t.Fatalf("%s: %v", b.TxType(), err)
		}
		again, _ := txs.Encode(got)
		if !bytes.Equal(again, enc) {
			t.Fatalf("%s: round trip changed the encoding", b.TxType())
		}
	}
	for _, tt := range ledger.TxTypes() {
		if txs.New(tt) == nil || !covered[tt] {
			t.Errorf("type %s has no body or no sample", tt)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	enc, _ := txs.Encode(&txs.AssetMint{Symbol: "EB", Amount: 1})
	for _, tc := range []struct {
		name string
		typ  ledger.TxType
		data []byte
	}{
		{"empty", ledger.TxAssetMint, nil},
		{"trailing byte", ledger.TxAssetMint, append(bytes.Clone(enc), 0)},
		{"unknown field", ledger.TxAssetMint, []byte{0xa3, 0x01, 0x62, 'E', 'B', 0x02, 0x01, 0x09, 0x01}},
		{"zero amount", ledger.TxAssetMint, []byte{0xa2, 0x01, 0x62, 'E', 'B', 0x02, 0x00}},
		{"wrong type", ledger.TxAccountFreeze, enc},
		{"no such type", 0x7777, enc},
		{"too large", ledger.TxAssetMint, make([]byte, ledger.MaxDataBytes+1)},
	} {
		if _, err := txs.Decode(tc.typ, tc.data); !errors.Is(err, txs.ErrBadBody) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	a := ledger.Address(gm.SM3([]byte("a")))
	d := gm.SM3([]byte("d"))
	for _, tc := range []struct {
		name string
		b    txs.Body
	}{
		{"upper-case record type", &txs.RecordPut{RecordType: "Kyc", Subject: a, Digest: &d}},
		{"record type starting with a dot", &txs.RecordPut{RecordType: ".kyc", Subject: a, Digest: &d}},
		{"zero subject", &txs.RecordPut{RecordType: "kyc", Digest: &d}},
		{"digest-only without digest", &txs.RecordPut{RecordType: "kyc", Subject: a}},
		{"plain with a body digest", &txs.RecordPut{RecordType: "kyc", Subject: a, Kind: txs.PayloadPlain, Size: 1, Digest: &d}},
		{"plain without size", &txs.RecordPut{RecordType: "kyc", Subject: a, Kind: txs.PayloadPlain}},
		{"sealed without readers", &txs.RecordPut{RecordType: "kyc", Subject: a, Kind: txs.PayloadSealed, Size: 1}},
		{"readers out of order", &txs.RecordPut{RecordType: "kyc", Subject: a, Kind: txs.PayloadSealed, Size: 1, Readers: []ledger.Address{a, a}}},
		{"unknown kind", &txs.RecordPut{RecordType: "kyc", Subject: a, Kind: 7, Size: 1}},
		{"lower-case symbol", &txs.AssetMint{Symbol: "eb", Amount: 1}},
		{"long symbol", &txs.AssetTransfer{Symbol: string(bytes.Repeat([]byte("A"), 33)), Amount: 1}},
		{"too many decimals", &txs.AssetIssue{Symbol: "A", Name: "a", Decimals: 19}},
		{"no asset name", &txs.AssetIssue{Symbol: "A"}},
		{"no roles", &txs.AccountRegister{PublicKey: ledger.KeyBytes(key(t, "x").PublicKey()), Institution: "i"}},
		{"key not on the curve", &txs.AccountRotateKey{NewKey: ledger.PublicKeyBytes{1, 2, 3}}},
		{"unknown role bits", &txs.AccountSetRoles{Roles: 1 << 20}},
		{"reversed validity", &txs.CertIssue{Holder: a, Kind: "k", Document: d, NotBefore: 5, NotAfter: 5}},
		{"empty revoke reason", &txs.CertRevoke{Certificate: d}},
		{"bad grant class", &txs.GrantAccess{RecordType: "", Until: 1}},
		{"rotation to the same key", &txs.NodeRotateKey{Statement: txs.NodeKeyStatement{ChainID: "c", Timestamp: 1}}},
		{"zero protocol version", &txs.ProtocolUpgrade{ActivationHeight: 1}},
		{"anchor range reversed", &txs.AuditAnchor{Log: gm.KeyID(d), FirstSeq: 3, LastSeq: 2, From: 1, To: 1, Head: d}},
		{"keyword too long", &txs.FilterUpdate{Rules: txs.FilterRules{Keywords: []string{string(bytes.Repeat([]byte("a"), 65))}}}},
		{"limit above the format's", &txs.FilterUpdate{Rules: txs.FilterRules{MaxPayloadBytes: ledger.MaxPayloadBytes + 1}}},
	} {
		if err := tc.b.Validate(); !errors.Is(err, txs.ErrBadBody) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestFilterMatching(t *testing.T) {
	a, b := ledger.Address(gm.SM3([]byte("1"))), ledger.Address(gm.SM3([]byte("2")))
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	r := txs.FilterRules{BlockedSenders: []ledger.Address{a}, BlockedRecordTypes: []string{"ads", "gambling"}, Keywords: []string{"bad", "违禁"}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if !r.SenderBlocked(a) || r.SenderBlocked(b) {
		t.Error("sender list")
	}
	if !r.RecordTypeBlocked("gambling") || r.RecordTypeBlocked("gamb") {
		t.Error("type list")
	}
	for s, want := range map[string]string{"a BAD thing": "bad", "含违禁内容": "违禁", "fine": "", "": ""} {
		if got := r.MatchText(s); got != want {
			t.Errorf("MatchText(%q) = %q", s, got)
		}
	}
	// Non-ASCII upper case does not fold (Unicode tables must not decide
	// consensus), and binary payloads keep their bytes.
	if r.MatchText("ΒAD") != "" {
		t.Error("folded a non-ASCII letter")
	}
	if r.MatchBytes([]byte{0xff, 'B', 'a', 'D', 0xfe}) != "bad" {
		t.Error("binary payload not matched")
	}
}

func TestNodeKeyStatement(t *testing.T) {
	k1, k2 := key(t, "k1"), key(t, "k2")
	s := txs.NodeKeyStatement{ChainID: "c", Old: ledger.KeyBytes(k1.PublicKey()), New: ledger.KeyBytes(k2.PublicKey()), Timestamp: 5}
	if _, _, err := txs.SignNodeKeyStatement(context.Background(), &s, k2, k1); err == nil {
		t.Fatal("signed with swapped keys")
	}
	os, ns, err := txs.SignNodeKeyStatement(context.Background(), &s, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := s.SignBytes()
	if !bytes.HasPrefix(msg, []byte("hallmark/node-key-rotation/v1\x00")) {
		t.Fatal("no domain tag")
	}
	b := txs.NodeRotateKey{Statement: s, OldSignature: os, NewSignature: ns}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	b.Statement.Timestamp++
	if err := b.Validate(); err == nil {
		t.Fatal("altered statement verified")
	}

	// The reason is signed too, and bounded.
	s.Reason = "scheduled rotation"
	r, err := txs.SignNodeRotation(context.Background(), s, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	r.Statement.Reason = "suspected compromise"
	if err := r.Validate(); err == nil {
		t.Fatal("altered reason verified")
	}
	s.Reason = strings.Repeat("x", txs.MaxRotationReasonLen+1)
	if _, err := txs.SignNodeRotation(context.Background(), s, k1, k2); !errors.Is(err, txs.ErrBadBody) {
		t.Fatalf("overlong reason: %v", err)
	}
}

// FuzzDecodeBody: the body decoder never panics, and what it accepts is
// canonical and valid.
func FuzzDecodeBody(f *testing.F) {
	types := ledger.TxTypes()
	for _, b := range samples(f) {
		enc, _ := txs.Encode(b)
		for i, tt := range types {
			if tt == b.TxType() {
				f.Add(uint8(i), enc)
			}
		}
	}
	f.Add(uint8(0), []byte{0xa0})
	f.Fuzz(func(t *testing.T, ti uint8, data []byte) {
		tt := types[int(ti)%len(types)]
		b, err := txs.Decode(tt, data)
		if err != nil {
			if !errors.Is(err, txs.ErrBadBody) {
				t.Fatalf("error not wrapped: %v", err)
			}
			return
		}
		if b.TxType() != tt {
			t.Fatalf("decoded %s as %s", tt, b.TxType())
		}
		again, err := txs.Encode(b)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input: %v", err)
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("accepted an invalid body: %v", err)
		}
		_ = b.Text()
	})
}
