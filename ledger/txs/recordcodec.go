package txs

import (
	"math"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/internal/canon"
)

// Every node decodes a record.put body several times per transaction
// (admission, execution, the leader's block, a voter's payload check), and
// the generic decoder fills its [32]byte fields one reflected byte at a
// time. parseRecordPut reads the canonical encoding directly, as
// ledger's parseTx does for transactions; recordcodec_test.go checks it
// against the generic strict decoder.

// appendRecordPut appends the canonical encoding of b (what ledger.Marshal
// writes for it).
func appendRecordPut(dst []byte, b *RecordPut) []byte {
	fields := uint64(2)
	if b.Kind != 0 {
		fields++
	}
	if b.Digest != nil {
		fields++
	}
	if b.Size != 0 {
		fields++
	}
	if len(b.Readers) > 0 {
		fields++
	}
	dst = canon.AppendHead(dst, canon.Map, fields)
	dst = canon.AppendText(append(dst, 1), b.RecordType)
	dst = canon.AppendBytes(append(dst, 2), b.Subject[:])
	if b.Kind != 0 {
		dst = canon.AppendUint(append(dst, 3), uint64(b.Kind))
	}
	if b.Digest != nil {
		dst = canon.AppendBytes(append(dst, 4), b.Digest[:])
	}
	if b.Size != 0 {
		dst = canon.AppendUint(append(dst, 5), b.Size)
	}
	if len(b.Readers) > 0 {
		dst = canon.AppendHead(append(dst, 6), canon.Array, uint64(len(b.Readers)))
		for i := range b.Readers {
			dst = canon.AppendBytes(dst, b.Readers[i][:])
		}
	}
	return dst
}

// parseRecordPut reads a record.put body laid out exactly as
// appendRecordPut writes it (text in valid UTF-8, fixed-size byte strings
// of their size, at most MaxReaders readers, empty optional fields
// absent), and confirms by re-encoding that data is the canonical encoding
// of what it read. It reports false for anything else, which the caller
// leaves to the generic strict decoder.
func parseRecordPut(data []byte) (*RecordPut, bool) {
	p := canon.Parser{B: data}
	fields, ok := p.MapHead(2, 6)
	if !ok || !p.Key(1) {
		return nil, false
	}
	var b RecordPut
	if b.RecordType, ok = p.Text(); !ok || !p.Key(2) || !p.Fixed(b.Subject[:]) {
		return nil, false
	}
	got := uint64(2)
	if got < fields && p.Key(3) {
		k, ok := p.Uint(math.MaxUint8)
		if !ok || k == 0 {
			return nil, false
		}
		b.Kind = PayloadKind(k)
		got++
	}
	if got < fields && p.Key(4) {
		var d gm.Digest
		if !p.Fixed(d[:]) {
			return nil, false
		}
		b.Digest = &d
		got++
	}
	if got < fields && p.Key(5) {
		if b.Size, ok = p.Uint(math.MaxUint64); !ok || b.Size == 0 {
			return nil, false
		}
		got++
	}
	if got < fields && p.Key(6) {
		n, ok := p.ArrayHead(1, MaxReaders)
		if !ok {
			return nil, false
		}
		b.Readers = make([]ledger.Address, n)
		for i := range b.Readers {
			if !p.Fixed(b.Readers[i][:]) {
				return nil, false
			}
		}
		got++
	}
	if got != fields || !p.Done() {
		return nil, false
	}
	if string(appendRecordPut(make([]byte, 0, len(data)), &b)) != string(data) {
		return nil, false
	}
	return &b, true
}
