package kiosk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

// A node signs a receipt for every transaction datagram, far too many for a
// hardware key that takes tens of milliseconds per signature. It therefore
// signs receipts with a software key it generates at start, and certifies
// that key once with its identity key (in the TPM): a delegation. A kiosk
// that knows the node's identity key from enrolment fetches the delegation
// (the node's status API publishes it), checks it, and then checks receipts
// against the delegated key.

// delegationDomain separates delegation signatures from every other SM2
// signature a node identity makes.
const delegationDomain = "hallmark/receipt-key/v1\x00"

// DelegationVersion is the only delegation format version this build
// speaks.
const DelegationVersion = 1

// ErrDelegation is returned for a delegation that does not verify, names
// another node or chain, or is outside its validity.
var ErrDelegation = errors.New("kiosk: invalid receipt-key delegation")

// DelegationBody is what the node identity signs: that ReceiptKey may sign
// receipts for Node on ChainID between NotBefore and NotAfter (ms since
// 1970 UTC).
type DelegationBody struct {
	Version    uint16                `cbor:"1,keyasint" json:"version"`
	ChainID    string                `cbor:"2,keyasint" json:"chainId"`
	Node       ledger.PublicKeyBytes `cbor:"3,keyasint" json:"node"`
	ReceiptKey ledger.PublicKeyBytes `cbor:"4,keyasint" json:"receiptKey"`
	NotBefore  int64                 `cbor:"5,keyasint" json:"notBefore"`
	NotAfter   int64                 `cbor:"6,keyasint" json:"notAfter"`
}

// Delegation is a signed DelegationBody. Its canonical CBOR
// {1: body, 2: signature} is what the node publishes.
type Delegation struct {
	Body      DelegationBody `cbor:"1,keyasint" json:"body"`
	Signature gm.Signature   `cbor:"2,keyasint" json:"signature"`
}

// DelegationSignBytes returns the message the node identity signs:
// the domain tag followed by the body's canonical encoding.
func DelegationSignBytes(b *DelegationBody) ([]byte, error) {
	enc, err := ledger.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("kiosk: encoding delegation: %w", err)
	}
	return append([]byte(delegationDomain), enc...), nil
}

// SignDelegation has the node identity certify receiptKey for the
// validity period [notBefore, notAfter].
func SignDelegation(ctx context.Context, identity gm.Signer, chainID string, receiptKey *gm.PublicKey, notBefore, notAfter time.Time) (*Delegation, error) {
	d := &Delegation{Body: DelegationBody{
		Version: DelegationVersion, ChainID: chainID,
		Node:       ledger.KeyBytes(identity.PublicKey()),
		ReceiptKey: ledger.KeyBytes(receiptKey),
		NotBefore:  notBefore.UnixMilli(), NotAfter: notAfter.UnixMilli(),
	}}
	if err := d.Body.check(); err != nil {
		return nil, err
	}
	msg, err := DelegationSignBytes(&d.Body)
	if err != nil {
		return nil, err
	}
	if d.Signature, err = identity.Sign(ctx, msg); err != nil {
		return nil, fmt.Errorf("kiosk: signing delegation: %w", err)
	}
	return d, nil
}

func (b *DelegationBody) check() error {
	switch {
	case b.Version != DelegationVersion:
		return fmt.Errorf("%w: version %d", ErrDelegation, b.Version)
	case len(b.ChainID) == 0 || len(b.ChainID) > ledger.MaxChainIDLen:
		return fmt.Errorf("%w: chain id of %d bytes", ErrDelegation, len(b.ChainID))
	case b.NotAfter <= b.NotBefore:
		return fmt.Errorf("%w: empty validity period", ErrDelegation)
	}
	return nil
}

// Encode returns the canonical encoding.
func (d *Delegation) Encode() ([]byte, error) { return ledger.Marshal(d) }

// ParseDelegation strictly decodes a delegation; [Delegation.Verify]
// checks it.
func ParseDelegation(b []byte) (*Delegation, error) {
	if len(b) > 1024 {
		return nil, fmt.Errorf("%w: %d bytes", ErrDelegation, len(b))
	}
	var d Delegation
	if err := ledger.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDelegation, err)
	}
	return &d, nil
}

// Verify checks that node (the identity key the kiosk knows from
// enrolment) signed the delegation for chainID, that it is valid at now,
// and returns the delegated receipt key.
func (d *Delegation) Verify(node *gm.PublicKey, chainID string, now time.Time) (*gm.PublicKey, error) {
	if err := d.Body.check(); err != nil {
		return nil, err
	}
	if d.Body.ChainID != chainID {
		return nil, fmt.Errorf("%w: for chain %q, not %q", ErrDelegation, d.Body.ChainID, chainID)
	}
	if d.Body.Node != ledger.KeyBytes(node) {
		return nil, fmt.Errorf("%w: made by node %s, not %s", ErrDelegation, d.Body.Node.ID(), node.ID())
	}
	if ms := now.UnixMilli(); ms < d.Body.NotBefore || ms > d.Body.NotAfter {
		return nil, fmt.Errorf("%w: valid %s to %s, now is %s", ErrDelegation,
			time.UnixMilli(d.Body.NotBefore).UTC().Format(time.RFC3339), time.UnixMilli(d.Body.NotAfter).UTC().Format(time.RFC3339),
			now.UTC().Format(time.RFC3339))
	}
	msg, err := DelegationSignBytes(&d.Body)
	if err != nil {
		return nil, err
	}
	if !node.Verify(msg, d.Signature) {
		return nil, fmt.Errorf("%w: signature does not verify under the node key", ErrDelegation)
	}
	key, err := d.Body.ReceiptKey.Parse()
	if err != nil {
		return nil, fmt.Errorf("%w: receipt key: %v", ErrDelegation, err)
	}
	return key, nil
}
