package storage

import (
	"testing"

	"hallmark/gm"
	"hallmark/ledger"
)

// Every stored record is read back from a file that a disk, an operator or
// an attacker may have altered: the decoders must return an error, never
// panic, whatever the bytes.
func FuzzStoredRecords(f *testing.F) {
	h := ledger.Header{Version: ledger.HeaderVersion, ChainID: "c", Height: 3, PrevHash: gm.SM3([]byte("p"))}
	raw, err := ledger.EncodeHeader(&h)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeBlockRecord(gm.SM3(raw), 4, 1, raw))
	f.Add(encodeBlockRecord(gm.SM3(raw), 4, -1, raw))
	f.Add(payloadLoc{Segment: 1, Offset: 10, Length: 5, Height: 3}.encode())
	f.Add(encodeTxLoc(7, 2))
	f.Add(encodeStateValue(9, []byte("v")))
	f.Add(encodeBodyValue([]byte("body")))
	mask, _ := ledger.Marshal(&Mask{Digest: gm.SM3(nil), Time: 1, By: "r"})
	f.Add(mask)
	head, _ := ledger.Marshal(&auditHead{NextSeq: 1})
	f.Add(head)
	f.Add(auditTimeKey(-5, 3))
	f.Fuzz(func(t *testing.T, v []byte) {
		if r, err := decodeBlockRecord(3, v); err == nil {
			if r.Header.Height != 3 || gm.SM3(v[blockRecordPrefix:]) != r.ID {
				t.Fatal("accepted a block record that does not check out")
			}
		}
		decodePayloadLoc(v)
		decodeTxLoc(v)
		decodeStateValue(v)
		checkBodyValue(3, v, uint64(max(0, len(v)-gm.DigestSize)))
		decodeMask(gm.SM3(nil), v)
		var ah auditHead
		_ = ledger.Unmarshal(v, &ah)
		if ms, seq, err := parseAuditTimeKey(v); err == nil {
			if string(auditTimeKey(ms, seq)) != string(v) {
				t.Fatal("audit time key does not round-trip")
			}
		}
	})
}
