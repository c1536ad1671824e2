package app

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// GenesisVersion is the only genesis document version this build reads.
const GenesisVersion = 1

const genesisDomain = "hallmark/genesis/v1\x00"

// GenesisAccount is an account that exists from the start.
type GenesisAccount struct {
	PublicKey   ledger.PublicKeyBytes `cbor:"1,keyasint" json:"publicKey"`
	Institution string                `cbor:"2,keyasint" json:"institution"`
	Certificate []byte                `cbor:"3,keyasint,omitempty" json:"certificate,omitempty"`
	Roles       ledger.Role           `cbor:"4,keyasint" json:"roles"`
}

// GenesisDoc describes a consortium's initial state. Provisioning builds
// it in the genesis ceremony, and the founding administrators sign
// [GenesisDoc.SignBytes]; every node derives the same initial state from
// it with [Genesis].
type GenesisDoc struct {
	Version    uint16              `cbor:"1,keyasint" json:"version"`
	ChainID    string              `cbor:"2,keyasint" json:"chainId"`
	Time       int64               `cbor:"3,keyasint" json:"time"` // ms; the first block must be later
	Params     ledger.Params       `cbor:"4,keyasint" json:"params"`
	Validators []ledger.PeerConfig `cbor:"5,keyasint" json:"validators"`
	Accounts   []GenesisAccount    `cbor:"6,keyasint" json:"accounts"`
	Filter     txs.FilterRules     `cbor:"7,keyasint" json:"filter"`
}

// SignBytes returns what each founding administrator signs: a domain tag
// followed by the document's canonical encoding.
func (d *GenesisDoc) SignBytes() ([]byte, error) {
	enc, err := ledger.Marshal(d)
	if err != nil {
		return nil, err
	}
	return append([]byte(genesisDomain), enc...), nil
}

// Digest returns SM3 of the document's canonical encoding.
func (d *GenesisDoc) Digest() (gm.Digest, error) {
	enc, err := ledger.Marshal(d)
	if err != nil {
		return gm.Digest{}, err
	}
	return gm.SM3(enc), nil
}

// DecodeGenesis strictly decodes a genesis document and validates it.
func DecodeGenesis(b []byte) (*GenesisDoc, error) {
	var d GenesisDoc
	if err := ledger.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("app: genesis: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks the document: version, chain id, time, parameters,
// validators, accounts (each as account.register would check it, no
// duplicate keys), at least as many administrators as the governance
// threshold, and the filter rules.
func (d *GenesisDoc) Validate() error {
	if d.Version != GenesisVersion {
		return fmt.Errorf("app: genesis version %d, want %d", d.Version, GenesisVersion)
	}
	if len(d.ChainID) == 0 || len(d.ChainID) > ledger.MaxChainIDLen || !utf8.ValidString(d.ChainID) {
		return fmt.Errorf("app: genesis chain id must be UTF-8 of 1 to %d bytes", ledger.MaxChainIDLen)
	}
	if d.Time <= 0 {
		return fmt.Errorf("app: genesis time must be positive milliseconds")
	}
	if err := d.Params.Validate(); err != nil {
		return fmt.Errorf("app: genesis parameters: %w", err)
	}
	vs := ledger.ValidatorSet{Validators: d.Validators}
	if err := vs.Validate(); err != nil {
		return fmt.Errorf("app: genesis validators: %w", err)
	}
	seen := make(map[ledger.PublicKeyBytes]struct{}, len(d.Accounts))
	admins := 0
	for i, a := range d.Accounts {
		reg := txs.AccountRegister{PublicKey: a.PublicKey, Institution: a.Institution, Certificate: a.Certificate, Roles: a.Roles}
		if err := reg.Validate(); err != nil {
			return fmt.Errorf("app: genesis account %d: %w", i, err)
		}
		if _, dup := seen[a.PublicKey]; dup {
			return fmt.Errorf("app: genesis account %d: key listed twice", i)
		}
		seen[a.PublicKey] = struct{}{}
		if a.Roles.Has(ledger.RoleAdmin) {
			admins++
		}
	}
	if admins == 0 || uint32(admins) < d.Params.GovThreshold {
		return fmt.Errorf("app: genesis has %d administrators for a governance threshold of %d", admins, d.Params.GovThreshold)
	}
	if err := d.Filter.Validate(); err != nil {
		return fmt.Errorf("app: genesis filter rules: %w", err)
	}
	return nil
}

// GenesisState is the initial state a genesis document produces.
type GenesisState struct {
	// Writes create the initial state, in canonical order.
	Writes []ledger.Write
	// StateRoot is NextStateRoot(GenesisStateRoot(chain id), Writes): the
	// state root of the genesis block (height 0).
	StateRoot gm.Digest
	// Validators is the validator set of epoch 0.
	Validators ledger.ValidatorSet
}

// Genesis derives the initial state from a genesis document. It is a pure
// function: every node that applies the same document gets the same
// writes and root.
func Genesis(d *GenesisDoc) (*GenesisState, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	st := NewOverlay(NewMemStore())
	st.Put([]byte(keyChain), []byte(d.ChainID))
	proto, err := strconv.ParseUint(ledger.ProtocolVersion, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("app: protocol version %q is not a number: %w", ledger.ProtocolVersion, err)
	}
	vs := ledger.ValidatorSet{Epoch: 0, Validators: d.Validators}
	admins := uint32(0)
	for _, a := range d.Accounts {
		addr := ledger.Address(a.PublicKey.ID())
		acct := ledger.Account{
			Address: addr, PublicKey: a.PublicKey, Certificate: a.Certificate, Institution: a.Institution, Roles: a.Roles,
		}
		if err := putObj(st, accountKey(addr), &acct); err != nil {
			return nil, err
		}
		st.Put(keyIndexKey(a.PublicKey.ID()), addr[:])
		if a.Roles.Has(ledger.RoleAdmin) {
			admins++
		}
	}
	for _, p := range d.Validators {
		if err := putObj(st, nodeKey(p.PeerID), &NodeInfo{Peer: p}); err != nil {
			return nil, err
		}
	}
	for _, kv := range []struct {
		key string
		v   any
	}{
		{keyParams, &d.Params}, {keyValidators, &vs}, {keyFilter, &d.Filter},
		{keyProtocol, &ProtocolState{Version: uint32(proto)}}, {keyTip, &Tip{Height: 0, Time: d.Time}},
	} {
		if err := putObj(st, []byte(kv.key), kv.v); err != nil {
			return nil, err
		}
	}
	st.Put([]byte(keyAdmins), be32(admins))
	writes, err := ledger.CanonicalWriteSet(st.Writes())
	if err != nil {
		return nil, err
	}
	root, err := ledger.NextStateRoot(ledger.GenesisStateRoot(d.ChainID), writes)
	if err != nil {
		return nil, err
	}
	return &GenesisState{Writes: writes, StateRoot: root, Validators: vs}, nil
}
