package storage

import (
	"encoding/hex"
	"errors"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Errors the store returns, wrapped with details; test with errors.Is.
var (
	// ErrNotFound is returned when a block, transaction, key, payload or
	// certificate is not stored here.
	ErrNotFound = errors.New("storage: not found")
	// ErrSchemaTooNew is returned by Open for a file written by a newer
	// build with a layout this build does not understand.
	ErrSchemaTooNew = errors.New("storage: store was written by a newer version")
	// ErrNotStore is returned by Open for a file that is not a Hallmark
	// store, or one whose layout version is unknown.
	ErrNotStore = errors.New("storage: not a Hallmark store")
	// ErrChainMismatch is returned by Open when the store belongs to
	// another chain.
	ErrChainMismatch = errors.New("storage: store belongs to another chain")
	// ErrTruncated is returned by Open when the file is shorter than its
	// own metadata says.
	ErrTruncated = errors.New("storage: database file is truncated")
	// ErrInUse is returned by Open when another process holds the store.
	ErrInUse = errors.New("storage: store is in use by another process")
	// ErrNotNext is returned by CommitBlock for a block that does not
	// extend the tip.
	ErrNotNext = errors.New("storage: block does not extend the tip")
	// ErrMismatch is returned by CommitBlock when the batch contradicts
	// its header (transaction, shard or state root, size, count) or is
	// otherwise inconsistent.
	ErrMismatch = errors.New("storage: batch does not match its header")
	// ErrCorrupt is returned when stored bytes fail their check.
	ErrCorrupt = errors.New("storage: stored data is corrupt")
	// ErrUnavailable is returned when a body is neither stored nor
	// rebuildable from the shards at hand.
	ErrUnavailable = errors.New("storage: block body unavailable")
	// ErrMasked is returned for a payload the regulator has masked.
	ErrMasked = errors.New("storage: payload was masked")
	// ErrRetention is returned when pruning would drop audit entries
	// younger than the retention period.
	ErrRetention = errors.New("storage: audit retention period not reached")
	// ErrInvalid is returned for arguments out of range.
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("storage: store is closed")
)

// short renders the first 8 bytes of a digest for messages and logs.
func short(d gm.Digest) string { return hex.EncodeToString(d[:8]) }

// notFound is ErrNotFound for one state key or transaction, formatted
// only when printed: execution and admission look up absent keys several
// times per transaction, and only a few of those errors are ever read.
type notFound struct {
	kind string
	key  string      // state key, at most maxKeyInError bytes of it
	id   ledger.TxID // transaction id
}

// maxKeyInError bounds the bytes of a state key an error keeps (and
// truncateKey prints).
const maxKeyInError = 49

func (e *notFound) Error() string {
	if e.kind == "transaction" {
		return fmt.Sprintf("%v: transaction %s", ErrNotFound, short(e.id))
	}
	return fmt.Sprintf("%v: %s %q", ErrNotFound, e.kind, truncateKey([]byte(e.key)))
}

func (e *notFound) Unwrap() error { return ErrNotFound }
