// Package mempool holds a node's pending transactions: the admission
// pipeline shared by the kiosk datagram path, the HTTP API and transactions
// gossiped by peers, and the source leaders build blocks from.
//
// Admission is decode (done by the caller), structural checks, signature
// verification through the node's verified-signature cache (so no
// transaction is verified twice; a batch is verified in parallel on every
// core), then the ledger's stateful checks against committed state — time
// window, replay, sender, content filter, roles — which the node supplies
// as Config.Admit. The pool is bounded in count and bytes; when full it
// answers ErrBusy and takes nothing. Leaders take transactions in arrival
// order up to a block's size and count limits. Committed transactions are
// removed; the rest are checked again when a commit changes what they
// depend on.
package mempool

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"hallmark/firmware/sigcache"
	"hallmark/ledger"
	"hallmark/ledger/reason"
	"hallmark/netstack/ingress"
)

// Errors Add returns besides a *reason.Error from the checks.
var (
	// ErrBusy: the pool is full; the submitter should retry later.
	ErrBusy = errors.New("mempool: full, retry later")
	// ErrDuplicate: the transaction is already pending or committed.
	ErrDuplicate = errors.New("mempool: transaction already known")
)

// Origin says where a transaction came from.
type Origin uint8

// String names the origin (a metrics label).
func (o Origin) String() string {
	switch o {
	case FromKiosk:
		return "kiosk"
	case FromAPI:
		return "api"
	case FromPeer:
		return "peer"
	}
	return "unknown"
}

// Origins.
const (
	// FromKiosk: the ingress verified the signatures already.
	FromKiosk Origin = iota + 1
	// FromAPI: submitted over HTTP.
	FromAPI
	// FromPeer: gossiped by another node.
	FromPeer
)

// Config configures a Pool.
type Config struct {
	// MaxTxs and MaxBytes bound the pool (bytes of encoded transactions,
	// payloads included).
	MaxTxs   int
	MaxBytes int64
	// Cache is the node's verified-signature cache.
	Cache *sigcache.Cache
	// Workers verify a batch's signatures in parallel (0: one per core).
	Workers int
	// Admit runs the ledger's stateful admission checks against committed
	// state. It returns nil, a *reason.Error, or another error when state
	// could not be read. It must be safe for concurrent use.
	Admit func(tx *ledger.Transaction) error
	// AdmitAll, if set, is Admit for many transactions at once (one result
	// each), which AddBatch uses: an implementation can read state once
	// for the whole batch.
	AdmitAll func(txs []*ledger.Transaction) []error
	// OnAccept, if set, is called with each transaction accepted from a
	// kiosk or the API (not from a peer), with its encoding, for gossip.
	OnAccept func(tx *ledger.Transaction, enc []byte)
	Now      func() time.Time
}

type entry struct {
	tx      *ledger.Transaction
	id      ledger.TxID
	enc     []byte // canonical encoding, payload included
	bodyLen int    // encoded length without the payload: what it adds to a block body
	sender  ledger.Address
	arrived time.Time
	origin  Origin
	elem    *list.Element
}

// Pool is the set of pending transactions. It is safe for concurrent use.
type Pool struct {
	cfg Config

	mu    sync.Mutex
	byID  map[ledger.TxID]*entry
	order *list.List // of *entry, oldest first
	bytes int64
}

// New returns an empty pool.
func New(cfg Config) (*Pool, error) {
	if cfg.MaxTxs <= 0 || cfg.MaxBytes <= 0 || cfg.Cache == nil || cfg.Admit == nil {
		return nil, errors.New("mempool: limits, a signature cache and an admission check are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{cfg: cfg, byID: make(map[ledger.TxID]*entry), order: list.New()}, nil
}

// Len returns the number of pending transactions.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byID)
}

// Bytes returns the encoded size of the pending transactions.
func (p *Pool) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Full reports whether the pool has no room (ingress.FullReporter): the
// kiosk ingress then answers busy before verifying anything.
func (p *Pool) Full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byID) >= p.cfg.MaxTxs || p.bytes >= p.cfg.MaxBytes
}

// Has reports whether the transaction is pending.
func (p *Pool) Has(id ledger.TxID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.byID[id]
	return ok
}

// Arrival returns when a pending transaction arrived.
func (p *Pool) Arrival(id ledger.TxID) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byID[id]
	if !ok {
		return time.Time{}, false
	}
	return e.arrived, true
}

