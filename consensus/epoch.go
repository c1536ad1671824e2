package consensus

import (
	"encoding/binary"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// EpochConfig is what an epoch runs with: its validator set (whose Epoch
// field is the epoch number) and its parameters. Self is node-local: the
// key id this node votes with in the epoch, or zero if it is not a
// validator of it (it then follows the chain without voting). Everything
// else must be identical on every node, which holds because it comes from
// executing committed blocks.
type EpochConfig struct {
	Validators ledger.ValidatorSet
	Params     ledger.Params
	Self       gm.KeyID
}

// Epoch returns the epoch number.
func (c *EpochConfig) Epoch() uint64 { return c.Validators.Epoch }

// Validate checks the validator set and parameters.
func (c *EpochConfig) Validate() error {
	if c.Validators.Epoch == 0 {
		return fmt.Errorf("consensus: epoch 0 is genesis and runs no consensus")
	}
	if err := c.Validators.Validate(); err != nil {
		return fmt.Errorf("consensus: epoch %d: %w", c.Validators.Epoch, err)
	}
	if c.Validators.N() > MaxValidators {
		return fmt.Errorf("consensus: epoch %d has %d validators, at most %d", c.Validators.Epoch, c.Validators.N(), MaxValidators)
	}
	if err := c.Params.Validate(); err != nil {
		return fmt.Errorf("consensus: epoch %d: %w", c.Validators.Epoch, err)
	}
	return nil
}

// Verifier checks one SM2 signature. The default uses package gm directly;
// a caller may cache results (the simulator shares one cache between its
// nodes so that each distinct signature is verified once).
type Verifier interface {
	Verify(key *gm.PublicKey, msg []byte, sig gm.Signature) bool
}

// GMVerifier verifies with package gm and caches nothing.
type GMVerifier struct{}

// Verify reports whether sig is key's signature of msg.
func (GMVerifier) Verify(key *gm.PublicKey, msg []byte, sig gm.Signature) bool {
	return key.Verify(msg, sig)
}

// BlockRef names a block by id, height and timestamp: enough to check a
// child against it.
type BlockRef struct {
	ID        ledger.BlockID
	Height    uint64
	Timestamp int64
}

// RefOf returns the reference of a header.
func RefOf(h *ledger.Header) BlockRef {
	return BlockRef{ID: h.ID(), Height: h.Height, Timestamp: h.Timestamp}
}

// EpochVerifier verifies certificates and signed messages of one epoch. It
// remembers certificates it has verified (by the SM3 of their encoding),
// up to a bound, so a QC seen in many messages costs one verification.
type EpochVerifier struct {
	chainID  string
	cfg      EpochConfig
	keys     []*gm.PublicKey
	root     BlockRef
	verifier Verifier
	seen     map[gm.Digest]struct{}
}

const maxVerifiedCache = 4096

// NewEpochVerifier returns a verifier for the epoch cfg describes, whose
// root (the last block of the previous epoch, or genesis) is root.
func NewEpochVerifier(chainID string, cfg EpochConfig, root BlockRef, v Verifier) (*EpochVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if v == nil {
		v = GMVerifier{}
	}
	keys := make([]*gm.PublicKey, cfg.Validators.N())
	for i := range cfg.Validators.Validators {
		k, err := cfg.Validators.Validators[i].PublicKey.Parse()
		if err != nil {
			return nil, fmt.Errorf("consensus: validator %d: %w", i, err)
		}
		keys[i] = k
	}
	return &EpochVerifier{chainID: chainID, cfg: cfg, keys: keys, root: root, verifier: v, seen: make(map[gm.Digest]struct{})}, nil
}

// Epoch returns the epoch number.
func (e *EpochVerifier) Epoch() uint64 { return e.cfg.Epoch() }

// Config returns the epoch's configuration.
func (e *EpochVerifier) Config() *EpochConfig { return &e.cfg }

// Root returns the epoch's root block.
func (e *EpochVerifier) Root() BlockRef { return e.root }

// N returns the number of validators.
func (e *EpochVerifier) N() int { return len(e.keys) }

// F returns the number of faulty validators the epoch tolerates.
func (e *EpochVerifier) F() int { return e.cfg.Validators.F() }

// Quorum returns the signatures a certificate needs.
func (e *EpochVerifier) Quorum() int { return e.cfg.Validators.Quorum() }

// Leader returns the index of the leader of round: validators take turns,
// shifted by the epoch number so that a new epoch does not always start
// with the same validator.
func (e *EpochVerifier) Leader(round uint64) int {
	return int((e.cfg.Epoch() + round) % uint64(len(e.keys)))
}

// KeyID returns the key id of validator i.
func (e *EpochVerifier) KeyID(i int) gm.KeyID { return e.cfg.Validators.Validators[i].PeerID }

// GenesisQC returns the epoch's round-0 certificate on its root.
func (e *EpochVerifier) GenesisQC() QC {
	return QC{Version: Version, Data: VoteData{Epoch: e.Epoch(), Round: 0, BlockID: e.root.ID, Height: e.root.Height}}
}

// certDigest identifies a certificate for the verified cache: SM3 over a
// fixed binary layout of everything in it (cheaper than re-encoding CBOR).
func certDigest(kind byte, epoch, round uint64, d *VoteData, signers []byte, rounds []uint64, sigs []gm.Signature) gm.Digest {
	b := make([]byte, 0, 1+8*6+2*gm.DigestSize+len(signers)+8*len(rounds)+gm.SignatureSize*len(sigs)+16)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, round)
	if d != nil {
		b = binary.BigEndian.AppendUint64(b, d.Epoch)
		b = binary.BigEndian.AppendUint64(b, d.Round)
		b = append(b, d.BlockID[:]...)
		b = binary.BigEndian.AppendUint64(b, d.Height)
		b = append(b, d.ParentID[:]...)
		b = binary.BigEndian.AppendUint64(b, d.ParentRound)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(signers)))
	b = append(b, signers...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(rounds)))
	for _, r := range rounds {
		b = binary.BigEndian.AppendUint64(b, r)
	}
	for i := range sigs {
		b = append(b, sigs[i][:]...)
	}
	return gm.SM3(b)
}

