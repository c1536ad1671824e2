package consensus

import (
	"errors"
	"fmt"
	"math/bits"

	"hallmark/gm"
	"hallmark/ledger"
)

// Version is the format version of every structure this package encodes:
// the message envelope, certificates, commit proofs and safety data. A
// decoder refuses any other value.
const Version = 1

// Limits every decoder enforces.
const (
	// MaxValidators bounds a validator set (and so bitmaps and signature
	// lists).
	MaxValidators = 256
	// MaxFetchBlocks bounds the blocks one fetch response carries.
	MaxFetchBlocks = 64
	// MaxSyncBlocks bounds the blocks one sync response carries.
	MaxSyncBlocks = 256
	// MaxProofLinks bounds the headers in a commit proof between the
	// certified block and the committed one.
	MaxProofLinks = 64
	// MaxMessageBytes bounds one encoded message. A proposal carries a
	// whole block with payloads; a sync or fetch response carries several.
	MaxMessageBytes = 256 << 20
	// MaxSafetyBytes bounds encoded safety data.
	MaxSafetyBytes = 64 << 10
)

// Domain tags of the signatures this package defines. Each signed message
// is the tag followed by the canonical CBOR of a small struct that names
// the chain, so a signature can never be replayed as another kind, on
// another chain, or as a transaction signature.
const (
	voteDomain     = "hallmark/vote/v1\x00"
	timeoutDomain  = "hallmark/timeout/v1\x00"
	proposalDomain = "hallmark/proposal/v1\x00"
)

// Errors the decoders and verifiers return. Each is wrapped with detail.
var (
	ErrMalformed = errors.New("consensus: malformed message")
	ErrSignature = errors.New("consensus: bad signature")
	ErrEpoch     = errors.New("consensus: wrong epoch")
	ErrInvalid   = errors.New("consensus: message breaks a protocol rule")
)

// VoteData is what a vote, and so a quorum certificate, certifies: block
// BlockID at Height was proposed in Round of Epoch and extends ParentID,
// certified in ParentRound. ParentRound is 0 when the parent is the
// epoch's root (the last block of the previous epoch, or genesis). A
// certificate on a block whose ParentRound+1 == Round is a commit proof
// for the parent (the two-chain rule), which is why the parent is signed
// too: a QC alone then proves a commit.
type VoteData struct {
	Epoch       uint64         `cbor:"1,keyasint"`
	Round       uint64         `cbor:"2,keyasint"`
	BlockID     ledger.BlockID `cbor:"3,keyasint"`
	Height      uint64         `cbor:"4,keyasint"`
	ParentID    ledger.BlockID `cbor:"5,keyasint"`
	ParentRound uint64         `cbor:"6,keyasint"`
}

// CommitsParent reports whether a certificate on this vote data commits the
// parent block: the parent was certified in the round just before, and is
// not the epoch's root (which is committed already).
func (d *VoteData) CommitsParent() bool {
	return d.ParentRound > 0 && d.ParentRound+1 == d.Round
}

// QC is a quorum certificate: the signatures of at least a quorum of the
// epoch's validators on the same VoteData. Signers is a bitmap over the
// validator indices (validator i is bit i%8 of byte i/8, least significant
// bit first) and Signatures lists their signatures in index order. A QC of
// round 0 is an epoch's genesis certificate: it certifies the epoch's root
// block and carries no signatures.
type QC struct {
	Version    uint16         `cbor:"1,keyasint"`
	Data       VoteData       `cbor:"2,keyasint"`
	Signers    []byte         `cbor:"3,keyasint"`
	Signatures []gm.Signature `cbor:"4,keyasint"`
}

// Round returns the round of the certified block.
func (q *QC) Round() uint64 { return q.Data.Round }

// BlockID returns the certified block's id.
func (q *QC) BlockID() ledger.BlockID { return q.Data.BlockID }