// Add admits one transaction. It returns nil when the transaction was
// taken in, ErrDuplicate, ErrBusy, a *reason.Error saying why it was
// refused, or another error when state could not be read.
func (p *Pool) Add(tx *ledger.Transaction, origin Origin) error {
	id := tx.ID()
	if err := p.precheck(id); err != nil {
		return err
	}
	if err := tx.Validate(); err != nil {
		return reason.New(reason.Malformed, err.Error())
	}
	if origin == FromKiosk {
		p.cfg.Cache.Add(tx)
	} else if err := p.cfg.Cache.Check(tx); err != nil {
		return reason.New(reason.BadSignature, err.Error())
	}
	return p.admit(tx, id, origin)
}

// AddBatch admits transactions gossiped together, verifying their
// signatures in parallel first. It returns one result per transaction.
func (p *Pool) AddBatch(txs []*ledger.Transaction, origin Origin) []error {
	return p.AddEncoded(txs, nil, origin)
}

// AddEncoded is AddBatch for transactions decoded by ledger.DecodeTx from
// encs (encs[i] is txs[i]'s canonical encoding, which the strict decoder
// has compared with the re-encoding), so that the pool keeps a copy of
// those bytes instead of encoding each transaction again. encs may be nil.
func (p *Pool) AddEncoded(txs []*ledger.Transaction, encs [][]byte, origin Origin) []error {
	if encs != nil && len(encs) != len(txs) {
		panic("mempool: AddEncoded with a different number of encodings and transactions")
	}
	errs := make([]error, len(txs))
	ids := make([]ledger.TxID, len(txs))
	var todo []*ledger.Transaction
	var at []int
	for i, tx := range txs {
		ids[i] = tx.ID()
		if errs[i] = p.precheck(ids[i]); errs[i] != nil {
			continue
		}
		if err := tx.Validate(); err != nil {
			errs[i] = reason.New(reason.Malformed, err.Error())
			continue
		}
		todo = append(todo, tx)
		at = append(at, i)
	}
	var good []*ledger.Transaction
	var goodAt []int
	for j, err := range p.cfg.Cache.CheckAll(todo, p.cfg.Workers) {
		i := at[j]
		if err != nil {
			errs[i] = reason.New(reason.BadSignature, err.Error())
			continue
		}
		good = append(good, txs[i])
		goodAt = append(goodAt, i)
	}
	if len(good) == 0 {
		return errs
	}
	var checks []error
	if p.cfg.AdmitAll != nil {
		checks = p.cfg.AdmitAll(good)
	} else {
		checks = make([]error, len(good))
		for j, tx := range good {
			checks[j] = p.cfg.Admit(tx)
		}
	}
	for j, i := range goodAt {
		var enc []byte
		if encs != nil {
			enc = encs[i]
		}
		errs[i] = p.insert(txs[i], ids[i], enc, origin, checks[j])
	}
	return errs
}

// precheck is the cheap part: known already, or no room.
func (p *Pool) precheck(id ledger.TxID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byID[id]; ok {
		return ErrDuplicate
	}
	if len(p.byID) >= p.cfg.MaxTxs || p.bytes >= p.cfg.MaxBytes {
		return ErrBusy
	}
	return nil
}

func (p *Pool) admit(tx *ledger.Transaction, id ledger.TxID, origin Origin) error {
	return p.insert(tx, id, nil, origin, p.cfg.Admit(tx))
}

// insert takes in a transaction whose signatures are verified, given the
// result of the admission check and its encoding if known (nil: encode).
func (p *Pool) insert(tx *ledger.Transaction, id ledger.TxID, known []byte, origin Origin, checked error) error {
	if err := checked; err != nil {
		if reason.Of(err) == reason.Duplicate {
			return fmt.Errorf("%w: %v", ErrDuplicate, err)
		}
		return err
	}
	enc := bytes.Clone(known) // not the caller's buffer, which may hold a whole batch
	if enc == nil {
		var err error
		if enc, err = ledger.EncodeTx(tx); err != nil {
			return reason.New(reason.Malformed, err.Error())
		}
	}
	bodyLen := len(enc)
	if tx.Payload != nil {
		bare := tx.WithoutPayload()
		b, err := ledger.EncodeTx(&bare)
		if err != nil {
			return reason.New(reason.Malformed, err.Error())
		}
		bodyLen = len(b)
	}
	e := &entry{tx: tx, id: id, enc: enc, bodyLen: bodyLen, sender: tx.Body.Entity.Sender, arrived: p.cfg.Now(), origin: origin}
	p.mu.Lock()
	if _, ok := p.byID[id]; ok {
		p.mu.Unlock()
		return ErrDuplicate
	}
	if len(p.byID) >= p.cfg.MaxTxs || p.bytes+int64(len(enc)) > p.cfg.MaxBytes {
		p.mu.Unlock()
		return ErrBusy
	}
	e.elem = p.order.PushBack(e)
	p.byID[id] = e
	p.bytes += int64(len(enc))
	p.mu.Unlock()
	if origin != FromPeer && p.cfg.OnAccept != nil {
		p.cfg.OnAccept(tx, enc)
	}
	return nil
}

