package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"hallmark/consensus"
	"hallmark/firmware/blockrec"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/storage"
)

// NodeKeys is the node's side of its key ceremonies: the keys it holds,
// creating the next key of a rotation (the node holds its TPM connection,
// so the key is created through it), and destroying a retired key.
type NodeKeys interface {
	List() []NodeKey
	// Rotate creates a key at ref in the node's custody and returns the
	// rotation statement (the gov.node-rotate-key body) signed by the
	// current and the new key.
	Rotate(ctx context.Context, ref, reason string) (*NodeKeyRotation, error)
	// Destroy destroys a key the node no longer needs: not its identity,
	// not in the current epoch's or the committed validator set.
	Destroy(ctx context.Context, id gm.KeyID) (*NodeKey, error)
}

// NodeKey describes one key a node holds.
type NodeKey struct {
	KeyID     gm.KeyID              `json:"keyId"`
	PublicKey ledger.PublicKeyBytes `json:"publicKey"`
	Ref       string                `json:"ref"`
	Custody   string                `json:"custody"`
	// Identity: the key the node presents to its peers.
	Identity bool `json:"identity"`
	// InEpoch: the current epoch's validator set lists it (the node votes
	// with it); InCommitted: the committed validator set does (the next
	// epoch's).
	InEpoch     bool `json:"inEpoch"`
	InCommitted bool `json:"inCommitted"`
}

// NodeKeyRotation is the answer to a rotation request.
type NodeKeyRotation struct {
	Old NodeKey `json:"old"`
	New NodeKey `json:"new"`
	// Statement is the canonical CBOR of the gov.node-rotate-key body.
	Statement hexBytes `json:"statement"`
}

// ErrConflict marks a key operation refused because of the node's state
// (a key still in use, a rotation already under way).
var ErrConflict = errors.New("conflict")

func (s *server) keyOp(r *http.Request, body []byte, roles ledger.Role, what string) (*ledger.Account, error) {
	if s.cfg.Keys == nil {
		return nil, notFound("this node does not manage its keys through the API")
	}
	acct, aerr := s.authenticate(r, body)
	if aerr != nil {
		return nil, s.denied(r, aerr)
	}
	if acct.Roles&roles == 0 {
		return nil, s.denied(r, forbidden(acct.Address.String(), "%s needs one of the roles %v; the account has %v", what, roles.Names(), acct.Roles.Names()))
	}
	return acct, nil
}

func (s *server) auditKeyOp(ctx context.Context, actor ledger.Address, action string, err error, detail string) {
	e := storage.AuditEntry{Time: s.cfg.Now().UnixMilli(), Actor: actor.String(), Action: action, Outcome: "ok", Detail: detail}
	if err != nil {
		e.Outcome, e.Detail = "failed", joinDetail(detail, err.Error())
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if aerr := s.cfg.Store.AppendAudit(actx, e); aerr != nil {
		s.log.Warn("auditing a node key operation", "err", aerr)
	}
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func keyOpError(err error) error {
	if errors.Is(err, ErrConflict) {
		return &apiError{status: http.StatusConflict, reason: "conflict", detail: err.Error()}
	}
	return &apiError{status: http.StatusUnprocessableEntity, reason: "key-operation-failed", detail: err.Error()}
}

func (s *server) nodeKeys(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.keyOp(r, nil, ledger.RoleOfficer|ledger.RoleAdmin|ledger.RoleRegulator, "listing the node's keys"); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"keys": s.cfg.Keys.List()})
}

type rotateRequest struct {
	Ref    string `json:"ref"`
	Reason string `json:"reason,omitempty"`
}

func (s *server) rotateNodeKey(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	acct, err := s.keyOp(r, body, ledger.RoleOfficer, "rotating the node key")
	if err != nil {
		return err
	}
	var req rotateRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("body: %v", err)
	}
	if req.Ref == "" {
		return badRequest("ref: the reference of the new key is required, e.g. tpm:handle=auto")
	}
	rot, err := s.cfg.Keys.Rotate(r.Context(), req.Ref, req.Reason)
	detail := "new key " + req.Ref
	if rot != nil {
		detail = "old key " + rot.Old.KeyID.String() + ", new key " + rot.New.KeyID.String() + " at " + rot.New.Ref
	}
	s.auditKeyOp(r.Context(), acct.Address, "node-key.rotate", err, detail)
	if err != nil {
		return keyOpError(err)
	}
	s.log.Info("node key rotation prepared", "by", acct.Address, "old", rot.Old.KeyID, "new", rot.New.KeyID, "ref", rot.New.Ref)
	return writeJSON(w, http.StatusCreated, rot)
}

