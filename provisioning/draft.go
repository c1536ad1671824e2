package provisioning

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

// DraftVersion is the only transaction draft version this build reads.
const DraftVersion = 1

// MaxDraftBytes bounds a draft file.
const MaxDraftBytes = 4 << 20

// ErrDraft wraps every refused draft operation.
var ErrDraft = errors.New("provisioning: transaction draft")

// Draft is a transaction being signed by several parties, passed between
// them as a file: the body (whose signer list is fixed, since the id
// covers it) and one signature slot per signer, filled in any order. A
// governance action carrying all its approvals at once, or an account
// registration co-signed by the key it installs, travel as drafts.
//
// The transaction's timestamp must lie within the chain's window
// (Params.TxWindowMs, 5 minutes by default) of the block that includes it,
// so a draft is for signers who sign within minutes of each other; slower
// ceremonies submit a proposal and collect gov.approve transactions.
type Draft struct {
	Version     int    `json:"version"`
	Description string `json:"description,omitempty"`
	// Body is the canonical CBOR of the transaction body.
	Body []byte `json:"body"`
	// Signatures[i] is Signers[i]'s signature in hex, or "" until signed.
	Signatures []string `json:"signatures"`
	// Payload travels beside the transaction, if it names one.
	Payload []byte `json:"payload,omitempty"`

	body ledger.TxBody
}

// NewDraft starts a draft for body, which must be well formed apart from
// its signatures.
func NewDraft(body ledger.TxBody, description string) (*Draft, error) {
	enc, err := ledger.Marshal(&body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDraft, err)
	}
	d := &Draft{Version: DraftVersion, Description: description, Body: enc, Signatures: make([]string, len(body.Signers)), body: body}
	if err := d.check(); err != nil {
		return nil, err
	}
	return d, nil
}

// DecodeDraft reads a draft file and checks it: the body, and every
// signature present.
func DecodeDraft(b []byte) (*Draft, error) {
	if len(b) > MaxDraftBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrDraft, len(b), MaxDraftBytes)
	}
	var d Draft
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: not a transaction draft: %v", ErrDraft, err)
	}
	if d.Version != DraftVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrDraft, d.Version, DraftVersion)
	}
	if err := ledger.Unmarshal(d.Body, &d.body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrDraft, err)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Encode returns the draft as indented JSON.
func (d *Draft) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// TxBody returns the transaction body.
func (d *Draft) TxBody() ledger.TxBody { return d.body }

// ID returns the transaction id.
func (d *Draft) ID() ledger.TxID { return d.body.ID() }

func (d *Draft) check() error {
	if len(d.Signatures) != len(d.body.Signers) {
		return fmt.Errorf("%w: %d signature slots for %d signers", ErrDraft, len(d.Signatures), len(d.body.Signers))
	}
	// Validate the structure with placeholder signatures.
	tx := &ledger.Transaction{Body: d.body, Signatures: make([]gm.Signature, len(d.body.Signers)), Payload: d.Payload}
	if err := tx.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrDraft, err)
	}
	msg := ledger.SignBytes(d.ID())
	for i, s := range d.Signatures {
		if s == "" {
			continue
		}
		sig, err := parseSig(s)
		if err != nil {
			return fmt.Errorf("%w: signature %d: %v", ErrDraft, i, err)
		}
		key, _ := d.body.Signers[i].Parse()
		if !key.Verify(msg, sig) {
			return fmt.Errorf("%w: signature %d (by %s) does not verify", ErrDraft, i, d.body.Signers[i].ID())
		}
	}
	return nil
}

func parseSig(s string) (gm.Signature, error) {
	var sig gm.Signature
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(sig) {
		return sig, errors.New("not 64 bytes of hex")
	}
	copy(sig[:], b)
	return sig, nil
}

// Sign adds signer's signature in its slot. The signer must be one of the
// draft's signers and not have signed yet.
func (d *Draft) Sign(ctx context.Context, signer gm.Signer) error {
	pk := ledger.KeyBytes(signer.PublicKey())
	i := -1
	for j, s := range d.body.Signers {
		if s == pk {
			i = j
		}
	}
	if i < 0 {
		var ids []string
		for _, s := range d.body.Signers {
			ids = append(ids, s.ID().String()[:16])
		}
		return fmt.Errorf("%w: key %s is not among this transaction's signers (%s)", ErrDraft, pk.ID(), strings.Join(ids, ", "))
	}
	if d.Signatures[i] != "" {
		return fmt.Errorf("%w: key %s has signed already", ErrDraft, pk.ID())
	}
	msg := ledger.SignBytes(d.ID())
	sig, err := signer.Sign(ctx, msg)
	if err != nil {
		return fmt.Errorf("provisioning: signing the draft: %w", err)
	}
	if !signer.PublicKey().Verify(msg, sig) {
		return fmt.Errorf("%w: the signature of %s does not verify", ErrDraft, pk.ID())
	}
	d.Signatures[i] = hex.EncodeToString(sig[:])
	return nil
}

// Missing returns the signers that have not signed.
func (d *Draft) Missing() []ledger.PublicKeyBytes {
	var out []ledger.PublicKeyBytes
	for i, s := range d.Signatures {
		if s == "" {
			out = append(out, d.body.Signers[i])
		}
	}
	return out
}

// Transaction returns the signed transaction once every signer has
// signed. It refuses a draft whose timestamp is already outside the
// chain's window at now (window in ms): the chain would refuse it as
// too-old.
func (d *Draft) Transaction(now time.Time, windowMs uint64) (*ledger.Transaction, error) {
	if m := d.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("%w: %d of %d signers have not signed yet (%s)", ErrDraft, len(m), len(d.body.Signers), keyList(m))
	}
	if windowMs > 0 {
		age := now.UnixMilli() - d.body.Timestamp
		if age > int64(windowMs) {
			return nil, fmt.Errorf("%w: the transaction was made %v ago, beyond the chain's %v window: the chain would refuse it as too-old; make it again, or propose it and collect gov.approve transactions instead",
				ErrDraft, time.Duration(age)*time.Millisecond, time.Duration(windowMs)*time.Millisecond)
		}
	}
	tx := &ledger.Transaction{Body: d.body, Payload: d.Payload}
	for _, s := range d.Signatures {
		sig, err := parseSig(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDraft, err)
		}
		tx.Signatures = append(tx.Signatures, sig)
	}
	if err := tx.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDraft, err)
	}
	if err := tx.VerifySignatures(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDraft, err)
	}
	return tx, nil
}
