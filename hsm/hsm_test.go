package hsm_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hallmark/gm"
	"hallmark/gm/gmtest"
	"hallmark/hsm"
	"hallmark/hsm/audit"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// cheapKDF keeps dev-key tests fast under -race.
var cheapKDF = devkeys.Params{Time: 1, MemoryKiB: 64, Threads: 1}

// env is one swtpm, a key directory and an audit log.
type env struct {
	sim   *swtpmtest.TPM
	dir   string
	audit *audit.Log
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{sim: swtpmtest.Start(t), dir: t.TempDir()}
	var err error
	if e.audit, err = audit.Open(filepath.Join(e.dir, "audit.log")); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) opts() hsm.Options {
	return hsm.Options{
		TPM:        tpm.Config{Addr: e.sim.Addr(), RetryFor: 3 * time.Second},
		Passphrase: []byte("dev passphrase"),
		DevKDF:     cheapKDF,
		Audit:      e.audit,
		Actor:      "test-officer",
	}
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// checkSigns signs a message and verifies it with gm and with tjfoc/gmsm.
func checkSigns(t *testing.T, s hsm.Signer) {
	t.Helper()
	msg := []byte("hallmark/test/v1\x00a message to sign " + string(s.Custody()))
	sig, err := s.Sign(context.Background(), msg)
	if err != nil {
		t.Fatalf("%s: sign: %v", s.Ref(), err)
	}
	if !s.PublicKey().Verify(msg, sig) {
		t.Fatalf("%s: signature does not verify with gm", s.Ref())
	}
	if !gmtest.VerifyWithReference(s.PublicKey(), msg, sig) {
		t.Fatalf("%s: signature does not verify with tjfoc/gmsm", s.Ref())
	}
	if s.KeyID() != s.PublicKey().ID() {
		t.Fatalf("%s: key id is not the public key's", s.Ref())
	}
	var _ gm.Signer = s
}

func TestSignRoundTripEveryBackend(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	refs := map[hsm.Kind]string{
		hsm.KindTPM:       "tpm:handle=0x81000010",
		hsm.KindTPMSealed: "tpm-sealed:" + e.path("node.sealed"),
		hsm.KindDev:       "dev:" + e.path("node.dev"),
	}
	for kind, ref := range refs {
		s, err := hsm.Generate(ctx, ref, e.opts())
		if err != nil {
			t.Fatalf("generate %s: %v", ref, err)
		}
		if s.Custody() != kind {
			t.Fatalf("%s: custody %s", ref, s.Custody())
		}
		checkSigns(t, s)
		pub := s.PublicKey()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sign(ctx, []byte("x")); !errors.Is(err, hsm.ErrClosed) {
			t.Fatalf("%s: sign after close: %v", ref, err)
		}
		// Reopen as a node would, from the reference alone.
		s, err = hsm.Open(ctx, ref, e.opts())
		if err != nil {
			t.Fatalf("open %s: %v", ref, err)
		}
		if !s.PublicKey().Equal(pub) {
			t.Fatalf("%s: reopened key differs", ref)
		}
		checkSigns(t, s)
		s.Close()
	}
	// A TPM key blob on disk, the other TPM persistence.
	s, err := hsm.Generate(ctx, "tpm:blob="+e.path("node.tpmkey"), e.opts())
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, s)
	s.Close()
}

func TestPersistedKeysSurviveRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	refs := []string{"tpm:handle=auto", "tpm:blob=" + e.path("k.tpmkey"), "tpm-sealed:" + e.path("k.sealed")}
	var opened []string
	for _, ref := range refs {
		s, err := hsm.Generate(ctx, ref, e.opts())
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s.Ref())
		s.Close()
	}
	if opened[0] != "tpm:handle=0x81000010" {
		t.Fatalf("auto handle resolved to %s", opened[0])
	}
	e.sim.Restart()
	for _, ref := range opened {
		s, err := hsm.Open(ctx, ref, e.opts())
		if err != nil {
			t.Fatalf("open %s after restart: %v", ref, err)
		}
		checkSigns(t, s)
		s.Close()
	}
	// A long-lived signer rides through a restart: its connection is
	// redialled and the command repeated.
	s, err := hsm.Open(ctx, opened[0], e.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.sim.Restart()
	checkSigns(t, s)
}

