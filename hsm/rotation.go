package hsm

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger"
)

// RotationDomain is the domain tag in front of every signed rotation
// statement body.
const RotationDomain = "hallmark/key-rotation/v1\x00"

// RotationVersion is the only statement version this code reads.
const RotationVersion = 1

// Limits on a rotation statement's fields.
const (
	MaxRotationReason = 256
	MaxRotationBytes  = 1024
)

// ErrRotation is wrapped by every rotation-statement failure.
var ErrRotation = errors.New("invalid key rotation statement")

// RotationBody is what both keys sign: the old key hands its role to the
// new key, and the new key accepts it. Ledger key-rotation transactions
// carry the whole statement.
type RotationBody struct {
	Version   uint16                `cbor:"1,keyasint" json:"version"`
	ChainID   string                `cbor:"2,keyasint" json:"chainId"` // binds the statement to one chain; may be empty before genesis
	OldKey    ledger.PublicKeyBytes `cbor:"3,keyasint" json:"oldKey"`
	NewKey    ledger.PublicKeyBytes `cbor:"4,keyasint" json:"newKey"`
	Custody   Kind                  `cbor:"5,keyasint" json:"custody"`   // the new key's custody (the old key's too)
	Timestamp int64                 `cbor:"6,keyasint" json:"timestamp"` // ms since 1970 UTC
	Reason    string                `cbor:"7,keyasint" json:"reason,omitempty"`
}

// RotationStatement is the body with the old key's and the new key's
// signatures over RotationDomain ‖ canonical CBOR of the body.
type RotationStatement struct {
	Body   RotationBody `cbor:"1,keyasint" json:"body"`
	OldSig gm.Signature `cbor:"2,keyasint" json:"oldSignature"`
	NewSig gm.Signature `cbor:"3,keyasint" json:"newSignature"`
}

// SignBytes returns the message both keys sign.
func (b *RotationBody) SignBytes() ([]byte, error) {
	enc, err := ledger.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append([]byte(RotationDomain), enc...), nil
}

func (b *RotationBody) check() error {
	if b.Version != RotationVersion {
		return fmt.Errorf("%w: version %d", ErrRotation, b.Version)
	}
	if len(b.ChainID) > ledger.MaxChainIDLen {
		return fmt.Errorf("%w: chain id of %d bytes", ErrRotation, len(b.ChainID))
	}
	if len(b.Reason) > MaxRotationReason || !utf8.ValidString(b.Reason) {
		return fmt.Errorf("%w: reason must be UTF-8 of at most %d bytes", ErrRotation, MaxRotationReason)
	}
	if !b.Custody.valid() {
		return fmt.Errorf("%w: custody %q", ErrRotation, b.Custody)
	}
	if b.OldKey == b.NewKey {
		return fmt.Errorf("%w: old and new key are the same", ErrRotation)
	}
	if b.Timestamp <= 0 {
		return fmt.Errorf("%w: timestamp %d", ErrRotation, b.Timestamp)
	}
	return nil
}

// SignRotation builds and signs a statement: old signs first, then next.
func SignRotation(ctx context.Context, body RotationBody, old, next gm.Signer) (*RotationStatement, error) {
	body.Version = RotationVersion
	body.OldKey = ledger.KeyBytes(old.PublicKey())
	body.NewKey = ledger.KeyBytes(next.PublicKey())
	if err := body.check(); err != nil {
		return nil, err
	}
	msg, err := body.SignBytes()
	if err != nil {
		return nil, err
	}
	st := &RotationStatement{Body: body}
	if st.OldSig, err = old.Sign(ctx, msg); err != nil {
		return nil, fmt.Errorf("hsm: old key signing the rotation: %w", err)
	}
	if st.NewSig, err = next.Sign(ctx, msg); err != nil {
		return nil, fmt.Errorf("hsm: new key signing the rotation: %w", err)
	}
	return st, nil
}

// Verify checks the statement's fields and both signatures.
func (st *RotationStatement) Verify() error {
	if err := st.Body.check(); err != nil {
		return err
	}
	oldKey, err := st.Body.OldKey.Parse()
	if err != nil {
		return fmt.Errorf("%w: old key: %v", ErrRotation, err)
	}
	newKey, err := st.Body.NewKey.Parse()
	if err != nil {
		return fmt.Errorf("%w: new key: %v", ErrRotation, err)
	}
	msg, err := st.Body.SignBytes()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRotation, err)
	}
	if !oldKey.Verify(msg, st.OldSig) {
		return fmt.Errorf("%w: old key's signature does not verify", ErrRotation)
	}
	if !newKey.Verify(msg, st.NewSig) {
		return fmt.Errorf("%w: new key's signature does not verify", ErrRotation)
	}
	return nil
}

// Marshal returns the statement's canonical CBOR.
func (st *RotationStatement) Marshal() ([]byte, error) { return ledger.Marshal(st) }

// ParseRotation decodes a canonical statement and verifies it.
func ParseRotation(b []byte) (*RotationStatement, error) {
	if len(b) > MaxRotationBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrRotation, len(b), MaxRotationBytes)
	}
	var st RotationStatement
	if err := ledger.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRotation, err)
	}
	if err := st.Verify(); err != nil {
		return nil, err
	}
	return &st, nil
}
