package app

import (
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// Read-side queries for the API. Each reads committed (or speculative)
// state through a View and returns nil for what does not exist.

// GetAccount returns the account at a.
func GetAccount(v View, a ledger.Address) (*ledger.Account, error) { return getAccount(v, a) }

// AccountByKey returns the account whose current key is k.
func AccountByKey(v View, k ledger.PublicKeyBytes) (*ledger.Account, error) {
	return accountByKey(v, k)
}

// GetRecord returns the record with id.
func GetRecord(v View, id gm.Digest) (*Record, error) { return getObj[Record](v, recordKey(id)) }

// RecordsBySubject returns the ids of the records about subject, in
// ascending id order, starting after the id after (zero to start) and at
// most limit of them.
func RecordsBySubject(v View, subject ledger.Address, after gm.Digest, limit int) ([]gm.Digest, error) {
	prefix := cat([]byte(prefixSubject), subject[:])
	var out []gm.Digest
	err := v.Scan(prefix, func(k, _ []byte) bool {
		if len(k) != len(prefix)+gm.DigestSize {
			return true
		}
		id := gm.Digest(k[len(prefix):])
		if !after.IsZero() && compareDigest(id, after) <= 0 {
			return true
		}
		out = append(out, id)
		return len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("app: scanning records of %s: %w", subject, err)
	}
	return out, nil
}

func compareDigest(a, b gm.Digest) int { return compareAddr(ledger.Address(a), ledger.Address(b)) }

// GetCertificate returns the certificate with id.
func GetCertificate(v View, id gm.Digest) (*Certificate, error) {
	return getObj[Certificate](v, certKey(id))
}

// GetGrant returns subject's grant to grantee for class.
func GetGrant(v View, subject, grantee ledger.Address, class string) (*Grant, error) {
	return getObj[Grant](v, grantKey(subject, grantee, class))
}

// GrantsBySubject returns every grant a subject has given (expired ones
// included, until replaced or revoked).
func GrantsBySubject(v View, subject ledger.Address) ([]Grant, error) {
	var out []Grant
	var decodeErr error
	err := v.Scan(cat([]byte(prefixGrant), subject[:]), func(_, val []byte) bool {
		var g Grant
		if decodeErr = ledger.Unmarshal(val, &g); decodeErr != nil {
			return false
		}
		out = append(out, g)
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("app: grants of %s: %w", subject, err)
	}
	return out, nil
}

// GrantsToGrantee returns every grant a grantee holds.
func GrantsToGrantee(v View, grantee ledger.Address) ([]Grant, error) {
	prefix := cat([]byte(prefixGrantee), grantee[:])
	type ref struct {
		subject ledger.Address
		class   string
	}
	var refs []ref
	err := v.Scan(prefix, func(k, _ []byte) bool {
		if len(k) > len(prefix)+len(ledger.Address{}) {
			rest := k[len(prefix):]
			refs = append(refs, ref{subject: ledger.Address(rest[:32]), class: string(rest[32:])})
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("app: grants to %s: %w", grantee, err)
	}
	out := make([]Grant, 0, len(refs))
	for _, r := range refs {
		g, err := GetGrant(v, r.subject, grantee, r.class)
		if err != nil {
			return nil, err
		}
		if g != nil {
			out = append(out, *g)
		}
	}
	return out, nil
}

// GetAsset returns the asset with symbol.
func GetAsset(v View, symbol string) (*Asset, error) { return getObj[Asset](v, assetKey(symbol)) }

// Balance returns a's balance of symbol.
func Balance(v View, symbol string, a ledger.Address) (uint64, error) {
	return getBalance(v, symbol, a)
}

// Balances calls fn for every non-zero balance of symbol, in address order.
func Balances(v View, symbol string, fn func(a ledger.Address, amount uint64)) error {
	prefix := balancePrefix(symbol)
	return v.Scan(prefix, func(k, val []byte) bool {
		if len(k) == len(prefix)+32 && len(val) == 8 {
			fn(ledger.Address(k[len(prefix):]), beUint64(val))
		}
		return true
	})
}

// GetProposal returns the pending proposal with id.
func GetProposal(v View, id gm.Digest) (*Proposal, error) {
	return getObj[Proposal](v, proposalKey(id))
}

// GetNode returns what the chain knows about the node with peer id.
func GetNode(v View, id gm.KeyID) (*NodeInfo, error) { return getObj[NodeInfo](v, nodeKey(id)) }

// GetAnchor returns the last anchored segment of an audit log.
func GetAnchor(v View, log gm.KeyID) (*AnchorState, error) {
	return getObj[AnchorState](v, anchorKey(log))
}

// Params returns the chain parameters.
func Params(v View) (ledger.Params, error) { return getParams(v) }

// Validators returns the validator set after every committed change.
func Validators(v View) (*ledger.ValidatorSet, error) { return getValidators(v) }

// FilterRules returns the content-filter rule set.
func FilterRules(v View) (*txs.FilterRules, error) { return getFilter(v) }

// Protocol returns the protocol state.
func Protocol(v View) (ProtocolState, error) { return getProtocol(v) }

// GetTip returns the last executed block's height, time and digests.
func GetTip(v View) (*Tip, error) { return getObj[Tip](v, []byte(keyTip)) }

// ChainID returns the chain id of the state.
func ChainID(v View) (string, error) {
	b, err := v.Get([]byte(keyChain))
	if err != nil {
		return "", err
	}
	if b == nil {
		return "", ErrNoGenesis
	}
	return string(b), nil
}

// Executed reports whether the transaction with id and timestamp ts was
// executed within the replay window (older ids are forgotten; the
// storage's transaction index answers for them).
func Executed(v View, id ledger.TxID, ts int64) (bool, error) {
	b, err := v.Get(seenKey(ts, id))
	return b != nil, err
}