// TC is a timeout certificate: a quorum of the epoch's validators timed out
// in Round. Each signer i signed (epoch, round, HighQCRounds[i]), the round
// of the highest QC it knew; HighQC is the highest of those QCs, so that a
// proposal justified by the TC can be checked to extend it.
type TC struct {
	Version      uint16         `cbor:"1,keyasint"`
	Epoch        uint64         `cbor:"2,keyasint"`
	Round        uint64         `cbor:"3,keyasint"`
	HighQC       QC             `cbor:"4,keyasint"`
	Signers      []byte         `cbor:"5,keyasint"`
	HighQCRounds []uint64       `cbor:"6,keyasint"`
	Signatures   []gm.Signature `cbor:"7,keyasint"`
}

// Proposal carries a block proposed by the round's leader with its
// justification: the QC on its parent and, when the previous round timed
// out, the TC of that round. Signature is the proposer's over the block id.
type Proposal struct {
	Block     ledger.Block `cbor:"1,keyasint"`
	Justify   QC           `cbor:"2,keyasint"`
	TC        *TC          `cbor:"3,keyasint,omitempty"`
	Signature gm.Signature `cbor:"4,keyasint"`
}

// Vote is one validator's vote, sent to the next round's leader.
type Vote struct {
	Data      VoteData     `cbor:"1,keyasint"`
	Voter     uint32       `cbor:"2,keyasint"`
	Signature gm.Signature `cbor:"3,keyasint"`
}

// Timeout says that Voter gave up on Round. It carries the sender's highest
// QC and, when the sender entered Round through a timeout certificate, that
// certificate, so that any receiver can follow it into Round.
type Timeout struct {
	Epoch     uint64       `cbor:"1,keyasint"`
	Round     uint64       `cbor:"2,keyasint"`
	Voter     uint32       `cbor:"3,keyasint"`
	HighQC    QC           `cbor:"4,keyasint"`
	LastTC    *TC          `cbor:"5,keyasint,omitempty"`
	Signature gm.Signature `cbor:"6,keyasint"`
}

// SyncInfo hands a peer that is behind the sender's highest certificates.
type SyncInfo struct {
	HighQC QC  `cbor:"1,keyasint"`
	HighTC *TC `cbor:"2,keyasint,omitempty"`
}

// FetchRequest asks a peer for up to Count blocks ending at BlockID,
// walking back along parent links: the way a node fills gaps in its tree
// of uncommitted blocks.
type FetchRequest struct {
	Epoch   uint64         `cbor:"1,keyasint"`
	BlockID ledger.BlockID `cbor:"2,keyasint"`
	Count   uint32         `cbor:"3,keyasint"`
}

// CertifiedBlock is a block with the QC on its parent.
type CertifiedBlock struct {
	Block   ledger.Block `cbor:"1,keyasint"`
	Justify QC           `cbor:"2,keyasint"`
}

// FetchResponse answers a FetchRequest: the requested block first, then its
// ancestors, each with its justification.
type FetchResponse struct {
	Blocks []CertifiedBlock `cbor:"1,keyasint"`
}

// SyncRequest asks a peer for committed blocks from FromHeight on. Epoch is
// the requester's epoch; the responder serves blocks of that epoch only
// (the requester learns the next validator set by executing them).
type SyncRequest struct {
	Epoch      uint64 `cbor:"1,keyasint"`
	FromHeight uint64 `cbor:"2,keyasint"`
	MaxBlocks  uint32 `cbor:"3,keyasint"`
}

// SyncResponse carries committed blocks, consecutive by height and of one
// epoch, and the proof that the last of them committed. Blocks are sent as
// stored (payloads may be absent: the block id does not cover them).
type SyncResponse struct {
	Blocks []ledger.Block `cbor:"1,keyasint"`
	Proof  *CommitProof   `cbor:"2,keyasint,omitempty"`
}

// CommitProof proves that a block committed. QC certifies a block whose
// parent P was certified in the round just before (so P committed, by the
// two-chain rule). Links are the headers from P back to, but excluding, the
// block the proof is for, newest first; they are empty unless the block
// ended its epoch before P (an epoch's last block commits through the empty
// blocks that follow it).
type CommitProof struct {
	Version uint16          `cbor:"1,keyasint"`
	QC      QC              `cbor:"2,keyasint"`
	Links   []ledger.Header `cbor:"3,keyasint"`
}

