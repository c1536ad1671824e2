package consensus_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"hallmark/consensus"
	"hallmark/gm"
	"hallmark/ledger"
)

// sample holds one valid, signed instance of each message, made by a real
// cluster run, for encoding and verification tests.
type sample struct {
	c        *cluster
	verifier *consensus.EpochVerifier
	messages map[consensus.Kind][]byte
	qc       *consensus.QC
	tc       *consensus.TC
	proof    *consensus.CommitProof
}

func makeSample(t testing.TB) *sample {
	c := newCluster(t, 4)
	s := &sample{c: c, messages: map[consensus.Kind][]byte{}}
	capture := func(from, to int, msg []byte) bool {
		m, err := consensus.DecodeMessage(msg)
		if err != nil {
			t.Fatalf("a node sent an undecodable message: %v", err)
		}
		k := m.Kind()
		if _, ok := s.messages[k]; !ok {
			s.messages[k] = msg
		}
		if m.Proposal != nil && m.Proposal.Justify.Data.Round > 0 && s.qc == nil {
			q := m.Proposal.Justify
			s.qc = &q
		}
		if m.Timeout != nil && m.Timeout.LastTC != nil && s.tc == nil {
			tc := *m.Timeout.LastTC
			s.tc = tc2ptr(tc)
		}
		if m.Proposal != nil && m.Proposal.TC != nil && s.tc == nil {
			s.tc = tc2ptr(*m.Proposal.TC)
		}
		return true
	}
	c.intercept = capture
	c.runUntil(4, 50_000)
	// Force timeouts so that TCs exist: drop proposals for a while.
	c.intercept = func(from, to int, msg []byte) bool {
		m, err := consensus.DecodeMessage(msg)
		return capture(from, to, msg) && err == nil && m.Proposal == nil
	}
	for i := 0; i < 3; i++ {
		c.fire(1000)
		c.deliver(2000)
	}
	c.intercept = capture
	c.runUntil(c.minHeight()+3, 50_000)
	rec, err := c.nodes[0].app.Recovery()
	if err != nil {
		t.Fatal(err)
	}
	s.proof = rec.RootProof
	s.verifier, err = consensus.NewEpochVerifier(chainID, c.cfg, consensus.RefOf(&c.genesis), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.qc == nil || s.tc == nil || s.proof == nil {
		t.Fatalf("sample incomplete: qc %v tc %v proof %v", s.qc != nil, s.tc != nil, s.proof != nil)
	}
	return s
}

func tc2ptr(t consensus.TC) *consensus.TC { return &t }

func TestMessagesRoundTrip(t *testing.T) {
	s := makeSample(t)
	for _, k := range []consensus.Kind{consensus.KindProposal, consensus.KindVote, consensus.KindTimeout} {
		msg, ok := s.messages[k]
		if !ok {
			t.Fatalf("no %s captured", k)
		}
		m, err := consensus.DecodeMessage(msg)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		again, err := m.Encode()
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("%s does not re-encode to itself: %v", k, err)
		}
	}
	proofBytes, err := consensus.EncodeCommitProof(s.proof)
	if err != nil {
		t.Fatal(err)
	}
	p, err := consensus.DecodeCommitProof(proofBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.verifier.VerifyCommitProof(p); err != nil {
		t.Fatalf("stored commit proof does not verify: %v", err)
	}
}

func TestDecoderRejects(t *testing.T) {
	s := makeSample(t)
	vote := s.messages[consensus.KindVote]
	two, _ := consensus.DecodeMessage(vote)
	var tm consensus.Message
	tmBytes := s.messages[consensus.KindTimeout]
	if err := ledger.Unmarshal(tmBytes, &tm); err != nil {
		t.Fatal(err)
	}
	two.Timeout = tm.Timeout
	twoBytes, _ := ledger.Marshal(two)
	wrongVersion, _ := consensus.DecodeMessage(vote)
	wrongVersion.Version = 2
	wvBytes, _ := ledger.Marshal(wrongVersion)
	empty, _ := ledger.Marshal(&consensus.Message{Version: consensus.Version})
	for name, data := range map[string][]byte{
		"empty input":        nil,
		"trailing byte":      append(append([]byte(nil), vote...), 0),
		"truncated":          vote[:len(vote)-3],
		"two bodies":         twoBytes,
		"no body":            empty,
		"wrong version":      wvBytes,
		"indefinite length":  {0xbf, 0x01, 0x01, 0xff},
		"non-canonical uint": {0xa1, 0x01, 0x18, 0x01},
	} {
		if _, err := consensus.DecodeMessage(data); !errors.Is(err, consensus.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestVerifyQC(t *testing.T) {
	s := makeSample(t)
	v := s.verifier
	if err := v.VerifyQC(s.qc); err != nil {
		t.Fatalf("valid QC: %v", err)
	}
	fresh := func() *consensus.QC {
		q := *s.qc
		q.Signers = append([]byte(nil), q.Signers...)
		q.Signatures = append([]gm.Signature(nil), q.Signatures...)
		return &q
	}
	q := fresh()
	q.Signatures[0][10] ^= 1
	if err := v.VerifyQC(q); !errors.Is(err, consensus.ErrSignature) {
		t.Errorf("altered signature: %v", err)
	}
	q = fresh()
	q.Data.BlockID[0] ^= 1
	if err := v.VerifyQC(q); !errors.Is(err, consensus.ErrSignature) {
		t.Errorf("altered block id: %v", err)
	}
	q = fresh()
	for i := 0; i < 8; i++ {
		if q.Signers[0]&(1<<i) != 0 {
			q.Signers[0] &^= 1 << i
			q.Signatures = q.Signatures[1:]
			break
		}
	}
	if err := v.VerifyQC(q); err == nil {
		t.Error("QC below quorum accepted")
	}
	q = fresh()
	q.Signers[0] |= 0x80 // validator 7 of 4
	q.Signatures = append(q.Signatures, q.Signatures[0])
	if err := v.VerifyQC(q); err == nil {
		t.Error("QC naming a validator beyond the set accepted")
	}
	q = fresh()
	q.Data.Epoch = 2
	if err := v.VerifyQC(q); !errors.Is(err, consensus.ErrEpoch) {
		t.Errorf("QC of another epoch: %v", err)
	}
	g := v.GenesisQC()
	if err := v.VerifyQC(&g); err != nil {
		t.Errorf("genesis QC: %v", err)
	}
	g.Data.BlockID[3] ^= 1
	if err := v.VerifyQC(&g); err == nil {
		t.Error("genesis QC on another block accepted")
	}
}

func TestVerifyTC(t *testing.T) {
	s := makeSample(t)
	v := s.verifier
	if err := v.VerifyTC(s.tc); err != nil {
		t.Fatalf("valid TC: %v", err)
	}
	bad := *s.tc
	bad.HighQCRounds = append([]uint64(nil), bad.HighQCRounds...)
	bad.HighQCRounds[0]++ // a signer's round no longer matches its signature
	if err := v.VerifyTC(&bad); err == nil {
		t.Error("TC with an altered round accepted")
	}
	bad = *s.tc
	bad.Round++
	if err := v.VerifyTC(&bad); err == nil {
		t.Error("TC with an altered round number accepted")
	}
}

func TestVerifyCommitProofLinks(t *testing.T) {
	s := makeSample(t)
	v := s.verifier
	id, height, err := v.VerifyCommitProof(s.proof)
	if err != nil {
		t.Fatal(err)
	}
	if height != s.c.nodes[0].app.Height() || id != s.c.nodes[0].app.Block(height).Header.ID() {
		t.Fatal("commit proof proves another block")
	}
	// A link that does not chain is refused.
	p := *s.proof
	p.Links = []ledger.Header{s.c.nodes[0].app.Block(1).Header}
	if _, _, err := v.VerifyCommitProof(&p); err == nil {
		t.Error("commit proof with a broken link accepted")
	}
}

func TestSignBytesAreDomainSeparated(t *testing.T) {
	d := consensus.VoteData{Epoch: 1, Round: 2, Height: 3}
	msgs := [][]byte{
		consensus.VoteSignBytes(chainID, d),
		consensus.VoteSignBytes("other-chain", d),
		consensus.TimeoutSignBytes(chainID, 1, 2, 1),
		consensus.ProposalSignBytes(chainID, d.BlockID),
		ledger.SignBytes(d.BlockID),
	}
	for i := range msgs {
		for j := range msgs {
			if i != j && bytes.Equal(msgs[i], msgs[j]) {
				t.Fatalf("sign messages %d and %d are equal", i, j)
			}
		}
	}
	key := newKeys(t, 1)[0]
	sig, err := key.Sign(context.Background(), msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if key.PublicKey().Verify(msgs[1], sig) || key.PublicKey().Verify(msgs[2], sig) {
		t.Fatal("a vote signature verifies as another message")
	}
}

func TestSafetyDataRoundTrip(t *testing.T) {
	s := makeSample(t)
	q := *s.qc
	sd := consensus.SafetyData{Version: consensus.Version, Epoch: 1, LastVotedRound: 9, OneChainRound: 8,
		PreferredRound: 7, HighestTimeoutRound: 9, LastProposedRound: 5, HighQC: &q, HighTC: s.tc}
	b, err := consensus.EncodeSafetyData(&sd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := consensus.DecodeSafetyData(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := consensus.EncodeSafetyData(got)
	if !bytes.Equal(again, b) {
		t.Fatal("safety data does not round-trip")
	}
	b[len(b)-1] ^= 0xff
	if _, err := consensus.DecodeSafetyData(append(b, 0)); err == nil {
		t.Fatal("corrupt safety data accepted")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	s := makeSample(f)
	for _, msg := range s.messages {
		f.Add(msg)
	}
	f.Add([]byte{0xa1, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := consensus.DecodeMessage(data)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input is not canonical: %v", err)
		}
		// Verification of whatever decoded must not panic either.
		switch {
		case m.Proposal != nil:
			_ = s.verifier.VerifyProposal(m.Proposal)
		case m.Vote != nil:
			_, _ = s.verifier.VerifyVote(m.Vote)
		case m.Timeout != nil:
			_, _ = s.verifier.VerifyTimeout(m.Timeout)
		case m.SyncInfo != nil:
			_ = s.verifier.VerifyQC(&m.SyncInfo.HighQC)
		case m.SyncResponse != nil && m.SyncResponse.Proof != nil:
			_, _, _ = s.verifier.VerifyCommitProof(m.SyncResponse.Proof)
		}
	})
}

func FuzzCoreStep(f *testing.F) {
	s := makeSample(f)
	for _, msg := range s.messages {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever arrives, a core never panics and keeps counting.
		c := newCluster(t, 4)
		before := c.nodes[1].core.Metrics()
		c.apply(c.nodes[1], c.nodes[1].core.Step(c.now, consensus.MessageReceived{From: c.keys[0].PublicKey().ID(), Data: data}))
		after := c.nodes[1].core.Metrics()
		var got, was uint64
		for i := range after.Received {
			got += after.Received[i]
			was += before.Received[i]
		}
		if got == was && after.Dropped[consensus.DropMalformed] == before.Dropped[consensus.DropMalformed] {
			t.Fatal("message neither received nor counted as malformed")
		}
	})
}

func FuzzDecodeSafetyData(f *testing.F) {
	sd := consensus.SafetyData{Version: consensus.Version, Epoch: 3, LastVotedRound: 4}
	b, _ := consensus.EncodeSafetyData(&sd)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := consensus.DecodeSafetyData(data)
		if err != nil {
			return
		}
		again, _ := consensus.EncodeSafetyData(got)
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input is not canonical")
		}
	})
}

func FuzzDecodeCommitProof(f *testing.F) {
	s := makeSample(f)
	b, _ := consensus.EncodeCommitProof(s.proof)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := consensus.DecodeCommitProof(data)
		if err != nil {
			return
		}
		again, _ := consensus.EncodeCommitProof(p)
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input is not canonical")
		}
		_, _, _ = s.verifier.VerifyCommitProof(p)
	})
}