// Submit implements ingress.Submitter for the kiosk datagram path, whose
// ingress has verified the transaction's signatures.
func (p *Pool) Submit(_ context.Context, tx *ledger.Transaction) ingress.Result {
	return ResultOf(p.Add(tx, FromKiosk))
}

// ResultOf maps Add's answer to the kiosk receipt's outcome.
func ResultOf(err error) ingress.Result {
	switch {
	case err == nil:
		return ingress.Result{Outcome: ingress.Accepted}
	case errors.Is(err, ErrDuplicate):
		return ingress.Result{Outcome: ingress.Duplicate}
	case errors.Is(err, ErrBusy):
		return ingress.Result{Outcome: ingress.Busy}
	}
	code := reason.Of(err)
	if code == reason.Internal {
		// State could not be read: not the transaction's fault.
		return ingress.Result{Outcome: ingress.Busy}
	}
	return ingress.Result{Outcome: ingress.Rejected, Code: uint16(code)}
}

// Pick returns pending transactions in arrival order for a block: at most
// maxTxs, whose encodings without payloads total at most maxBodyBytes,
// leaving out those skip reports (already in an uncommitted ancestor) and
// those accept refuses (nil accepts all). Transactions stay pending until
// they commit.
func (p *Pool) Pick(maxTxs int, maxBodyBytes int64, skip func(ledger.TxID) bool, accept func(*ledger.Transaction) bool) []*ledger.Transaction {
	p.mu.Lock()
	var cands []*entry
	var size int64
	for el := p.order.Front(); el != nil && len(cands) < maxTxs; el = el.Next() {
		e := el.Value.(*entry)
		if skip != nil && skip(e.id) {
			continue
		}
		if size+int64(e.bodyLen) > maxBodyBytes {
			continue
		}
		size += int64(e.bodyLen)
		cands = append(cands, e)
	}
	p.mu.Unlock()
	out := make([]*ledger.Transaction, 0, len(cands))
	for _, e := range cands {
		if accept == nil || accept(e.tx) {
			out = append(out, e.tx)
		}
	}
	return out
}

// Removed describes a transaction Remove dropped.
type Removed struct {
	Arrived time.Time
	Origin  Origin
}

// Remove drops transactions (committed ones) and returns when and how
// those that were pending arrived, for latency figures.
func (p *Pool) Remove(ids []ledger.TxID) []Removed {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Removed
	for _, id := range ids {
		if e, ok := p.byID[id]; ok {
			p.drop(e)
			out = append(out, Removed{Arrived: e.arrived, Origin: e.origin})
		}
	}
	return out
}

func (p *Pool) drop(e *entry) {
	p.order.Remove(e.elem)
	delete(p.byID, e.id)
	p.bytes -= int64(len(e.enc))
}

// Recheck runs check again on the pending transactions match selects (all
// if nil) and drops those it refuses, except for reasons that time cures
// (a timestamp ahead of the window) and failures to read state. It returns
// the number dropped.
func (p *Pool) Recheck(match func(tx *ledger.Transaction, sender ledger.Address, arrived time.Time) bool, check func(*ledger.Transaction) error) int {
	p.mu.Lock()
	var sel []*entry
	for el := p.order.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if match == nil || match(e.tx, e.sender, e.arrived) {
			sel = append(sel, e)
		}
	}
	p.mu.Unlock()
	var dead []*entry
	for _, e := range sel {
		err := check(e.tx)
		if err == nil {
			continue
		}
		switch reason.Of(err) {
		case reason.TooNew, reason.Internal:
			continue
		}
		dead = append(dead, e)
	}
	p.mu.Lock()
	n := 0
	for _, e := range dead {
		if cur, ok := p.byID[e.id]; ok && cur == e {
			p.drop(e)
			n++
		}
	}
	p.mu.Unlock()
	return n
}

// Encoded returns the encodings of the given pending transactions (for
// answering a peer), skipping those no longer pending.
func (p *Pool) Encoded(ids []ledger.TxID) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, id := range ids {
		if e, ok := p.byID[id]; ok {
			out = append(out, e.enc)
		}
	}
	return out
}