func TestSealedKeyNeedsItsPCRsAndItsTPM(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	image := sha256.Sum256([]byte("hallmark image 1.0"))
	c, err := tpm.Dial(ctx, tpm.Config{Addr: e.sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.ExtendPCR(ctx, c, hsm.FirmwarePCR, image[:]); err != nil {
		t.Fatal(err)
	}
	opts := e.opts()
	opts.TPMConn = c
	ref := "tpm-sealed:" + e.path("node.sealed")
	s, err := hsm.Generate(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A different image measured: the key must not unseal.
	evil := sha256.Sum256([]byte("tampered image"))
	if err := tpm.ExtendPCR(ctx, c, hsm.FirmwarePCR, evil[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.Open(ctx, ref, opts); !errors.Is(err, hsm.ErrPCRState) {
		t.Fatalf("open after a foreign measurement: %v, want ErrPCRState", err)
	}
	// Reboot into the right image: it unseals again.
	e.sim.Restart()
	if err := tpm.ExtendPCR(ctx, c, hsm.FirmwarePCR, image[:]); err != nil {
		t.Fatal(err)
	}
	s, err = hsm.Open(ctx, ref, opts)
	if err != nil {
		t.Fatalf("open after reboot into the same image: %v", err)
	}
	checkSigns(t, s)
	s.Close()
	c.Close()
	// Another TPM, same measurements: the blob does not load.
	other := swtpmtest.Start(t)
	c2, err := tpm.Dial(ctx, tpm.Config{Addr: other.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := tpm.ExtendPCR(ctx, c2, hsm.FirmwarePCR, image[:]); err != nil {
		t.Fatal(err)
	}
	opts.TPMConn = c2
	if _, err := hsm.Open(ctx, ref, opts); !errors.Is(err, hsm.ErrWrongTPM) {
		t.Fatalf("open on another TPM: %v, want ErrWrongTPM", err)
	}
	// The same for a TPM key blob.
	opts.TPMConn = nil
	blobRef := "tpm:blob=" + e.path("node.tpmkey")
	if s, err = hsm.Generate(ctx, blobRef, e.opts()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	opts.TPMConn = c2
	if _, err := hsm.Open(ctx, blobRef, opts); !errors.Is(err, hsm.ErrWrongTPM) {
		t.Fatalf("blob on another TPM: %v, want ErrWrongTPM", err)
	}
}

func TestDevKeystore(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ref := "dev:" + filepath.Join(dir, "k.dev")
	opts := hsm.Options{Passphrase: []byte("right"), DevKDF: cheapKDF}
	s, err := hsm.Generate(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, s)
	s.Close()
	if _, err := hsm.Generate(ctx, ref, opts); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("generate over an existing key: %v", err)
	}
	wrong := opts
	wrong.Passphrase = []byte("wrong")
	if _, err := hsm.Open(ctx, ref, wrong); !errors.Is(err, hsm.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	prod := opts
	prod.Production = true
	if _, err := hsm.Open(ctx, ref, prod); !errors.Is(err, hsm.ErrProduction) {
		t.Fatalf("dev key in production: %v", err)
	}
	if _, err := hsm.Generate(ctx, "dev:"+filepath.Join(dir, "p.dev"), prod); !errors.Is(err, hsm.ErrProduction) {
		t.Fatalf("dev key generated in production: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "p.dev")); !os.IsNotExist(err) {
		t.Fatal("production generate left a file")
	}
	if _, err := hsm.Open(ctx, "dev:"+filepath.Join(dir, "missing.dev"), opts); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	// A file of another kind is named as such.
	sealedPath := filepath.Join(dir, "k.dev")
	if _, err := hsm.Open(ctx, "tpm-sealed:"+sealedPath, opts); err == nil || !strings.Contains(err.Error(), "dev key") {
		t.Fatalf("dev file opened as sealed: %v", err)
	}
}

func TestRotateThenDestroy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct{ old, next string }{
		{"tpm:handle=0x81000020", "tpm:handle=auto"},
		{"tpm-sealed:" + e.path("old.sealed"), "tpm-sealed:" + e.path("new.sealed")},
		{"dev:" + e.path("old.dev"), "dev:" + e.path("new.dev")},
	}
	for _, tc := range cases {
		old, err := hsm.Generate(ctx, tc.old, e.opts())
		if err != nil {
			t.Fatal(err)
		}
		oldPub := old.PublicKey()
		old.Close()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		st, next, err := hsm.Rotate(ctx, tc.old, tc.next, hsm.RotateOptions{ChainID: "hallmark-test", Reason: "scheduled", Now: func() time.Time { return now }}, e.opts())
		if err != nil {
			t.Fatalf("rotate %s: %v", tc.old, err)
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("%s: statement: %v", tc.old, err)
		}
		enc, err := hsm.EncodeRotation(st)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := hsm.ParseRotation(enc)
		if err != nil {
			t.Fatalf("%s: parse statement: %v", tc.old, err)
		}
		if parsed.Statement.Old.ID() != oldPub.ID() || parsed.Statement.New.ID() != next.KeyID() ||
			parsed.Statement.Timestamp != now.UnixMilli() || parsed.Statement.Reason != "scheduled" {
			t.Fatalf("%s: statement names the wrong keys, time or reason", tc.old)
		}
		// It is the chain's own format: the ledger's decoder for
		// gov.node-rotate-key accepts the same bytes.
		if _, err := txs.Decode(ledger.TxNodeRotateKey, enc); err != nil {
			t.Fatalf("%s: the ledger refuses the statement: %v", tc.old, err)
		}
		msg, _ := st.Statement.SignBytes()
		if !oldPub.Verify(msg, st.OldSignature) || !next.PublicKey().Verify(msg, st.NewSignature) {
			t.Fatalf("%s: statement does not verify under both keys", tc.old)
		}
		checkSigns(t, next)
		next.Close()

		// Destroy the old key: it can no longer be opened.
		id, err := hsm.Destroy(ctx, tc.old, e.opts())
		if err != nil {
			t.Fatalf("destroy %s: %v", tc.old, err)
		}
		if id != oldPub.ID() {
			t.Fatalf("destroyed %s, want %s", id, oldPub.ID())
		}
		if _, err := hsm.Open(ctx, tc.old, e.opts()); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("open %s after destroy: %v, want ErrKeyNotFound", tc.old, err)
		}
		if _, err := hsm.Destroy(ctx, tc.old, e.opts()); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("destroy %s twice: %v", tc.old, err)
		}
	}
	if _, _, err := hsm.Rotate(ctx, "dev:"+e.path("new.dev"), "tpm:handle=auto", hsm.RotateOptions{ChainID: "hallmark-test"}, e.opts()); !errors.Is(err, hsm.ErrCustodyMismatch) {
		t.Fatalf("rotation across custodies: %v", err)
	}
	if _, _, err := hsm.Rotate(ctx, "dev:"+e.path("new.dev"), "dev:"+e.path("newer.dev"), hsm.RotateOptions{}, e.opts()); !errors.Is(err, hsm.ErrRotation) {
		t.Fatalf("rotation without a chain id: %v", err)
	}
	// Every operation is in the audit log, and the chain holds.
	entries, _, err := audit.VerifyFile(e.audit.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, en := range entries {
		ops[en.Op]++
	}
	if ops["generate"] != 3 || ops["rotate"] != 5 || ops["destroy"] != 6 {
		t.Fatalf("audit ops %v", ops)
	}
}

func TestOpenTPMSignerFailsAfterDestroy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: e.sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := e.opts()
	opts.TPMConn = c
	s, err := hsm.Generate(ctx, "tpm:handle=auto", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := hsm.Destroy(ctx, s.Ref(), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, []byte("after destroy")); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("an open signer signed after its key was evicted: %v", err)
	}
}

func TestAttestation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := hsm.Generate(ctx, "tpm:handle=auto", e.opts())
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("enrolment challenge")
	att, err := s.Attestation(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Verify(s.PublicKey(), nonce); err != nil {
		t.Fatal(err)
	}
	other, _ := gm.GenerateKey(nil)
	if err := att.Verify(other.PublicKey(), nonce); err == nil {
		t.Fatal("attestation verified for another key")
	}
	s.Close()
	info, err := hsm.Describe(ctx, "tpm:handle=0x81000010", nonce, e.opts())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := gm.ParsePublicKey(mustHex(t, info.PublicKey))
	if info.Attestation == nil || info.Attestation.Verify(pub, nonce) != nil {
		t.Fatal("show gave no verifiable attestation")
	}
	dev, err := hsm.Generate(ctx, "dev:"+e.path("a.dev"), e.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if att, err := dev.Attestation(ctx, nonce); att != nil || err != nil {
		t.Fatalf("dev key attestation: %v %v", att, err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, ref := range []string{"tpm:handle=auto", "tpm:handle=auto", "tpm-sealed:" + e.path("s.sealed"), "dev:" + e.path("d.dev"), "tpm:blob=" + e.path("b.tpmkey")} {
		s, err := hsm.Generate(ctx, ref, e.opts())
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	os.WriteFile(e.path("notes.txt"), []byte("not a key"), 0o600)
	keys, err := hsm.List(ctx, hsm.ListOptions{TPM: true, Dirs: []string{e.dir}}, e.opts())
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, k := range keys {
		refs = append(refs, k.Ref)
	}
	want := []string{
		"dev:" + e.path("d.dev"),
		"tpm-sealed:" + e.path("s.sealed"),
		"tpm:blob=" + e.path("b.tpmkey"),
		"tpm:handle=0x81000010",
		"tpm:handle=0x81000011",
	}
	if strings.Join(refs, " ") != strings.Join(want, " ") {
		t.Fatalf("listed\n%v\nwant\n%v", refs, want)
	}
}

func TestOpenErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := hsm.Open(ctx, "tpm:handle=0x81000099", e.opts()); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing handle: %v", err)
	}
	if _, err := hsm.Open(ctx, "tpm-sealed:"+e.path("none"), e.opts()); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing sealed file: %v", err)
	}
	addr := e.sim.Addr()
	e.sim.Stop()
	opts := e.opts()
	opts.TPM.RetryFor = 200 * time.Millisecond
	_, err := hsm.Open(ctx, "tpm:handle=0x81000010", opts)
	if !errors.Is(err, hsm.ErrTPMUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("stopped TPM: %v", err)
	}
	if _, err := hsm.Open(ctx, "pkcs11:token=t;object=o?module-path=/nonexistent.so", opts); err == nil {
		t.Fatal("opened a PKCS#11 key from a missing module")
	}
	if _, err := hsm.Open(ctx, "tpm:handle=auto", opts); !errors.Is(err, hsm.ErrBadRef) {
		t.Fatalf("open auto: %v", err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hexDecode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
