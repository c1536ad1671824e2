package ledger

import (
	"fmt"
	"unicode/utf8"

	"hallmark/gm"
)

// Address identifies an account. It is the key id (SM3) of the public key
// the account was registered with, and stays the same when the account
// later rotates its key. It is the spec's sender and recipient (04_001,
// 04_002).
type Address gm.Digest

// AddressOf returns the address an account registered with key gets.
func AddressOf(key *gm.PublicKey) Address { return Address(key.ID()) }

// String returns the address in hex.
func (a Address) String() string { return gm.Digest(a).String() }

// IsZero reports whether a is the zero address.
func (a Address) IsZero() bool { return a == Address{} }

// MarshalText renders the address as hex.
func (a Address) MarshalText() ([]byte, error) { return gm.Digest(a).MarshalText() }

// UnmarshalText parses a hex address.
func (a *Address) UnmarshalText(text []byte) error { return (*gm.Digest)(a).UnmarshalText(text) }

// PublicKeyBytes is an SM2 public key as 64 bytes X ‖ Y (spec 01_001).
type PublicKeyBytes [gm.PublicKeySize]byte

// Parse checks that the bytes are a point on the SM2 curve.
func (p PublicKeyBytes) Parse() (*gm.PublicKey, error) { return gm.ParsePublicKey(p[:]) }

// ID returns the key id (SM3 of the 64 bytes).
func (p PublicKeyBytes) ID() gm.KeyID { return gm.KeyID(gm.SM3(p[:])) }

// MarshalText renders the key as hex.
func (p PublicKeyBytes) MarshalText() ([]byte, error) { return hexText(p[:]), nil }

// UnmarshalText parses a hex key.
func (p *PublicKeyBytes) UnmarshalText(text []byte) error {
	return unhexFixed(p[:], text, "public key")
}

// KeyBytes returns the 64-byte form of key.
func KeyBytes(key *gm.PublicKey) PublicKeyBytes { return PublicKeyBytes(key.Array()) }

// Role is a bit set of what an account may do.
type Role uint32

// Roles an account can hold.
const (
	RoleMember    Role = 1 << iota // submit records and hold assets
	RoleKiosk                      // a self-service terminal submitting records
	RoleIssuer                     // issue certificates and assets
	RoleOfficer                    // security officer: key ceremonies
	RoleAdmin                      // consortium administrator: governance approvals
	RoleRegulator                  // supervision: mask records, audited plaintext reads

	roleAll = RoleMember | RoleKiosk | RoleIssuer | RoleOfficer | RoleAdmin | RoleRegulator
)

var roleNames = []struct {
	r    Role
	name string
}{
	{RoleMember, "member"}, {RoleKiosk, "kiosk"}, {RoleIssuer, "issuer"},
	{RoleOfficer, "officer"}, {RoleAdmin, "admin"}, {RoleRegulator, "regulator"},
}

// Has reports whether r includes every role in want.
func (r Role) Has(want Role) bool { return r&want == want }

// Names lists the role names in r.
func (r Role) Names() []string {
	var out []string
	for _, rn := range roleNames {
		if r&rn.r != 0 {
			out = append(out, rn.name)
		}
	}
	return out
}

// ParseRole returns the role with the given name.
func ParseRole(name string) (Role, error) {
	for _, rn := range roleNames {
		if rn.name == name {
			return rn.r, nil
		}
	}
	return 0, fmt.Errorf("ledger: unknown role %q", name)
}

// Account is the spec's account object (01). The private key (01_002)
// never appears here: it stays in custody (package hsm), and the ledger
// knows only its public half.
type Account struct {
	Address     Address        `cbor:"1,keyasint" json:"address"`
	PublicKey   PublicKeyBytes `cbor:"2,keyasint" json:"accountPublicKey"`             // 01_001
	Certificate []byte         `cbor:"3,keyasint,omitempty" json:"digitalCertificate"` // 01_003, DER
	Institution string         `cbor:"4,keyasint,omitempty" json:"institution"`        // 01_004
	Roles       Role           `cbor:"5,keyasint" json:"roles"`
	Frozen      bool           `cbor:"6,keyasint,omitempty" json:"frozen"`
	// KeyHeight is the height at which PublicKey became current (0 for
	// genesis accounts); a rotation bumps it.
	KeyHeight uint64 `cbor:"7,keyasint,omitempty" json:"keyHeight"`
}

// Validate checks the account's fields against the format limits.
func (a *Account) Validate() error {
	if _, err := a.PublicKey.Parse(); err != nil {
		return fmt.Errorf("ledger: account %s: %w", a.Address, err)
	}
	if len(a.Certificate) > MaxCertBytes {
		return fmt.Errorf("ledger: account %s: certificate of %d bytes exceeds %d", a.Address, len(a.Certificate), MaxCertBytes)
	}
	if len(a.Institution) > MaxInstitutionLen || !utf8.ValidString(a.Institution) {
		return fmt.Errorf("ledger: account %s: institution must be UTF-8 of at most %d bytes", a.Address, MaxInstitutionLen)
	}
	if a.Roles&^roleAll != 0 {
		return fmt.Errorf("ledger: account %s: unknown role bits %#x", a.Address, uint32(a.Roles&^roleAll))
	}
	return nil
}

// EncodeAccount returns the canonical encoding.
func EncodeAccount(a *Account) ([]byte, error) { return Marshal(a) }

// DecodeAccount strictly decodes and validates an account.
func DecodeAccount(b []byte) (*Account, error) {
	var a Account
	if err := Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}