func (e *EpochVerifier) cachedQC(q *QC) (gm.Digest, bool) {
	d := certDigest('Q', 0, 0, &q.Data, q.Signers, nil, q.Signatures)
	_, ok := e.seen[d]
	return d, ok
}

func (e *EpochVerifier) cachedTC(t *TC) (gm.Digest, bool) {
	hq := certDigest('Q', 0, 0, &t.HighQC.Data, t.HighQC.Signers, nil, t.HighQC.Signatures)
	d := certDigest('T', t.Epoch, t.Round, nil, append(hq[:], t.Signers...), t.HighQCRounds, t.Signatures)
	_, ok := e.seen[d]
	return d, ok
}

func (e *EpochVerifier) remember(d gm.Digest) {
	if len(e.seen) >= maxVerifiedCache {
		clear(e.seen)
	}
	e.seen[d] = struct{}{}
}

// checkSigners checks a bitmap against the epoch's size and quorum.
func (e *EpochVerifier) checkSigners(signers []byte, what string) error {
	n := len(e.keys)
	if len(signers) != (n+7)/8 {
		return fmt.Errorf("%w: %s bitmap of %d bytes for %d validators", ErrInvalid, what, len(signers), n)
	}
	for i := n; i < len(signers)*8; i++ {
		if bitmapHas(signers, i) {
			return fmt.Errorf("%w: %s bitmap names validator %d of %d", ErrInvalid, what, i, n)
		}
	}
	if c := popcount(signers); c < e.Quorum() {
		return fmt.Errorf("%w: %s has %d signers, quorum is %d", ErrInvalid, what, c, e.Quorum())
	}
	return nil
}

