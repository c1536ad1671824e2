// Package api is the node's HTTP API: JSON with the specification's field
// names (CBOR accepted for submissions). Anyone may submit ordinary
// transactions and read chain data; administrative transactions (freeze,
// mask, governance, account registration) and audited reads of record
// content require a request signed with SM2 by an account with the right
// role, and every refused attempt leaves an audit entry. Errors are JSON
// objects carrying the ledger's reason codes. docs/API.md is the reference.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hallmark/consensus"
	"hallmark/firmware/blockrec"
	"hallmark/firmware/exec"
	"hallmark/firmware/mempool"
	"hallmark/firmware/metrics"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/reason"
	"hallmark/storage"
)

// Config configures the API.
type Config struct {
	ChainID string
	Store   *storage.Store
	Pool    *mempool.Pool
	// Node returns this node's key id (audited reads name it).
	Node    func() gm.KeyID
	Status  func() Status
	Metrics *metrics.Metrics
	// Fetcher rebuilds block bodies outside the store's window (nil:
	// local shards only).
	Fetcher      storage.ShardFetcher
	MaxBodyBytes int64
	AuthWindow   time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
	// Reject, if set, is told of every refused submission (metrics).
	Reject func(error)
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof bool
	// Keys, if set, serves the node key ceremonies (/v1/admin/node/keys).
	Keys NodeKeys
	// Epoch returns the current epoch's configuration (/v1/validators).
	Epoch func() consensus.EpochConfig
	// EpochValidators returns an epoch's validator set, to name the
	// signers of commit certificates.
	EpochValidators func(epoch uint64) (ledger.ValidatorSet, error)
}

type server struct {
	cfg     Config
	view    app.View
	log     *slog.Logger
	replays *replayGuard
	audit   *auditLimiter
}

// New returns the API's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Pool == nil || cfg.Status == nil || cfg.Metrics == nil || cfg.Node == nil {
		return nil, errors.New("api: store, mempool, node, status and metrics are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 2 << 20
	}
	if cfg.AuthWindow <= 0 {
		cfg.AuthWindow = time.Minute
	}
	s := &server{cfg: cfg, view: exec.StoreView(cfg.Store), log: cfg.Logger,
		replays: &replayGuard{seen: map[gm.Signature]time.Time{}, max: 100_000},
		audit:   &auditLimiter{perSecond: 50}}
	mux := http.NewServeMux()
	route := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		name := pattern
		mux.Handle(pattern, s.wrap(name, h))
	}
	route("GET /v1/status", s.status)
	route("GET /v1/height", s.height)
	route("POST /v1/transactions", s.submit)
	route("GET /v1/transactions/{id}", s.transaction)
	route("GET /v1/blocks/{height}", s.blockByHeight)
	route("GET /v1/blocks/id/{id}", s.blockByID)
	route("GET /v1/accounts/{address}", s.account)
	route("GET /v1/accounts/{address}/balances/{symbol}", s.balance)
	route("GET /v1/records", s.recordsBySubject)
	route("GET /v1/records/{id}", s.record)
	route("GET /v1/records/{id}/content", s.recordContent)
	route("GET /v1/certificates/{digest}", s.certificate)
	route("GET /v1/grants", s.grants)
	route("POST /v1/admin/transactions", s.adminSubmit)
	route("GET /v1/admin/audit", s.auditExport)
	route("GET /v1/validators", s.validators)
	route("GET /v1/proposals/{id}", s.proposal)
	route("GET /v1/admin/node/keys", s.nodeKeys)
	route("POST /v1/admin/node/keys", s.rotateNodeKey)
	route("POST /v1/admin/node/keys/{id}/destroy", s.destroyNodeKey)
	mux.Handle("GET /metrics", MetricsHandler(cfg.Metrics))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	mux.Handle("/", s.wrap("unknown", func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, reason: "not-found", detail: "no such endpoint: see docs/API.md"}
	}))
	return mux, nil
}

