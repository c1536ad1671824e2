package app

import (
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func applyRecordPut(o *op) error {
	_, err := putRecord(o, o.body.(*txs.RecordPut), nil)
	return err
}

// putRecord stores the record o stores under o.id.
func putRecord(o *op, b *txs.RecordPut, supersedes *gm.Digest) (*Record, error) {
	var digest gm.Digest
	if b.HasPayload() {
		digest = *o.payload
		erased, err := o.st.Get(erasedKey(digest))
		if err != nil {
			return nil, err
		}
		if erased != nil {
			return nil, reason.New(reason.PayloadErased, "this payload was masked by the regulator")
		}
	} else {
		digest = *b.Digest
	}
	if b.Kind == txs.PayloadSealed {
		regulator := false
		for _, a := range b.Readers {
			acct, err := o.env.account(o.st, a)
			if err != nil {
				return nil, err
			}
			if acct == nil {
				return nil, reason.Errorf(reason.ReaderUnknown, "reader %s", a)
			}
			regulator = regulator || acct.Roles.Has(ledger.RoleRegulator)
		}
		if o.env.filter.RequireRegulatorReader && !regulator {
			return nil, reason.New(reason.FilterRegulatorReader, "no regulator among the readers")
		}
	}
	r := &Record{
		ID: o.id, Type: b.RecordType, Subject: b.Subject, Owner: o.sender.Address, Kind: b.Kind,
		Digest: digest, Size: b.Size, Readers: b.Readers, Height: o.env.height, Time: o.env.time,
		Supersedes: supersedes,
	}
	putRecordObj(o.st, r)
	o.st.Put(subjectKey(r.Subject, r.ID), present)
	return r, nil
}

func applyRecordSupersede(o *op) error {
	b := o.body.(*txs.RecordSupersede)
	prev, err := getObj[Record](o.st, recordKey(b.Previous))
	if err != nil {
		return err
	}
	switch {
	case prev == nil:
		return reason.Errorf(reason.RecordNotFound, "record %s", b.Previous)
	case prev.Owner != o.sender.Address:
		return reason.New(reason.NotRecordOwner, "only the record's owner may supersede it")
	case prev.Masked != nil:
		return reason.New(reason.RecordMasked, "a masked record cannot be superseded")
	case prev.SupersededBy != nil:
		return reason.Errorf(reason.RecordSuperseded, "already superseded by %s", *prev.SupersededBy)
	}
	if _, err := putRecord(o, &b.Record, &prev.ID); err != nil {
		return err
	}
	id := o.id
	prev.SupersededBy = &id
	putRecordObj(o.st, prev)
	return nil
}

func applyRecordMask(o *op) error {
	b := o.body.(*txs.RecordMask)
	r, err := getObj[Record](o.st, recordKey(b.Record))
	if err != nil {
		return err
	}
	if r == nil {
		return reason.Errorf(reason.RecordNotFound, "record %s", b.Record)
	}
	if r.Masked != nil {
		return reason.New(reason.RecordMasked, "already masked")
	}
	r.Masked = &Mask{By: o.sender.Address, Time: o.env.time, Height: o.env.height, Reason: b.Reason, Tx: o.id}
	putRecordObj(o.st, r)
	if r.HasPayload() {
		if err := putObj(o.st, erasedKey(r.Digest), &Erasure{Record: r.ID, Height: o.env.height}); err != nil {
			return err
		}
		o.out.erasures = append(o.out.erasures, PayloadErasure{Record: r.ID, Payload: r.Digest})
	}
	rec := r.ID
	o.record, o.note = &rec, b.Reason
	return nil
}

func applyAuditAnchor(o *op) error {
	b := o.body.(*txs.AuditAnchor)
	last, err := getObj[AnchorState](o.st, anchorKey(b.Log))
	if err != nil {
		return err
	}
	if last == nil {
		if b.FirstSeq != 1 || !b.Prev.IsZero() {
			return reason.New(reason.AnchorGap, "the first segment of a log starts at 1 from the zero digest")
		}
	} else if b.FirstSeq != last.LastSeq+1 || b.Prev != last.Head || b.From < last.To {
		return reason.Errorf(reason.AnchorGap, "segment must start at %d from the previous head", last.LastSeq+1)
	}
	o.note = "audit log " + gm.Digest(b.Log).String()
	return putObj(o.st, anchorKey(b.Log), &AnchorState{
		LastSeq: b.LastSeq, Head: b.Head, To: b.To, Height: o.env.height, Tx: o.id,
	})
}