// VerifyQC checks a QC of this epoch: its genesis form against the epoch
// root, or a quorum of valid signatures.
func (e *EpochVerifier) VerifyQC(q *QC) error {
	if err := q.check(); err != nil {
		return err
	}
	if q.Data.Epoch != e.Epoch() {
		return fmt.Errorf("%w: QC of epoch %d in epoch %d", ErrEpoch, q.Data.Epoch, e.Epoch())
	}
	if q.Data.Round == 0 {
		if q.Data.BlockID != e.root.ID || q.Data.Height != e.root.Height {
			return fmt.Errorf("%w: genesis QC does not certify the epoch root", ErrInvalid)
		}
		return nil
	}
	if q.Data.Height <= e.root.Height {
		return fmt.Errorf("%w: QC on height %d at or below the epoch root %d", ErrInvalid, q.Data.Height, e.root.Height)
	}
	if q.Data.ParentRound == 0 && (q.Data.ParentID != e.root.ID || q.Data.Height != e.root.Height+1) {
		return fmt.Errorf("%w: QC names round 0 for a parent that is not the epoch root", ErrInvalid)
	}
	d, ok := e.cachedQC(q)
	if ok {
		return nil
	}
	if err := e.checkSigners(q.Signers, "QC"); err != nil {
		return err
	}
	msg := VoteSignBytes(e.chainID, q.Data)
	k := 0
	for i := range e.keys {
		if !bitmapHas(q.Signers, i) {
			continue
		}
		if !e.verifier.Verify(e.keys[i], msg, q.Signatures[k]) {
			return fmt.Errorf("%w: QC signature of validator %d", ErrSignature, i)
		}
		k++
	}
	e.remember(d)
	return nil
}

// VerifyTC checks a timeout certificate of this epoch.
func (e *EpochVerifier) VerifyTC(t *TC) error {
	if err := t.check(); err != nil {
		return err
	}
	if t.Epoch != e.Epoch() {
		return fmt.Errorf("%w: TC of epoch %d in epoch %d", ErrEpoch, t.Epoch, e.Epoch())
	}
	if t.HighQC.Data.Round >= t.Round {
		return fmt.Errorf("%w: TC of round %d with a QC of round %d", ErrInvalid, t.Round, t.HighQC.Data.Round)
	}
	d, ok := e.cachedTC(t)
	if ok {
		return nil
	}
	if err := e.checkSigners(t.Signers, "TC"); err != nil {
		return err
	}
	var highest uint64
	for _, r := range t.HighQCRounds {
		if r >= t.Round {
			return fmt.Errorf("%w: TC signer's QC round %d not below %d", ErrInvalid, r, t.Round)
		}
		highest = max(highest, r)
	}
	if highest != t.HighQC.Data.Round {
		return fmt.Errorf("%w: TC carries a QC of round %d, signers name %d", ErrInvalid, t.HighQC.Data.Round, highest)
	}
	if err := e.VerifyQC(&t.HighQC); err != nil {
		return fmt.Errorf("TC's QC: %w", err)
	}
	k := 0
	for i := range e.keys {
		if !bitmapHas(t.Signers, i) {
			continue
		}
		msg := TimeoutSignBytes(e.chainID, t.Epoch, t.Round, t.HighQCRounds[k])
		if !e.verifier.Verify(e.keys[i], msg, t.Signatures[k]) {
			return fmt.Errorf("%w: TC signature of validator %d", ErrSignature, i)
		}
		k++
	}
	e.remember(d)
	return nil
}

func (e *EpochVerifier) voter(i uint32) (int, error) {
	if int(i) >= len(e.keys) {
		return 0, fmt.Errorf("%w: validator index %d of %d", ErrInvalid, i, len(e.keys))
	}
	return int(i), nil
}

// VerifyVote checks a vote's signature and returns the voter's index.
func (e *EpochVerifier) VerifyVote(v *Vote) (int, error) {
	if v.Data.Epoch != e.Epoch() {
		return 0, fmt.Errorf("%w: vote of epoch %d", ErrEpoch, v.Data.Epoch)
	}
	i, err := e.voter(v.Voter)
	if err != nil {
		return 0, err
	}
	if !e.verifier.Verify(e.keys[i], VoteSignBytes(e.chainID, v.Data), v.Signature) {
		return 0, fmt.Errorf("%w: vote of validator %d", ErrSignature, i)
	}
	return i, nil
}

// VerifyTimeout checks a timeout: its certificates, that they justify its
// round, and its signature.
func (e *EpochVerifier) VerifyTimeout(t *Timeout) (int, error) {
	if t.Epoch != e.Epoch() {
		return 0, fmt.Errorf("%w: timeout of epoch %d", ErrEpoch, t.Epoch)
	}
	i, err := e.voter(t.Voter)
	if err != nil {
		return 0, err
	}
	justified := t.HighQC.Data.Round+1 == t.Round
	if t.LastTC != nil {
		if t.LastTC.Round >= t.Round {
			return 0, fmt.Errorf("%w: timeout of round %d carries a TC of round %d", ErrInvalid, t.Round, t.LastTC.Round)
		}
		justified = justified || t.LastTC.Round+1 == t.Round
	}
	if !justified || t.HighQC.Data.Round >= t.Round {
		return 0, fmt.Errorf("%w: timeout of round %d is not justified by its certificates", ErrInvalid, t.Round)
	}
	if err := e.VerifyQC(&t.HighQC); err != nil {
		return 0, err
	}
	if t.LastTC != nil {
		if err := e.VerifyTC(t.LastTC); err != nil {
			return 0, err
		}
	}
	if !e.verifier.Verify(e.keys[i], TimeoutSignBytes(e.chainID, t.Epoch, t.Round, t.HighQC.Data.Round), t.Signature) {
		return 0, fmt.Errorf("%w: timeout of validator %d", ErrSignature, i)
	}
	return i, nil
}