// MetricsHandler serves the node's metrics in the Prometheus text format.
func MetricsHandler(m *metrics.Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// apiError is an error response.
type apiError struct {
	status int
	code   reason.Code // 0 unless the ledger gave one
	reason string
	detail string
}

func (e *apiError) Error() string { return e.reason + ": " + e.detail }

type errorBody struct {
	Error struct {
		Status int    `json:"status"`
		Code   uint16 `json:"code"`
		Reason string `json:"reason"`
		Detail string `json:"detail,omitempty"`
	} `json:"error"`
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: "bad-request", detail: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, reason: "not-found", detail: fmt.Sprintf(format, args...)}
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *server) wrap(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if err := h(sw, r); err != nil {
			s.writeError(sw, err)
		}
		s.cfg.Metrics.APIRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	})
}

func (s *server) writeError(w http.ResponseWriter, err error) {
	var body errorBody
	var ae *apiError
	var au *authError
	switch {
	case errors.As(err, &ae):
		body.Error.Status, body.Error.Code, body.Error.Reason, body.Error.Detail = ae.status, uint16(ae.code), ae.reason, ae.detail
	case errors.As(err, &au):
		body.Error.Status, body.Error.Reason, body.Error.Detail = au.status, au.reason, au.detail
	default:
		s.log.Error("API request failed", "err", err)
		body.Error.Status, body.Error.Code, body.Error.Reason, body.Error.Detail = http.StatusInternalServerError, uint16(reason.Internal), "internal", err.Error()
	}
	if body.Error.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, body.Error.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readBody reads a request body up to the limit: 413 beyond it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, reason: "too-large",
			detail: fmt.Sprintf("the body exceeds %d bytes (larger payloads do not fit a transaction)", s.cfg.MaxBodyBytes)}
	}
	if err != nil {
		return nil, badRequest("reading the body: %v", err)
	}
	return b, nil
}

func (s *server) status(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.cfg.Status())
}

type heightResponse struct {
	Height    uint64         `json:"blockHeight"`
	ID        ledger.BlockID `json:"blockIdentity"`
	Timestamp int64          `json:"blockTimestamp"`
	Epoch     uint64         `json:"epoch"`
}

func (s *server) height(w http.ResponseWriter, r *http.Request) error {
	tip, ok := s.cfg.Store.Tip()
	if !ok {
		return notFound("the store is empty")
	}
	return writeJSON(w, http.StatusOK, heightResponse{Height: tip.Height, ID: tip.ID, Timestamp: tip.Header.Timestamp, Epoch: tip.Header.Epoch})
}

// parseDigest parses a 64-hex-digit path value.
func parseDigest(name, v string) (gm.Digest, error) {
	var d gm.Digest
	if err := d.UnmarshalText([]byte(v)); err != nil {
		return d, badRequest("%s %q is not 64 hex digits", name, v)
	}
	return d, nil
}

// decodeTx reads a transaction from a JSON or CBOR body.
func decodeTx(r *http.Request, body []byte) (*ledger.Transaction, error) {
	if len(body) == 0 {
		return nil, badRequest("empty body: send a transaction as JSON or CBOR (Content-Type: application/cbor)")
	}
	ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	if ct == "application/cbor" {
		tx, err := ledger.DecodeTx(body)
		if err != nil {
			return nil, &apiError{status: http.StatusBadRequest, code: reason.Malformed, reason: reason.Malformed.String(), detail: err.Error()}
		}
		return tx, nil
	}
	var tx ledger.Transaction
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tx); err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: reason.Malformed, reason: reason.Malformed.String(), detail: "transaction JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &apiError{status: http.StatusBadRequest, code: reason.Malformed, reason: reason.Malformed.String(), detail: "trailing data after the transaction"}
	}
	return &tx, nil
}

type submitResponse struct {
	ID     ledger.TxID `json:"transactionId"`
	Status string      `json:"status"` // accepted or duplicate
}

// adminTypes are the transactions only the admin endpoint takes, with the
// roles the authenticated account needs for each.
func adminRoles(t ledger.TxType) (ledger.Role, bool) {
	switch {
	case t == ledger.TxAccountFreeze || t == ledger.TxAccountUnfreeze:
		return ledger.RoleAdmin | ledger.RoleRegulator, true
	case t == ledger.TxRecordMask:
		return ledger.RoleRegulator, true
	case t == ledger.TxAccountRegister || t == ledger.TxAccountSetRoles:
		return ledger.RoleAdmin, true
	case t>>8 == 0x06: // gov.*
		return ledger.RoleAdmin, true
	}
	return 0, false
}

