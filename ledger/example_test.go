package ledger_test

import (
	"encoding/hex"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

// exampleKey is the fixed private key of the worked example in
// docs/DATA-FORMAT.md. Never use it for anything else.
const exampleKey = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"

// The canonical body bytes and id of the worked example. If the encoding
// changes, this test fails, and docs/DATA-FORMAT.md must change with it.
const (
	exampleBodyHex = "a70101026d68616c6c6d61726b2d64656d6f03190101041b0000018bcfe56800050106815840" +
		"09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020" +
		"ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13" +
		"07a30158203d92bed6d685f38bff5ccd052119e1ecc071c2f3d915245c8d9c5a2cb131a89d" +
		"03466164642d3130046ce8aeb0e5bd95e7a4bae4be8b"
	exampleIDHex = "a7e9c24a8a0222ed63b2950e4ccab00000d1b7f0d0de836ed641bb8be0dd52aa"
)

func exampleTx(t *testing.T) (ledger.Transaction, *gm.PrivateKey) {
	t.Helper()
	d, _ := hex.DecodeString(exampleKey)
	key, err := gm.NewPrivateKey(d)
	if err != nil {
		t.Fatal(err)
	}
	tx := ledger.Transaction{Body: ledger.TxBody{
		Version:   ledger.TxVersion,
		ChainID:   "hallmark-demo",
		Type:      ledger.TxRecordPut,
		Timestamp: 1_700_000_000_000,
		Nonce:     1,
		Signers:   []ledger.PublicKeyBytes{ledger.KeyBytes(key.PublicKey())},
		Entity: ledger.Entity{
			Sender: ledger.AddressOf(key.PublicKey()),
			Data:   []byte("add-10"),
			Memo:   "记录示例",
		},
	}}
	return tx, key
}

func TestDataFormatExample(t *testing.T) {
	tx, key := exampleTx(t)
	body, err := ledger.Marshal(&tx.Body)
	if err != nil {
		t.Fatal(err)
	}
	id := tx.ID()
	t.Logf("public key (01_001): %x", key.PublicKey().Bytes())
	t.Logf("sender address = SM3(public key): %x", tx.Body.Entity.Sender[:])
	t.Logf("canonical body (%d bytes): %x", len(body), body)
	t.Logf("transaction id (03_001) = SM3(body): %x", id[:])
	t.Logf("message signed: %x", ledger.SignBytes(id))
	if err := tx.Sign(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if err := tx.VerifySignatures(); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(body); got != exampleBodyHex {
		t.Errorf("canonical body changed:\n got %s\nwant %s", got, exampleBodyHex)
	}
	if got := hex.EncodeToString(id[:]); got != exampleIDHex {
		t.Errorf("transaction id changed:\n got %s\nwant %s", got, exampleIDHex)
	}
}
