package app

import (
	"hallmark/ledger/internal/canon"
)

// appendRecord appends the canonical encoding of r: what ledger.Marshal
// writes for it through reflection, written directly, because execution
// and the admission dry run store a record for every record.put.
// recordcodec_test.go checks the two agree.
func appendRecord(dst []byte, r *Record) []byte {
	fields := uint64(7) // ID, Type, Subject, Owner, Digest, Height, Time
	for _, present := range []bool{r.Kind != 0, r.Size != 0, len(r.Readers) > 0, r.Supersedes != nil, r.SupersededBy != nil, r.Masked != nil} {
		if present {
			fields++
		}
	}
	dst = canon.AppendHead(dst, canon.Map, fields)
	dst = canon.AppendBytes(append(dst, 1), r.ID[:])
	dst = canon.AppendText(append(dst, 2), r.Type)
	dst = canon.AppendBytes(append(dst, 3), r.Subject[:])
	dst = canon.AppendBytes(append(dst, 4), r.Owner[:])
	if r.Kind != 0 {
		dst = canon.AppendUint(append(dst, 5), uint64(r.Kind))
	}
	dst = canon.AppendBytes(append(dst, 6), r.Digest[:])
	if r.Size != 0 {
		dst = canon.AppendUint(append(dst, 7), r.Size)
	}
	if len(r.Readers) > 0 {
		dst = canon.AppendHead(append(dst, 8), canon.Array, uint64(len(r.Readers)))
		for i := range r.Readers {
			dst = canon.AppendBytes(dst, r.Readers[i][:])
		}
	}
	dst = canon.AppendUint(append(dst, 9), r.Height)
	dst = canon.AppendInt(append(dst, 10), r.Time)
	if r.Supersedes != nil {
		dst = canon.AppendBytes(append(dst, 11), r.Supersedes[:])
	}
	if r.SupersededBy != nil {
		dst = canon.AppendBytes(append(dst, 12), r.SupersededBy[:])
	}
	if m := r.Masked; m != nil {
		dst = canon.AppendHead(append(dst, 13), canon.Map, 5)
		dst = canon.AppendBytes(append(dst, 1), m.By[:])
		dst = canon.AppendInt(append(dst, 2), m.Time)
		dst = canon.AppendUint(append(dst, 3), m.Height)
		dst = canon.AppendText(append(dst, 4), m.Reason)
		dst = canon.AppendBytes(append(dst, 5), m.Tx[:])
	}
	return dst
}

// putRecordObj stores r at its key.
func putRecordObj(st *Overlay, r *Record) {
	size := 256 + len(r.Type) + 34*len(r.Readers)
	if r.Masked != nil {
		size += len(r.Masked.Reason)
	}
	st.Put(recordKey(r.ID), appendRecord(make([]byte, 0, size), r))
}