func (s *server) submit(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	tx, err := decodeTx(r, body)
	if err != nil {
		return err
	}
	if _, admin := adminRoles(tx.Body.Type); admin {
		return &apiError{status: http.StatusForbidden, reason: "admin-endpoint",
			detail: fmt.Sprintf("%s is an administrative transaction: submit it to POST /v1/admin/transactions with a signed request", tx.Body.Type)}
	}
	return s.add(w, tx)
}

func (s *server) add(w http.ResponseWriter, tx *ledger.Transaction) error {
	if tx.Body.ChainID != s.cfg.ChainID {
		return &apiError{status: http.StatusBadRequest, code: reason.WrongChain, reason: reason.WrongChain.String(),
			detail: fmt.Sprintf("transaction for chain %q, this is %q", tx.Body.ChainID, s.cfg.ChainID)}
	}
	err := s.cfg.Pool.Add(tx, mempool.FromAPI)
	if s.cfg.Reject != nil {
		s.cfg.Reject(err)
	}
	switch {
	case err == nil:
		return writeJSON(w, http.StatusAccepted, submitResponse{ID: tx.ID(), Status: "accepted"})
	case errors.Is(err, mempool.ErrDuplicate):
		return writeJSON(w, http.StatusOK, submitResponse{ID: tx.ID(), Status: "duplicate"})
	case errors.Is(err, mempool.ErrBusy):
		return &apiError{status: http.StatusServiceUnavailable, reason: "busy", detail: "the mempool is full; retry later"}
	}
	code := reason.Of(err)
	switch {
	case code == reason.Internal:
		return err
	case code < 200:
		return &apiError{status: http.StatusBadRequest, code: code, reason: code.String(), detail: err.Error()}
	default:
		return &apiError{status: http.StatusUnprocessableEntity, code: code, reason: code.String(), detail: err.Error()}
	}
}