// Proves returns the id of the block the proof is for.
func (p *CommitProof) Proves() ledger.BlockID {
	if len(p.Links) == 0 {
		return p.QC.Data.ParentID
	}
	return p.Links[len(p.Links)-1].PrevHash
}

// Message is the wire envelope: exactly one field besides Version is set.
type Message struct {
	Version       uint16         `cbor:"1,keyasint"`
	Proposal      *Proposal      `cbor:"2,keyasint,omitempty"`
	Vote          *Vote          `cbor:"3,keyasint,omitempty"`
	Timeout       *Timeout       `cbor:"4,keyasint,omitempty"`
	SyncInfo      *SyncInfo      `cbor:"5,keyasint,omitempty"`
	FetchRequest  *FetchRequest  `cbor:"6,keyasint,omitempty"`
	FetchResponse *FetchResponse `cbor:"7,keyasint,omitempty"`
	SyncRequest   *SyncRequest   `cbor:"8,keyasint,omitempty"`
	SyncResponse  *SyncResponse  `cbor:"9,keyasint,omitempty"`
}

// Kind names the message types, for metrics.
type Kind int

// Message kinds.
const (
	KindUnknown Kind = iota
	KindProposal
	KindVote
	KindTimeout
	KindSyncInfo
	KindFetchRequest
	KindFetchResponse
	KindSyncRequest
	KindSyncResponse
	numKinds
)

var kindNames = [numKinds]string{"unknown", "proposal", "vote", "timeout", "sync_info",
	"fetch_request", "fetch_response", "sync_request", "sync_response"}

func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Kind returns the kind of the one message the envelope carries, or
// KindUnknown if it carries none or several.
func (m *Message) Kind() Kind {
	k, n := KindUnknown, 0
	for _, c := range [...]struct {
		kind Kind
		set  bool
	}{
		{KindProposal, m.Proposal != nil}, {KindVote, m.Vote != nil}, {KindTimeout, m.Timeout != nil},
		{KindSyncInfo, m.SyncInfo != nil}, {KindFetchRequest, m.FetchRequest != nil},
		{KindFetchResponse, m.FetchResponse != nil}, {KindSyncRequest, m.SyncRequest != nil},
		{KindSyncResponse, m.SyncResponse != nil},
	} {
		if c.set {
			k, n = c.kind, n+1
		}
	}
	if n != 1 {
		return KindUnknown
	}
	return k
}

// Encode returns the canonical encoding of m.
func (m *Message) Encode() ([]byte, error) {
	b, err := ledger.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrMalformed, len(b), MaxMessageBytes)
	}
	return b, nil
}

