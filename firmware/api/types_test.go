package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

// A client decodes the status the node writes: every field comes back.
func TestStatusJSONRoundTrip(t *testing.T) {
	k, err := gm.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub ledger.PublicKeyBytes
	copy(pub[:], k.PublicKey().Bytes())
	in := Status{
		ChainID: "hallmark-test", Version: "1.2.3", KeyID: k.PublicKey().ID(), PublicKey: pub,
		Custody: "tpm", Role: "validator", Epoch: 2, Round: 17, HighQCRound: 16,
		CommittedHeight: 15, CommittedBlock: ledger.BlockID{1, 2, 3},
		Peers:    []PeerStatus{{KeyID: k.PublicKey().ID(), Address: "198.18.0.2:7400", Connected: true}},
		FastPath: "twin", Storage: StorageStatus{TipHeight: 15, TipID: ledger.BlockID{1, 2, 3}, TipTime: 1700000000000},
		Mempool: MempoolStatus{Transactions: 3, Bytes: 900}, Bandwidth: Bandwidth{InBytes: 10, OutBytes: 20},
		ReceiptKey: pub, ReceiptDelegation: hexBytes{0xa1, 0x01, 0xff},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"receiptDelegation":"a101ff"`) {
		t.Fatalf("receiptDelegation is not lower-case hex: %s", b)
	}
	var out Status
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the status:\n in %+v\nout %+v", in, out)
	}
	if err := json.Unmarshal([]byte(`{"receiptDelegation":"zz"}`), &out); err == nil {
		t.Fatal("a non-hex receiptDelegation decoded")
	}
}