// denied records a refused admin request in the audit log (rate-limited,
// so that a flood of unauthenticated requests cannot flood the disk) and
// returns the error.
func (s *server) denied(r *http.Request, e *authError) error {
	s.cfg.Metrics.APIAuthDenied.WithLabelValues(e.reason).Inc()
	actor := e.actor
	if actor == "" {
		actor = "anonymous@" + r.RemoteAddr
	}
	if s.audit.allow(s.cfg.Now()) {
		entry := storage.AuditEntry{
			Time: s.cfg.Now().UnixMilli(), Actor: actor, Action: "api " + r.Method + " " + r.URL.Path,
			Outcome: e.reason, Detail: e.detail,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Store.AppendAudit(ctx, entry); err != nil {
			s.log.Warn("auditing a refused request", "err", err)
		}
	}
	return e
}

// auditLimiter bounds the audit entries refused requests may write.
type auditLimiter struct {
	mu        sync.Mutex
	perSecond int
	second    int64
	used      int
}

func (l *auditLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.second {
		l.second, l.used = sec, 0
	}
	if l.used >= l.perSecond {
		return false
	}
	l.used++
	return true
}

func (s *server) adminSubmit(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	acct, aerr := s.authenticate(r, body)
	if aerr != nil {
		return s.denied(r, aerr)
	}
	tx, err := decodeTx(r, body)
	if err != nil {
		return err
	}
	need, admin := adminRoles(tx.Body.Type)
	if !admin {
		return badRequest("%s is not an administrative transaction: submit it to POST /v1/transactions", tx.Body.Type)
	}
	if acct.Roles&need == 0 {
		return s.denied(r, forbidden(acct.Address.String(), "%s needs one of the roles %v; the account has %v", tx.Body.Type, need.Names(), acct.Roles.Names()))
	}
	s.log.Info("admin transaction submitted", "by", acct.Address, "type", tx.Body.Type, "tx", tx.ID())
	return s.add(w, tx)
}

type txResponse struct {
	ID     ledger.TxID `json:"transactionId"`
	Status string      `json:"status"` // committed or pending
	// Committed transactions:
	Height      uint64              `json:"blockHeight,omitempty"`
	BlockID     *ledger.BlockID     `json:"blockIdentity,omitempty"`
	Index       *int                `json:"index,omitempty"`
	Result      *resultJSON         `json:"result,omitempty"`
	Transaction *ledger.Transaction `json:"transaction,omitempty"`
	Header      *ledger.Header      `json:"header,omitempty"`
	Proof       *ledger.MerkleProof `json:"proof,omitempty"`
}

type resultJSON struct {
	Code   uint16 `json:"code"`
	Reason string `json:"reason"`
}

func (s *server) transaction(w http.ResponseWriter, r *http.Request) error {
	id, err := parseDigest("transaction id", r.PathValue("id"))
	if err != nil {
		return err
	}
	inc, err := s.cfg.Store.Tx(r.Context(), id, s.cfg.Fetcher)
	if errors.Is(err, storage.ErrUnavailable) {
		return &apiError{status: http.StatusServiceUnavailable, reason: "unavailable",
			detail: fmt.Sprintf("the block holding %s cannot be rebuilt now: %v", id, err)}
	}
	if errors.Is(err, storage.ErrNotFound) {
		if s.cfg.Pool.Has(id) {
			return writeJSON(w, http.StatusOK, txResponse{ID: id, Status: "pending"})
		}
		return notFound("no transaction %s on this node (committed or pending)", id)
	}
	if err != nil {
		return err
	}
	resp := txResponse{ID: id, Status: "committed", Height: inc.Height, BlockID: &inc.Header.ID, Index: &inc.Index,
		Transaction: &inc.Tx, Header: &inc.Header.Header, Proof: &inc.Proof}
	if codes, err := s.results(inc.Height); err == nil && inc.Index < len(codes) {
		c := codes[inc.Index]
		resp.Result = &resultJSON{Code: uint16(c), Reason: c.String()}
	}
	return writeJSON(w, http.StatusOK, resp)
}

// results returns the execution result codes of the block at height, from
// the record the node stores beside it.
func (s *server) results(h uint64) ([]reason.Code, error) {
	b, err := s.cfg.Store.CommitCert(h)
	if err != nil {
		return nil, err
	}
	rec, err := blockrec.Decode(b)
	if err != nil {
		return nil, err
	}
	return rec.Results, nil
}

// block reads the committed block at height h, rebuilding its body from
// peers' shards when it is outside this node's window.
func (s *server) block(ctx context.Context, h uint64) (*ledger.Block, error) {
	b, err := s.cfg.Store.Block(ctx, h, s.cfg.Fetcher)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("no block at height %d", h)
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, &apiError{status: http.StatusServiceUnavailable, reason: "unavailable",
			detail: fmt.Sprintf("block %d is outside this node's window and too few peers answered with its shards: %v", h, err)}
	}
	return b, err
}

func (s *server) writeBlock(w http.ResponseWriter, r *http.Request, h uint64) error {
	b, err := s.block(r.Context(), h)
	if err != nil {
		return err
	}
	// The block's own JSON object, with the transactions' results added
	// as one more field (spliced in rather than decoded and encoded again:
	// clients poll this).
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return fmt.Errorf("api: block %d encodes as %.20q, not an object", h, body)
	}
	results := []resultJSON{}
	if codes, err := s.results(h); err == nil {
		for _, c := range codes {
			results = append(results, resultJSON{Code: uint16(c), Reason: c.String()})
		}
	}
	rj, err := json.Marshal(results)
	if err != nil {
		return err
	}
	type field struct {
		name string
		raw  []byte
	}
	extra := []field{{"results", rj}}
	if p := s.commitProof(h); p != nil {
		pj, err := json.Marshal(p)
		if err != nil {
			return err
		}
		extra = append(extra, field{"commitProof", pj})
	}
	obj := make([]byte, 0, len(body)+len(rj)+64)
	obj = append(obj, body[:len(body)-1]...)
	for i, f := range extra {
		if i > 0 || len(body) > 2 {
			obj = append(obj, ',')
		}
		obj = append(obj, '"')
		obj = append(obj, f.name...)
		obj = append(obj, `":`...)
		obj = append(obj, f.raw...)
	}
	obj = append(obj, '}')
	return writeJSON(w, http.StatusOK, json.RawMessage(obj))
}

