package txs

import (
	"context"
	"fmt"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger"
)

// NodeAdd (gov.node-add) admits a node as a validator (通过共识机制添加节点).
// Governance: needs an administrator quorum. The new validator set takes
// effect at an epoch boundary chosen by consensus.
type NodeAdd struct {
	Peer ledger.PeerConfig `cbor:"1,keyasint" json:"peer"`
	// Certificate is the node's SM2 X.509 certificate from its
	// organisation's CA, for the peer's public key (optional).
	Certificate []byte `cbor:"2,keyasint,omitempty" json:"certificate,omitempty"`
}

// TxType implements Body.
func (*NodeAdd) TxType() ledger.TxType { return ledger.TxNodeAdd }

// Text implements Body.
func (*NodeAdd) Text() []string { return nil }

// Validate implements Body.
func (b *NodeAdd) Validate() error {
	if err := b.Peer.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	return checkCertificateKey(b.Certificate, b.Peer.PublicKey)
}

// NodeRemove (gov.node-remove) removes a validator (删除节点).
// Governance: needs an administrator quorum.
type NodeRemove struct {
	Peer gm.KeyID `cbor:"1,keyasint" json:"peerId"`
}

// TxType implements Body.
func (*NodeRemove) TxType() ledger.TxType { return ledger.TxNodeRemove }

// Text implements Body.
func (*NodeRemove) Text() []string { return nil }

// Validate implements Body.
func (b *NodeRemove) Validate() error {
	if gm.Digest(b.Peer).IsZero() {
		return bad("peer id is empty")
	}
	return nil
}

// nodeKeyDomain tags node key rotation statements.
const nodeKeyDomain = "hallmark/node-key-rotation/v1\x00"

// NodeKeyStatement says that the node holding Old now uses New. It is the
// one rotation statement of the system: the security officer's ceremony
// (hsm.Rotate, or the node rotating its own key) produces it, and the
// chain verifies it in gov.node-rotate-key. Both keys sign
// [NodeKeyStatement.SignBytes] through gm.Signer.
type NodeKeyStatement struct {
	ChainID   string                `cbor:"1,keyasint" json:"chainId"`
	Old       ledger.PublicKeyBytes `cbor:"2,keyasint" json:"oldKey"`
	New       ledger.PublicKeyBytes `cbor:"3,keyasint" json:"newKey"`
	Timestamp int64                 `cbor:"4,keyasint" json:"timestamp"` // ms, when the ceremony made it
	// Reason is the officer's note (scheduled rotation, suspected
	// compromise, ...), at most MaxRotationReasonLen bytes; optional.
	Reason string `cbor:"5,keyasint,omitempty" json:"reason,omitempty"`
}

// MaxRotationReasonLen bounds a rotation statement's reason.
const MaxRotationReasonLen = 256

// SignBytes returns the message both keys sign: a domain tag followed by
// the statement's canonical encoding.
func (s *NodeKeyStatement) SignBytes() ([]byte, error) {
	enc, err := ledger.Marshal(s)
	if err != nil {
		return nil, err
	}
	return append([]byte(nodeKeyDomain), enc...), nil
}

// SignNodeKeyStatement returns the signatures of the old and the new key
// over the statement.
func SignNodeKeyStatement(ctx context.Context, s *NodeKeyStatement, oldKey, newKey gm.Signer) (oldSig, newSig gm.Signature, err error) {
	if ledger.KeyBytes(oldKey.PublicKey()) != s.Old || ledger.KeyBytes(newKey.PublicKey()) != s.New {
		return gm.Signature{}, gm.Signature{}, fmt.Errorf("txs: signers do not match the statement's keys")
	}
	msg, err := s.SignBytes()
	if err != nil {
		return gm.Signature{}, gm.Signature{}, err
	}
	if oldSig, err = oldKey.Sign(ctx, msg); err != nil {
		return gm.Signature{}, gm.Signature{}, fmt.Errorf("txs: old key signing rotation statement: %w", err)
	}
	if newSig, err = newKey.Sign(ctx, msg); err != nil {
		return gm.Signature{}, gm.Signature{}, fmt.Errorf("txs: new key signing rotation statement: %w", err)
	}
	return oldSig, newSig, nil
}

