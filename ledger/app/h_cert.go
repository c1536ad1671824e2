package app

import (
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

func applyCertIssue(o *op) error {
	b := o.body.(*txs.CertIssue)
	existing, err := certByDocument(o.st, b.Document)
	if err != nil {
		return err
	}
	if existing != nil && existing.Revoked == nil && existing.NotAfter > o.env.time {
		return reason.Errorf(reason.CertDuplicate, "certificate %s is live for this document", existing.ID)
	}
	c := &Certificate{
		ID: o.id, Issuer: o.sender.Address, Holder: b.Holder, Kind: b.Kind, Serial: b.Serial,
		Document: b.Document, NotBefore: b.NotBefore, NotAfter: b.NotAfter, Height: o.env.height, Time: o.env.time,
	}
	if err := putObj(o.st, certKey(c.ID), c); err != nil {
		return err
	}
	o.st.Put(certDocKey(b.Document), c.ID[:])
	return nil
}

func certByDocument(v View, doc gm.Digest) (*Certificate, error) {
	id, err := v.Get(certDocKey(doc))
	if err != nil || id == nil {
		return nil, err
	}
	return getObj[Certificate](v, certKey(gm.Digest(id)))
}

func applyCertRevoke(o *op) error {
	b := o.body.(*txs.CertRevoke)
	c, err := getObj[Certificate](o.st, certKey(b.Certificate))
	if err != nil {
		return err
	}
	switch {
	case c == nil:
		return reason.Errorf(reason.CertNotFound, "certificate %s", b.Certificate)
	case c.Issuer != o.sender.Address && !o.sender.Roles.Has(ledger.RoleRegulator):
		return reason.New(reason.NotCertIssuer, "only the issuer or a regulator may revoke")
	case c.Revoked != nil:
		return reason.New(reason.CertRevoked, "already revoked")
	}
	c.Revoked = &Revocation{By: o.sender.Address, Time: o.env.time, Height: o.env.height, Reason: b.Reason}
	holder := c.Holder
	o.target, o.note = &holder, b.Reason
	return putObj(o.st, certKey(c.ID), c)
}

// CertStatus is the answer to a certificate verification.
type CertStatus uint8

// Certificate statuses.
const (
	CertUnknown     CertStatus = iota // no certificate for this digest or id
	CertValid                         // issued, in its validity period, not revoked
	CertRevokedStat                   // revoked
	CertExpired                       // past its notAfter
	CertNotYetValid                   // before its notBefore
)

var certStatusNames = [...]string{"unknown", "valid", "revoked", "expired", "not-yet-valid"}

// String returns the status's name.
func (s CertStatus) String() string {
	if int(s) < len(certStatusNames) {
		return certStatusNames[s]
	}
	return "invalid"
}

// MarshalText renders the status by name.
func (s CertStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Status returns the certificate's status at time at (ms).
func (c *Certificate) Status(at int64) CertStatus {
	switch {
	case c.Revoked != nil:
		return CertRevokedStat
	case at < c.NotBefore:
		return CertNotYetValid
	case at >= c.NotAfter:
		return CertExpired
	}
	return CertValid
}

// VerifyCertificate answers whether a certificate document, named by its
// SM3 digest, is valid at time at (ms): valid, revoked, expired, not yet
// valid, or unknown. It returns the latest certificate issued for the
// document, if any.
func VerifyCertificate(v View, document gm.Digest, at int64) (CertStatus, *Certificate, error) {
	c, err := certByDocument(v, document)
	if err != nil || c == nil {
		return CertUnknown, nil, err
	}
	return c.Status(at), c, nil
}

func applyGrantAccess(o *op) error {
	b := o.body.(*txs.GrantAccess)
	grantee := *o.recipient
	if grantee == o.sender.Address {
		return reason.New(reason.SelfAction, "a subject needs no grant to read its own records")
	}
	acct, err := getAccount(o.st, grantee)
	if err != nil {
		return err
	}
	if acct == nil {
		return reason.Errorf(reason.GranteeUnknown, "grantee %s", grantee)
	}
	if acct.Frozen {
		return reason.Errorf(reason.GranteeFrozen, "grantee %s", grantee)
	}
	if b.Until <= o.env.time {
		return reason.New(reason.GrantExpired, "the grant would end before it starts")
	}
	g := &Grant{
		ID: o.id, Subject: o.sender.Address, Grantee: grantee, Class: b.RecordType, Until: b.Until,
		Height: o.env.height, Time: o.env.time,
	}
	if err := putObj(o.st, grantKey(g.Subject, grantee, g.Class), g); err != nil {
		return err
	}
	o.st.Put(granteeKey(grantee, g.Subject, g.Class), present)
	id := g.ID
	o.target, o.grant, o.note = &grantee, &id, "class "+g.Class
	return nil
}

func applyRevokeAccess(o *op) error {
	b := o.body.(*txs.RevokeAccess)
	grantee := *o.recipient
	g, err := getObj[Grant](o.st, grantKey(o.sender.Address, grantee, b.RecordType))
	if err != nil {
		return err
	}
	if g == nil {
		return reason.Errorf(reason.GrantNotFound, "no grant to %s for %q", grantee, b.RecordType)
	}
	o.st.Delete(grantKey(o.sender.Address, grantee, b.RecordType))
	o.st.Delete(granteeKey(grantee, o.sender.Address, b.RecordType))
	id := g.ID
	o.target, o.grant, o.note = &grantee, &id, "class "+g.Class
	return nil
}