func (s *server) blockByHeight(w http.ResponseWriter, r *http.Request) error {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil {
		return badRequest("height %q is not a number", r.PathValue("height"))
	}
	switch view := r.URL.Query().Get("view"); view {
	case "":
		return s.writeBlock(w, r, h)
	case "txids":
		return s.writeBlockTxIDs(w, r, h)
	default:
		return badRequest("view %q: the only view is txids", view)
	}
}

// writeBlockTxIDs answers with a block's id and its transactions' ids in
// block order: what a client following the chain for its own transactions
// needs, without the transactions' bodies, results and commit proof.
func (s *server) writeBlockTxIDs(w http.ResponseWriter, r *http.Request, h uint64) error {
	b, err := s.block(r.Context(), h)
	if err != nil {
		return err
	}
	ids := make([]ledger.TxID, len(b.Txs))
	for i := range b.Txs {
		ids[i] = b.Txs[i].ID()
	}
	return writeJSON(w, http.StatusOK, blockTxIDsJSON{Height: h, ID: b.Header.ID(), TxIDs: ids})
}

// blockTxIDsJSON is the answer of GET /v1/blocks/{height}?view=txids.
type blockTxIDsJSON struct {
	Height uint64         `json:"blockHeight"`
	ID     ledger.BlockID `json:"blockIdentity"`
	TxIDs  []ledger.TxID  `json:"transactionIds"`
}

func (s *server) blockByID(w http.ResponseWriter, r *http.Request) error {
	id, err := parseDigest("block id", r.PathValue("id"))
	if err != nil {
		return err
	}
	hdr, err := s.cfg.Store.HeaderByID(id)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("no block %s", id)
	}
	if err != nil {
		return err
	}
	return s.writeBlock(w, r, hdr.Height)
}

func (s *server) account(w http.ResponseWriter, r *http.Request) error {
	d, err := parseDigest("address", r.PathValue("address"))
	if err != nil {
		return err
	}
	a, err := app.GetAccount(s.view, ledger.Address(d))
	if err != nil {
		return err
	}
	if a == nil {
		return notFound("no account %s", d)
	}
	return writeJSON(w, http.StatusOK, a)
}

func (s *server) balance(w http.ResponseWriter, r *http.Request) error {
	d, err := parseDigest("address", r.PathValue("address"))
	if err != nil {
		return err
	}
	sym := r.PathValue("symbol")
	asset, err := app.GetAsset(s.view, sym)
	if err != nil {
		return err
	}
	if asset == nil {
		return notFound("no asset %q", sym)
	}
	v, err := app.Balance(s.view, sym, ledger.Address(d))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"address": ledger.Address(d), "symbol": sym, "balance": v, "decimals": asset.Decimals})
}

func (s *server) record(w http.ResponseWriter, r *http.Request) error {
	id, err := parseDigest("record id", r.PathValue("id"))
	if err != nil {
		return err
	}
	rec, err := app.GetRecord(s.view, id)
	if err != nil {
		return err
	}
	if rec == nil {
		return notFound("no record %s", id)
	}
	return writeJSON(w, http.StatusOK, rec)
}

func (s *server) recordsBySubject(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	subject, err := parseDigest("subject", q.Get("subject"))
	if err != nil {
		return err
	}
	var after gm.Digest
	if v := q.Get("after"); v != "" {
		if after, err = parseDigest("after", v); err != nil {
			return err
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return badRequest("limit must be 1 to 1000")
		}
	}
	ids, err := app.RecordsBySubject(s.view, ledger.Address(subject), after, limit)
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []gm.Digest{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"subject": ledger.Address(subject), "records": ids})
}