// SignNodeRotation signs s with both keys and returns the
// gov.node-rotate-key body, checked as the chain will check it.
func SignNodeRotation(ctx context.Context, s NodeKeyStatement, oldKey, newKey gm.Signer) (*NodeRotateKey, error) {
	oldSig, newSig, err := SignNodeKeyStatement(ctx, &s, oldKey, newKey)
	if err != nil {
		return nil, err
	}
	b := &NodeRotateKey{Statement: s, OldSignature: oldSig, NewSignature: newSig}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// NodeRotateKey (gov.node-rotate-key) replaces a validator's key with the
// statement signed by both keys. Governance: needs an administrator
// quorum. The old key stops being a validator key at the epoch boundary
// where the new set takes effect.
type NodeRotateKey struct {
	Statement    NodeKeyStatement `cbor:"1,keyasint" json:"statement"`
	OldSignature gm.Signature     `cbor:"2,keyasint" json:"oldSignature"`
	NewSignature gm.Signature     `cbor:"3,keyasint" json:"newSignature"`
}

// TxType implements Body.
func (*NodeRotateKey) TxType() ledger.TxType { return ledger.TxNodeRotateKey }

// Text implements Body.
func (*NodeRotateKey) Text() []string { return nil }

// Validate implements Body: both keys parse, differ, and both signatures
// verify over the statement.
func (b *NodeRotateKey) Validate() error {
	s := &b.Statement
	if len(s.ChainID) == 0 || len(s.ChainID) > ledger.MaxChainIDLen {
		return bad("rotation statement chain id must be 1 to %d bytes", ledger.MaxChainIDLen)
	}
	if s.Timestamp <= 0 {
		return bad("rotation statement timestamp must be positive")
	}
	if len(s.Reason) > MaxRotationReasonLen || !utf8.ValidString(s.Reason) {
		return bad("rotation statement reason must be UTF-8 of at most %d bytes", MaxRotationReasonLen)
	}
	if s.Old == s.New {
		return bad("rotation to the same key")
	}
	oldKey, err := s.Old.Parse()
	if err != nil {
		return bad("old key: %v", err)
	}
	newKey, err := s.New.Parse()
	if err != nil {
		return bad("new key: %v", err)
	}
	msg, err := s.SignBytes()
	if err != nil {
		return bad("rotation statement: %v", err)
	}
	if !oldKey.Verify(msg, b.OldSignature) {
		return bad("old key's signature over the rotation statement does not verify")
	}
	if !newKey.Verify(msg, b.NewSignature) {
		return bad("new key's signature over the rotation statement does not verify")
	}
	return nil
}

// ParamsChange (gov.params) replaces the chain parameters, including the
// governance threshold. Governance: needs an administrator quorum.
type ParamsChange struct {
	Params ledger.Params `cbor:"1,keyasint" json:"params"`
}

// TxType implements Body.
func (*ParamsChange) TxType() ledger.TxType { return ledger.TxParamsChange }

// Text implements Body.
func (*ParamsChange) Text() []string { return nil }

// Validate implements Body.
func (b *ParamsChange) Validate() error {
	if err := b.Params.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	return nil
}

// ProtocolUpgrade (gov.protocol-upgrade) schedules a higher protocol
// version from a block height on. Governance: needs an administrator
// quorum.
type ProtocolUpgrade struct {
	Version          uint32 `cbor:"1,keyasint" json:"version"`
	ActivationHeight uint64 `cbor:"2,keyasint" json:"activationHeight"`
}

// TxType implements Body.
func (*ProtocolUpgrade) TxType() ledger.TxType { return ledger.TxProtocolUpgrade }

// Text implements Body.
func (*ProtocolUpgrade) Text() []string { return nil }

// Validate implements Body.
func (b *ProtocolUpgrade) Validate() error {
	if b.Version == 0 || b.ActivationHeight == 0 {
		return bad("protocol version and activation height must be positive")
	}
	return nil
}

// GovApprove (gov.approve) adds the approvals of its signers, each an
// administrator, to a pending proposal. When the approvals reach the
// threshold, the proposal executes within this transaction.
type GovApprove struct {
	Proposal gm.Digest `cbor:"1,keyasint" json:"proposal"`
}

// TxType implements Body.
func (*GovApprove) TxType() ledger.TxType { return ledger.TxGovApprove }

// Text implements Body.
func (*GovApprove) Text() []string { return nil }

// Validate implements Body.
func (b *GovApprove) Validate() error {
	if b.Proposal.IsZero() {
		return bad("proposal id is empty")
	}
	return nil
}

// FilterUpdate (gov.filter) replaces the content-filter rule set.
// Governance: needs an administrator quorum.
type FilterUpdate struct {
	Rules FilterRules `cbor:"1,keyasint" json:"rules"`
}

// TxType implements Body.
func (*FilterUpdate) TxType() ledger.TxType { return ledger.TxFilterUpdate }

// Text implements Body: the rule set's keywords are not content.
func (*FilterUpdate) Text() []string { return nil }

// Validate implements Body.
func (b *FilterUpdate) Validate() error { return b.Rules.Validate() }
