package app

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// getObj reads and strictly decodes the object at key; nil if absent.
func getObj[T any](v View, key []byte) (*T, error) {
	b, err := v.Get(key)
	if err != nil {
		return nil, fmt.Errorf("app: reading state key %x: %w", key, err)
	}
	if b == nil {
		return nil, nil
	}
	var x T
	if err := ledger.Unmarshal(b, &x); err != nil {
		return nil, fmt.Errorf("app: corrupt state at key %x: %w", key, err)
	}
	return &x, nil
}

// putObj writes the canonical encoding of v at key.
func putObj(o *Overlay, key []byte, v any) error {
	b, err := ledger.Marshal(v)
	if err != nil {
		return err
	}
	o.Put(key, b)
	return nil
}

// getUint reads a big-endian integer of 4 or 8 bytes; zero if absent.
func getUint(v View, key []byte) (uint64, error) {
	b, err := v.Get(key)
	if err != nil {
		return 0, fmt.Errorf("app: reading state key %q: %w", key, err)
	}
	switch len(b) {
	case 0:
		return 0, nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	case 8:
		return binary.BigEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("app: corrupt integer at state key %x", key)
}

func be32(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return b[:]
}

func getAccount(v View, a ledger.Address) (*ledger.Account, error) {
	return getObj[ledger.Account](v, accountKey(a))
}

// accountMemo remembers accounts decoded while executing one block or
// checking transactions against one state, by the exact bytes they were
// decoded from: a block's transactions come mostly from a few senders,
// and decoding the same account again (strictly: decode, re-encode,
// compare) would give the same value. A lookup whose bytes differ (the
// account changed in the block) decodes afresh. It is safe for
// concurrent use, as a Checker is.
type accountMemo struct {
	mu sync.Mutex
	m  map[ledger.Address]decodedAccount
}

type decodedAccount struct {
	raw  []byte // as the view returned it; views never change returned bytes
	acct ledger.Account
}

// accountMemoMax bounds the memo; past it, it starts again.
const accountMemoMax = 4096

// account is getAccount through env's memo. The caller gets its own copy
// of the account's fields (its Certificate bytes are shared, and nothing
// writes into them).
func (env *blockEnv) account(v View, a ledger.Address) (*ledger.Account, error) {
	m := env.accounts
	if m == nil {
		return getAccount(v, a)
	}
	key := accountKey(a)
	b, err := v.Get(key)
	if err != nil {
		return nil, fmt.Errorf("app: reading state key %x: %w", key, err)
	}
	if b == nil {
		return nil, nil
	}
	m.mu.Lock()
	d, ok := m.m[a]
	m.mu.Unlock()
	if ok && bytes.Equal(d.raw, b) {
		acct := d.acct
		return &acct, nil
	}
	var acct ledger.Account
	if err := ledger.Unmarshal(b, &acct); err != nil {
		return nil, fmt.Errorf("app: corrupt state at key %x: %w", key, err)
	}
	m.mu.Lock()
	if m.m == nil || len(m.m) >= accountMemoMax {
		m.m = make(map[ledger.Address]decodedAccount)
	}
	m.m[a] = decodedAccount{raw: b, acct: acct}
	m.mu.Unlock()
	return &acct, nil
}

// accountByKey returns the account whose current key is k, or nil.
func accountByKey(v View, k ledger.PublicKeyBytes) (*ledger.Account, error) {
	b, err := v.Get(keyIndexKey(k.ID()))
	if err != nil {
		return nil, fmt.Errorf("app: reading key index: %w", err)
	}
	if b == nil {
		return nil, nil
	}
	if len(b) != gm.DigestSize {
		return nil, fmt.Errorf("app: corrupt key index entry for %s", k.ID())
	}
	acct, err := getAccount(v, ledger.Address(b))
	if err != nil {
		return nil, err
	}
	if acct == nil || acct.PublicKey != k {
		return nil, fmt.Errorf("app: key index for %s points to an account without that key", k.ID())
	}
	return acct, nil
}

func getBalance(v View, symbol string, a ledger.Address) (uint64, error) {
	return getUint(v, balanceKey(symbol, a))
}

func setBalance(o *Overlay, symbol string, a ledger.Address, n uint64) {
	if n == 0 {
		o.Delete(balanceKey(symbol, a))
		return
	}
	o.Put(balanceKey(symbol, a), be64(n))
}

func getParams(v View) (ledger.Params, error) {
	p, err := getObj[ledger.Params](v, []byte(keyParams))
	if err != nil {
		return ledger.Params{}, err
	}
	if p == nil {
		return ledger.Params{}, fmt.Errorf("app: state has no parameters (genesis not applied)")
	}
	return *p, nil
}

func getFilter(v View) (*txs.FilterRules, error) {
	r, err := getObj[txs.FilterRules](v, []byte(keyFilter))
	if err != nil {
		return nil, err
	}
	if r == nil {
		return &txs.FilterRules{}, nil
	}
	return r, nil
}

func getValidators(v View) (*ledger.ValidatorSet, error) {
	s, err := getObj[ledger.ValidatorSet](v, []byte(keyValidators))
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("app: state has no validator set (genesis not applied)")
	}
	return s, nil
}

func getProtocol(v View) (ProtocolState, error) {
	p, err := getObj[ProtocolState](v, []byte(keyProtocol))
	if err != nil || p == nil {
		return ProtocolState{}, err
	}
	return *p, nil
}