// VerifyProposal checks a proposal's shape against the protocol rules, its
// justification and the leader's signature. It does not check the block's
// contents against state (the application does) nor its parent.
func (e *EpochVerifier) VerifyProposal(p *Proposal) error {
	h := &p.Block.Header
	if h.ChainID != e.chainID {
		return fmt.Errorf("%w: proposal for chain %q", ErrInvalid, h.ChainID)
	}
	if h.Epoch != e.Epoch() {
		return fmt.Errorf("%w: proposal of epoch %d", ErrEpoch, h.Epoch)
	}
	if h.Round == 0 {
		return fmt.Errorf("%w: proposal for round 0", ErrInvalid)
	}
	leader := e.Leader(h.Round)
	if h.Proposer != e.KeyID(leader) {
		return fmt.Errorf("%w: round %d's leader is validator %d, block names %s", ErrInvalid, h.Round, leader, h.Proposer)
	}
	j := &p.Justify.Data
	if j.BlockID != h.PrevHash || j.Height+1 != h.Height || j.Round >= h.Round {
		return fmt.Errorf("%w: justification does not certify the block's parent", ErrInvalid)
	}
	justified := j.Round+1 == h.Round
	if p.TC != nil {
		if p.TC.Round+1 != h.Round {
			return fmt.Errorf("%w: proposal of round %d carries a TC of round %d", ErrInvalid, h.Round, p.TC.Round)
		}
		// A block after a timeout must extend a QC at least as high as
		// any its TC's signers knew.
		if j.Round < p.TC.HighQC.Data.Round {
			return fmt.Errorf("%w: proposal extends a QC of round %d below its TC's %d", ErrInvalid, j.Round, p.TC.HighQC.Data.Round)
		}
		justified = true
	}
	if !justified {
		return fmt.Errorf("%w: round %d is not justified by a QC or TC of round %d", ErrInvalid, h.Round, h.Round-1)
	}
	if err := e.VerifyQC(&p.Justify); err != nil {
		return err
	}
	if p.TC != nil {
		if err := e.VerifyTC(p.TC); err != nil {
			return err
		}
	}
	if !e.verifier.Verify(e.keys[leader], ProposalSignBytes(e.chainID, h.ID()), p.Signature) {
		return fmt.Errorf("%w: proposal of validator %d", ErrSignature, leader)
	}
	return nil
}

// VerifyCommitProof checks that proof is a valid commit proof of this
// epoch and returns the id and height of the block it proves committed.
func (e *EpochVerifier) VerifyCommitProof(p *CommitProof) (ledger.BlockID, uint64, error) {
	if err := p.check(); err != nil {
		return ledger.BlockID{}, 0, err
	}
	if err := e.VerifyQC(&p.QC); err != nil {
		return ledger.BlockID{}, 0, err
	}
	want := p.QC.Data.ParentID
	height := p.QC.Data.Height - 1
	for i := range p.Links {
		h := &p.Links[i]
		if h.ID() != want || h.Height != height || h.Epoch != e.Epoch() || h.ChainID != e.chainID {
			return ledger.BlockID{}, 0, fmt.Errorf("%w: commit proof link %d does not chain", ErrInvalid, i)
		}
		if h.TxCount != 0 {
			return ledger.BlockID{}, 0, fmt.Errorf("%w: commit proof link %d is not an empty epoch-suffix block", ErrInvalid, i)
		}
		want, height = h.PrevHash, height-1
	}
	if height <= e.root.Height {
		return ledger.BlockID{}, 0, fmt.Errorf("%w: commit proof for height %d at or below the epoch root", ErrInvalid, height)
	}
	return want, height, nil
}
