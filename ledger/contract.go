package ledger

import (
	"fmt"

	"hallmark/gm"
)

// Contract is the spec's contract object (05). Hallmark has no virtual
// machine: its contracts are the built-in transaction families (records,
// certificates, grants, assets, accounts, governance, supervision), each
// compiled into the node. A Contract names one of them, and its Code holds
// the family's name rather than executable instructions, so that an
// upgrade of a family's rules is visible on chain as a new version.
type Contract struct {
	ID      gm.Digest `cbor:"1,keyasint" json:"contractId"`      // 05_001
	Version string    `cbor:"2,keyasint" json:"contractVersion"` // 05_002
	Code    []byte    `cbor:"3,keyasint" json:"contractCode"`    // 05_003
	// Storage lists the state key prefixes the contract owns (05_004); the
	// values live in world state under those prefixes.
	Storage []string `cbor:"4,keyasint,omitempty" json:"contractStorage"`
}

// BuiltinContractID returns the id of a built-in family: SM3 of its name
// under a domain tag.
func BuiltinContractID(family string) gm.Digest {
	return gm.SM3([]byte("hallmark/contract/" + family))
}

// Validate checks the contract's limits.
func (c *Contract) Validate() error {
	if len(c.Version) == 0 || len(c.Version) > MaxVersionLen {
		return fmt.Errorf("%w: contract version must be 1 to %d bytes", ErrTooLarge, MaxVersionLen)
	}
	if len(c.Code) > MaxContractCode {
		return fmt.Errorf("%w: contract code of %d bytes exceeds %d", ErrTooLarge, len(c.Code), MaxContractCode)
	}
	return nil
}