func (s *server) destroyNodeKey(w http.ResponseWriter, r *http.Request) error {
	acct, err := s.keyOp(r, nil, ledger.RoleOfficer, "destroying a node key")
	if err != nil {
		return err
	}
	id, err := parseDigest("key id", r.PathValue("id"))
	if err != nil {
		return err
	}
	k, err := s.cfg.Keys.Destroy(r.Context(), gm.KeyID(id))
	s.auditKeyOp(r.Context(), acct.Address, "node-key.destroy", err, "key "+gm.KeyID(id).String())
	if err != nil {
		return keyOpError(err)
	}
	s.log.Info("node key destroyed", "by", acct.Address, "key", k.KeyID, "ref", k.Ref)
	return writeJSON(w, http.StatusOK, map[string]any{"destroyed": k})
}

// ValidatorsStatus is GET /v1/validators: the current epoch's set and the
// committed state's (the next epoch's when a change is pending).
type ValidatorsStatus struct {
	Epoch      uint64              `json:"epoch"`
	Validators []ledger.PeerConfig `json:"validators"`
	Committed  []ledger.PeerConfig `json:"committed"`
	Pending    bool                `json:"pending"`
}

func (s *server) validators(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Epoch == nil {
		return notFound("no epoch information")
	}
	ep := s.cfg.Epoch()
	vs, err := app.Validators(s.view)
	if err != nil {
		return err
	}
	a, _ := ledger.Marshal(ep.Validators.Validators)
	b, _ := ledger.Marshal(vs.Validators)
	return writeJSON(w, http.StatusOK, ValidatorsStatus{
		Epoch: ep.Epoch(), Validators: ep.Validators.Validators, Committed: vs.Validators, Pending: string(a) != string(b),
	})
}

func (s *server) proposal(w http.ResponseWriter, r *http.Request) error {
	id, err := parseDigest("proposal id", r.PathValue("id"))
	if err != nil {
		return err
	}
	p, err := app.GetProposal(s.view, id)
	if err != nil {
		return err
	}
	if p == nil {
		return notFound("no pending proposal %s (never made, executed or expired)", id)
	}
	params, err := app.Params(s.view)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"proposal": p, "threshold": params.GovThreshold})
}

// commitProofJSON is a block's commit certificate as the API shows it:
// the QC's vote data and the validators whose signatures it carries.
type commitProofJSON struct {
	Epoch       uint64         `json:"epoch"`
	Round       uint64         `json:"round"`
	Height      uint64         `json:"height"`
	BlockID     ledger.BlockID `json:"blockIdentity"`
	ParentID    ledger.BlockID `json:"parentIdentity"`
	ParentRound uint64         `json:"parentRound"`
	// Proves is the block the proof commits (this one).
	Proves     ledger.BlockID `json:"proves"`
	Signers    []gm.KeyID     `json:"signers"`
	Signatures []hexBytes     `json:"signatures"`
}

// commitProof returns block h's commit proof, if its record carries one.
func (s *server) commitProof(h uint64) *commitProofJSON {
	raw, err := s.cfg.Store.CommitCert(h)
	if err != nil || raw == nil {
		return nil
	}
	rec, err := blockrec.Decode(raw)
	if err != nil {
		return nil
	}
	p, err := rec.CommitProof()
	if err != nil || p == nil {
		return nil
	}
	return proofJSON(p, s.cfg.EpochValidators)
}

func proofJSON(p *consensus.CommitProof, lookup func(uint64) (ledger.ValidatorSet, error)) *commitProofJSON {
	d := p.QC.Data
	out := &commitProofJSON{Epoch: d.Epoch, Round: d.Round, Height: d.Height, BlockID: d.BlockID, ParentID: d.ParentID,
		ParentRound: d.ParentRound, Proves: p.Proves()}
	var vs ledger.ValidatorSet
	if lookup != nil {
		vs, _ = lookup(d.Epoch)
	}
	for i := range vs.N() {
		if i/8 < len(p.QC.Signers) && p.QC.Signers[i/8]&(1<<(i%8)) != 0 {
			out.Signers = append(out.Signers, vs.Validators[i].PeerID)
		}
	}
	for _, sig := range p.QC.Signatures {
		out.Signatures = append(out.Signatures, hexBytes(sig[:]))
	}
	return out
}