// recordContent serves a record's content to an authorised reader, after
// writing the read's audit entry.
func (s *server) recordContent(w http.ResponseWriter, r *http.Request) error {
	id, err := parseDigest("record id", r.PathValue("id"))
	if err != nil {
		return err
	}
	acct, aerr := s.authenticate(r, nil)
	if aerr != nil {
		return s.denied(r, aerr)
	}
	dec, err := app.AuthorizeRead(s.view, app.ReadRequest{
		Reader: acct.Address, Record: id, Time: s.cfg.Now().UnixMilli(), Purpose: r.URL.Query().Get("purpose"), Node: s.cfg.Node(),
	})
	if err != nil {
		return err
	}
	ev := dec.Event
	entry := storage.AuditEntry{Time: ev.Time, Actor: ev.Actor.String(), Action: "record.read", Record: id.String(),
		Outcome: "ok", Detail: ev.Note, Height: ev.Height}
	if ev.Outcome != reason.OK {
		entry.Outcome = ev.Outcome.String()
	}
	if ev.Grant != nil {
		entry.Grant = ev.Grant.String()
	}
	// The audit entry is on disk before anything is served.
	if err := s.cfg.Store.AppendAudit(r.Context(), entry); err != nil {
		return err
	}
	if dec.Record == nil {
		return notFound("no record %s", id)
	}
	if !dec.Allowed {
		code := ev.Outcome
		s.cfg.Metrics.APIAuthDenied.WithLabelValues("forbidden").Inc()
		return &apiError{status: http.StatusForbidden, code: code, reason: code.String(), detail: "no ownership, grant or regulator role covers this read"}
	}
	if !dec.Record.HasPayload() {
		return writeJSON(w, http.StatusOK, map[string]any{"record": dec.Record, "basis": dec.Basis.String()})
	}
	p, err := s.cfg.Store.Payload(dec.Record.Digest)
	switch {
	case errors.Is(err, storage.ErrMasked):
		return &apiError{status: http.StatusGone, code: reason.RecordMasked, reason: reason.RecordMasked.String(), detail: "the payload was masked by the regulator"}
	case errors.Is(err, storage.ErrNotFound):
		return notFound("this node does not hold the payload %s", dec.Record.Digest)
	case err != nil:
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Hallmark-Read-Basis", dec.Basis.String())
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(p)
	return err
}

func (s *server) certificate(w http.ResponseWriter, r *http.Request) error {
	d, err := parseDigest("document digest", r.PathValue("digest"))
	if err != nil {
		return err
	}
	at := s.cfg.Now().UnixMilli()
	if v := r.URL.Query().Get("at"); v != "" {
		if at, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("at must be milliseconds since 1970")
		}
	}
	st, cert, err := app.VerifyCertificate(s.view, d, at)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"documentDigest": d, "status": st, "at": at, "certificate": cert})
}

func (s *server) grants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var grants []app.Grant
	switch {
	case q.Get("subject") != "":
		d, err := parseDigest("subject", q.Get("subject"))
		if err != nil {
			return err
		}
		if grants, err = app.GrantsBySubject(s.view, ledger.Address(d)); err != nil {
			return err
		}
	case q.Get("grantee") != "":
		d, err := parseDigest("grantee", q.Get("grantee"))
		if err != nil {
			return err
		}
		if grants, err = app.GrantsToGrantee(s.view, ledger.Address(d)); err != nil {
			return err
		}
	default:
		return badRequest("give subject or grantee")
	}
	if grants == nil {
		grants = []app.Grant{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"grants": grants})
}

func (s *server) auditExport(w http.ResponseWriter, r *http.Request) error {
	acct, aerr := s.authenticate(r, nil)
	if aerr != nil {
		return s.denied(r, aerr)
	}
	if acct.Roles&(ledger.RoleAdmin|ledger.RoleRegulator|ledger.RoleOfficer) == 0 {
		return s.denied(r, forbidden(acct.Address.String(), "reading the audit log needs the admin, regulator or officer role"))
	}
	q := r.URL.Query()
	now := s.cfg.Now()
	from, to := now.Add(-24*time.Hour), now.Add(time.Minute)
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("from must be RFC 3339")
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("to must be RFC 3339")
		}
	}
	if err := s.cfg.Store.AppendAudit(r.Context(), storage.AuditEntry{Time: now.UnixMilli(), Actor: acct.Address.String(),
		Action: "audit.export", Outcome: "ok", Detail: from.Format(time.RFC3339) + " to " + to.Format(time.RFC3339)}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	_, err = s.cfg.Store.ExportAudit(r.Context(), w, from, to)
	return err
}