// DecodeMessage strictly decodes a message and checks its structure and
// limits: exactly one body, known version, bounded lists, blocks whose
// headers and bodies are consistent. It verifies no signature: that needs
// the epoch's validator set.
func DecodeMessage(data []byte) (*Message, error) {
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrMalformed, len(data), MaxMessageBytes)
	}
	var m Message
	if err := ledger.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("%w: message version %d", ErrMalformed, m.Version)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Message) check() error {
	switch m.Kind() {
	case KindProposal:
		p := m.Proposal
		if err := checkBlock(&p.Block); err != nil {
			return err
		}
		if err := p.Justify.check(); err != nil {
			return err
		}
		if p.TC != nil {
			return p.TC.check()
		}
	case KindVote:
		if m.Vote.Voter >= MaxValidators {
			return fmt.Errorf("%w: voter index %d", ErrMalformed, m.Vote.Voter)
		}
	case KindTimeout:
		t := m.Timeout
		if t.Voter >= MaxValidators {
			return fmt.Errorf("%w: voter index %d", ErrMalformed, t.Voter)
		}
		if err := t.HighQC.check(); err != nil {
			return err
		}
		if t.LastTC != nil {
			return t.LastTC.check()
		}
	case KindSyncInfo:
		if err := m.SyncInfo.HighQC.check(); err != nil {
			return err
		}
		if m.SyncInfo.HighTC != nil {
			return m.SyncInfo.HighTC.check()
		}
	case KindFetchRequest:
		if m.FetchRequest.Count == 0 || m.FetchRequest.Count > MaxFetchBlocks {
			return fmt.Errorf("%w: fetch of %d blocks", ErrMalformed, m.FetchRequest.Count)
		}
	case KindFetchResponse:
		if len(m.FetchResponse.Blocks) > MaxFetchBlocks {
			return fmt.Errorf("%w: fetch response of %d blocks", ErrMalformed, len(m.FetchResponse.Blocks))
		}
		for i := range m.FetchResponse.Blocks {
			cb := &m.FetchResponse.Blocks[i]
			if err := checkBlock(&cb.Block); err != nil {
				return err
			}
			if err := cb.Justify.check(); err != nil {
				return err
			}
		}
	case KindSyncRequest:
		if m.SyncRequest.MaxBlocks == 0 || m.SyncRequest.MaxBlocks > MaxSyncBlocks {
			return fmt.Errorf("%w: sync of %d blocks", ErrMalformed, m.SyncRequest.MaxBlocks)
		}
	case KindSyncResponse:
		r := m.SyncResponse
		if len(r.Blocks) > MaxSyncBlocks {
			return fmt.Errorf("%w: sync response of %d blocks", ErrMalformed, len(r.Blocks))
		}
		if len(r.Blocks) > 0 && r.Proof == nil {
			return fmt.Errorf("%w: sync response without commit proof", ErrMalformed)
		}
		for i := range r.Blocks {
			if err := checkBlock(&r.Blocks[i]); err != nil {
				return err
			}
		}
		if r.Proof != nil {
			return r.Proof.check()
		}
	default:
		return fmt.Errorf("%w: envelope must carry exactly one message", ErrMalformed)
	}
	return nil
}

// checkBlock checks a block just decoded from a message. The block is not
// shared yet, so it also remembers its transactions' ids for the checks
// here and everything downstream (validation, execution, storage).
func checkBlock(b *ledger.Block) error {
	ledger.RememberIDs(b.Txs)
	if err := b.Header.Validate(); err != nil {
		return fmt.Errorf("%w: block header: %v", ErrMalformed, err)
	}
	if err := b.CheckBody(); err != nil {
		return fmt.Errorf("%w: block body: %v", ErrMalformed, err)
	}
	return nil
}

func checkBitmap(signers []byte, sigs int) error {
	if len(signers) > MaxValidators/8 {
		return fmt.Errorf("%w: signer bitmap of %d bytes", ErrMalformed, len(signers))
	}
	if n := popcount(signers); n != sigs {
		return fmt.Errorf("%w: %d signers but %d signatures", ErrMalformed, n, sigs)
	}
	return nil
}

func (q *QC) check() error {
	if q.Version != Version {
		return fmt.Errorf("%w: QC version %d", ErrMalformed, q.Version)
	}
	if q.Data.Round == 0 {
		if len(q.Signers) != 0 || len(q.Signatures) != 0 || q.Data.ParentRound != 0 || !q.Data.ParentID.IsZero() {
			return fmt.Errorf("%w: genesis QC with signatures or parent", ErrMalformed)
		}
		return nil
	}
	if q.Data.ParentRound >= q.Data.Round {
		return fmt.Errorf("%w: QC parent round %d not below round %d", ErrMalformed, q.Data.ParentRound, q.Data.Round)
	}
	if q.Data.Height == 0 {
		return fmt.Errorf("%w: QC on height 0", ErrMalformed)
	}
	return checkBitmap(q.Signers, len(q.Signatures))
}

