package ledger

import (
	"fmt"
	"net"
	"unicode/utf8"

	"hallmark/gm"
)

// Versions this build speaks.
const (
	// ProtocolVersion is the consensus and wire protocol version (06_001).
	ProtocolVersion = "1"
)

// PeerConfig is the spec's config object (06) for one node.
type PeerConfig struct {
	ProtocolVersion string         `cbor:"1,keyasint" json:"protocolVersion"` // 06_001
	SoftwareVersion string         `cbor:"2,keyasint" json:"softwareVersion"` // 06_002
	PeerID          gm.KeyID       `cbor:"3,keyasint" json:"peerId"`          // 06_003, key id of PublicKey
	Address         string         `cbor:"4,keyasint" json:"peerAddress"`     // 06_004, host:port of the QUIC endpoint
	PublicKey       PublicKeyBytes `cbor:"5,keyasint" json:"peerPublicKey"`   // 06_005, SM2 identity and validator key
	// Organisation is the member institution that operates the node.
	Organisation string `cbor:"6,keyasint,omitempty" json:"institution"`
}

// Validate checks that the peer id matches the key and that fields are in
// their limits.
func (p *PeerConfig) Validate() error {
	if _, err := p.PublicKey.Parse(); err != nil {
		return fmt.Errorf("ledger: peer %s: %w", p.PeerID, err)
	}
	if p.PublicKey.ID() != p.PeerID {
		return fmt.Errorf("%w: peer id %s is not the key id of its public key", ErrMalformed, p.PeerID)
	}
	if len(p.ProtocolVersion) == 0 || len(p.ProtocolVersion) > MaxVersionLen ||
		len(p.SoftwareVersion) == 0 || len(p.SoftwareVersion) > MaxVersionLen {
		return fmt.Errorf("%w: peer %s: versions must be 1 to %d bytes", ErrTooLarge, p.PeerID, MaxVersionLen)
	}
	if len(p.Address) > MaxPeerAddrLen {
		return fmt.Errorf("%w: peer %s: address too long", ErrTooLarge, p.PeerID)
	}
	if _, _, err := net.SplitHostPort(p.Address); err != nil {
		return fmt.Errorf("%w: peer %s: address %q: %v", ErrMalformed, p.PeerID, p.Address, err)
	}
	if len(p.Organisation) > MaxInstitutionLen || !utf8.ValidString(p.Organisation) {
		return fmt.Errorf("%w: peer %s: organisation too long", ErrTooLarge, p.PeerID)
	}
	return nil
}

// Params are the chain parameters that governance can change. They take
// effect at an epoch boundary.
type Params struct {
	// Consensus timing, in milliseconds.
	BaseTimeoutMs uint64 `cbor:"1,keyasint" json:"baseTimeoutMs"`
	MaxTimeoutMs  uint64 `cbor:"2,keyasint" json:"maxTimeoutMs"`
	// MaxClockSkewMs bounds how far a block timestamp may run ahead of a
	// voter's clock.
	MaxClockSkewMs uint64 `cbor:"3,keyasint" json:"maxClockSkewMs"`
	// Block building.
	MaxBlockTxs   uint32 `cbor:"4,keyasint" json:"maxBlockTxs"`
	MaxBlockBytes uint64 `cbor:"5,keyasint" json:"maxBlockBytes"`
	// TxWindowMs bounds how far a transaction's timestamp may differ from
	// the timestamp of the block that includes it.
	TxWindowMs uint64 `cbor:"6,keyasint" json:"txWindowMs"`
	// GovThreshold is M in the M-of-N administrator quorum.
	GovThreshold uint32 `cbor:"7,keyasint" json:"govThreshold"`
	// EpochLength is the number of blocks after which pending
	// reconfigurations take effect (0: at the next block after commit).
	EpochLength uint64 `cbor:"8,keyasint" json:"epochLength"`
}

// DefaultParams are the parameters a new consortium starts with unless its
// genesis says otherwise.
func DefaultParams() Params {
	return Params{
		BaseTimeoutMs:  1000,
		MaxTimeoutMs:   30_000,
		MaxClockSkewMs: 2000,
		MaxBlockTxs:    5000,
		MaxBlockBytes:  8 << 20,
		TxWindowMs:     5 * 60 * 1000,
		GovThreshold:   1,
		EpochLength:    100,
	}
}

// Validate checks that the parameters are usable.
func (p *Params) Validate() error {
	switch {
	case p.BaseTimeoutMs == 0 || p.MaxTimeoutMs < p.BaseTimeoutMs:
		return fmt.Errorf("%w: timeouts: base %d ms, max %d ms", ErrMalformed, p.BaseTimeoutMs, p.MaxTimeoutMs)
	case p.MaxBlockTxs == 0 || p.MaxBlockTxs > MaxBlockTxs:
		return fmt.Errorf("%w: max block transactions %d, want 1 to %d", ErrMalformed, p.MaxBlockTxs, MaxBlockTxs)
	case p.MaxBlockBytes == 0 || p.MaxBlockBytes > MaxBlockBodyBytes:
		return fmt.Errorf("%w: max block bytes %d, want 1 to %d", ErrMalformed, p.MaxBlockBytes, MaxBlockBodyBytes)
	case p.TxWindowMs == 0:
		return fmt.Errorf("%w: transaction window must be positive", ErrMalformed)
	case p.GovThreshold == 0:
		return fmt.Errorf("%w: governance threshold must be at least 1", ErrMalformed)
	}
	return nil
}

// ValidatorSet is the ordered set of validators of one epoch. A
// validator's index in it is its position in QC bitmaps and in the
// round-robin leader rotation, and the shard it stores.
type ValidatorSet struct {
	Epoch      uint64       `cbor:"1,keyasint" json:"epoch"`
	Validators []PeerConfig `cbor:"2,keyasint" json:"validators"`
}

// N returns the number of validators.
func (v *ValidatorSet) N() int { return len(v.Validators) }

// F returns the number of Byzantine validators tolerated: (n-1)/3.
func (v *ValidatorSet) F() int { return (len(v.Validators) - 1) / 3 }

// Quorum returns the votes needed for a certificate: n - f.
func (v *ValidatorSet) Quorum() int { return len(v.Validators) - v.F() }

// IndexOf returns the index of the validator with key id, or -1.
func (v *ValidatorSet) IndexOf(id gm.KeyID) int {
	for i := range v.Validators {
		if v.Validators[i].PeerID == id {
			return i
		}
	}
	return -1
}

// Validate checks every member and that no key appears twice.
func (v *ValidatorSet) Validate() error {
	if len(v.Validators) == 0 {
		return fmt.Errorf("%w: empty validator set", ErrMalformed)
	}
	if len(v.Validators) > 256 {
		return fmt.Errorf("%w: %d validators exceed 256", ErrTooLarge, len(v.Validators))
	}
	seen := make(map[gm.KeyID]struct{}, len(v.Validators))
	for i := range v.Validators {
		if err := v.Validators[i].Validate(); err != nil {
			return err
		}
		if _, dup := seen[v.Validators[i].PeerID]; dup {
			return fmt.Errorf("%w: validator %s listed twice", ErrMalformed, v.Validators[i].PeerID)
		}
		seen[v.Validators[i].PeerID] = struct{}{}
	}
	return nil
}
