package app_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// TestTransactionsDoc keeps docs/TRANSACTIONS.md true: every type has a
// section with an example whose CBOR decodes as that type's body, and
// every reason code is listed with its number and name.
func TestTransactionsDoc(t *testing.T) {
	f, err := os.Open("../../docs/TRANSACTIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var text strings.Builder
	examples := map[ledger.TxType]int{}
	var current ledger.TxType
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		text.WriteString(line + "\n")
		if rest, ok := strings.CutPrefix(line, "type: "); ok {
			name, _, _ := strings.Cut(rest, " ")
			if current, err = ledger.ParseTxType(name); err != nil {
				t.Fatalf("example of unknown type %q", name)
			}
		}
		if rest, ok := strings.CutPrefix(line, "data (CBOR hex): "); ok {
			data, err := hex.DecodeString(rest)
			if err != nil {
				t.Fatalf("%s example: %v", current, err)
			}
			if _, err := txs.Decode(current, data); err != nil {
				t.Fatalf("%s example does not decode: %v", current, err)
			}
			examples[current]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	doc := text.String()
	for _, tt := range ledger.TxTypes() {
		if !strings.Contains(doc, fmt.Sprintf("### %s (0x%04x)", tt, uint16(tt))) {
			t.Errorf("no section for %s", tt)
		}
		if examples[tt] == 0 {
			t.Errorf("no example for %s", tt)
		}
	}
	for _, c := range reason.Codes() {
		if !strings.Contains(doc, fmt.Sprintf("| %d | `%s` |", uint16(c), c)) {
			t.Errorf("reason code %d %s is not in the table", c, c)
		}
	}
}