func (t *TC) check() error {
	if t.Version != Version {
		return fmt.Errorf("%w: TC version %d", ErrMalformed, t.Version)
	}
	if t.Round == 0 {
		return fmt.Errorf("%w: TC for round 0", ErrMalformed)
	}
	if err := t.HighQC.check(); err != nil {
		return err
	}
	if len(t.HighQCRounds) != len(t.Signatures) {
		return fmt.Errorf("%w: TC has %d rounds for %d signatures", ErrMalformed, len(t.HighQCRounds), len(t.Signatures))
	}
	return checkBitmap(t.Signers, len(t.Signatures))
}

func (p *CommitProof) check() error {
	if p.Version != Version {
		return fmt.Errorf("%w: commit proof version %d", ErrMalformed, p.Version)
	}
	if err := p.QC.check(); err != nil {
		return err
	}
	if !p.QC.Data.CommitsParent() {
		return fmt.Errorf("%w: commit proof QC does not commit its parent", ErrMalformed)
	}
	if len(p.Links) > MaxProofLinks {
		return fmt.Errorf("%w: commit proof with %d links", ErrMalformed, len(p.Links))
	}
	for i := range p.Links {
		if err := p.Links[i].Validate(); err != nil {
			return fmt.Errorf("%w: commit proof link: %v", ErrMalformed, err)
		}
	}
	return nil
}

// EncodeCommitProof returns the canonical encoding of a commit proof, the
// form storage keeps beside a committed block.
func EncodeCommitProof(p *CommitProof) ([]byte, error) { return ledger.Marshal(p) }

// DecodeCommitProof strictly decodes a commit proof and checks its
// structure; [VerifyCommitProof] checks its signatures.
func DecodeCommitProof(data []byte) (*CommitProof, error) {
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: commit proof of %d bytes", ErrMalformed, len(data))
	}
	var p CommitProof
	if err := ledger.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

type voteSignBody struct {
	ChainID string   `cbor:"1,keyasint"`
	Vote    VoteData `cbor:"2,keyasint"`
}

type timeoutSignBody struct {
	ChainID     string `cbor:"1,keyasint"`
	Epoch       uint64 `cbor:"2,keyasint"`
	Round       uint64 `cbor:"3,keyasint"`
	HighQCRound uint64 `cbor:"4,keyasint"`
}

type proposalSignBody struct {
	ChainID string         `cbor:"1,keyasint"`
	BlockID ledger.BlockID `cbor:"2,keyasint"`
}

func signBytes(domain string, body any) []byte {
	enc, err := ledger.Marshal(body)
	if err != nil {
		// The bodies are fixed structs of integers, digests and a
		// bounded string; encoding them cannot fail.
		panic(fmt.Sprintf("consensus: encoding signed body: %v", err))
	}
	msg := make([]byte, 0, len(domain)+len(enc))
	msg = append(msg, domain...)
	return append(msg, enc...)
}

// VoteSignBytes returns the message a validator signs to vote for d.
func VoteSignBytes(chainID string, d VoteData) []byte {
	return signBytes(voteDomain, voteSignBody{ChainID: chainID, Vote: d})
}

// TimeoutSignBytes returns the message a validator signs to time out in
// round of epoch while its highest QC is of round highQCRound.
func TimeoutSignBytes(chainID string, epoch, round, highQCRound uint64) []byte {
	return signBytes(timeoutDomain, timeoutSignBody{ChainID: chainID, Epoch: epoch, Round: round, HighQCRound: highQCRound})
}

// ProposalSignBytes returns the message a leader signs to propose block id.
func ProposalSignBytes(chainID string, id ledger.BlockID) []byte {
	return signBytes(proposalDomain, proposalSignBody{ChainID: chainID, BlockID: id})
}

func popcount(b []byte) int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

func bitmapHas(b []byte, i int) bool {
	return i>>3 < len(b) && b[i>>3]&(1<<(i&7)) != 0
}

func newBitmap(n int) []byte { return make([]byte, (n+7)/8) }

func bitmapSet(b []byte, i int) { b[i>>3] |= 1 << (i & 7) }
