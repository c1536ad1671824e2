package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
)

func TestKeyBlobSignsAfterRestart(t *testing.T) {
	sim := swtpmtest.Start(t)
	c := dial(t, sim)
	ctx := context.Background()
	blob, pub, err := tpm.CreateKeyBlob(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.OpenKeyBlob(ctx, c, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey().Equal(pub) {
		t.Fatal("blob's public key differs from the one Create returned")
	}
	msg := []byte("blob")
	for i := 0; i < 2; i++ {
		sig, err := k.Sign(ctx, msg)
		if err != nil {
			t.Fatalf("sign %d: %v", i, err)
		}
		if !pub.Verify(msg, sig) {
			t.Fatalf("signature %d does not verify", i)
		}
		sim.Restart() // the loaded transient object is gone; Sign reloads it
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A blob does not load on another TPM.
	other := dial(t, swtpmtest.Start(t))
	if _, err := tpm.OpenKeyBlob(ctx, other, blob); err == nil {
		t.Fatal("key blob loaded on a different TPM")
	}
}

func TestSealUnsealPCRPolicy(t *testing.T) {
	sim := swtpmtest.Start(t)
	c := dial(t, sim)
	ctx := context.Background()
	const pcr = 16
	image := sha256.Sum256([]byte("firmware image v1"))
	if err := tpm.ExtendPCR(ctx, c, pcr, image[:]); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{0x5a}, 32)
	blob, err := tpm.Seal(ctx, c, secret, []uint{pcr, 7})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpm.Unseal(ctx, c, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %x, want %x", got, secret)
	}

	// A different measurement: the policy no longer holds.
	other := sha256.Sum256([]byte("firmware image v2"))
	if err := tpm.ExtendPCR(ctx, c, pcr, other[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.Unseal(ctx, c, blob); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("unseal after extend: got %v, want ErrPCRMismatch", err)
	}

	// Power cycle: PCRs reset; booting the same image measures the same
	// digest again and the blob unseals.
	sim.Restart()
	if _, err := tpm.Unseal(ctx, c, blob); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("unseal before measuring: got %v, want ErrPCRMismatch", err)
	}
	if err := tpm.ExtendPCR(ctx, c, pcr, image[:]); err != nil {
		t.Fatal(err)
	}
	if got, err := tpm.Unseal(ctx, c, blob); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unseal after restart and re-measure: %x, %v", got, err)
	}

	// Another TPM with the same PCR values cannot load the blob.
	c2 := dial(t, swtpmtest.Start(t))
	if err := tpm.ExtendPCR(ctx, c2, pcr, image[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.Unseal(ctx, c2, blob); !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("unseal on another TPM: got %v, want ErrWrongTPM", err)
	}
}

func TestSealToPredictedPolicy(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	ctx := context.Background()
	const pcr = 16
	image := sha256.Sum256([]byte("next image"))
	// PCR 16 starts at zero; after one extend it is SHA256(0^32 ‖ image).
	expected := sha256.Sum256(append(make([]byte, 32), image[:]...))
	policy, err := tpm.PCRPolicyDigest([]uint{pcr}, [][]byte{expected[:]})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := tpm.SealToPolicy(ctx, c, []byte("future"), []uint{pcr}, policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.Unseal(ctx, c, blob); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("unseal before the predicted measurement: %v", err)
	}
	if err := tpm.ExtendPCR(ctx, c, pcr, image[:]); err != nil {
		t.Fatal(err)
	}
	if got, err := tpm.Unseal(ctx, c, blob); err != nil || string(got) != "future" {
		t.Fatalf("unseal after the predicted measurement: %q, %v", got, err)
	}
}

func TestCounterAdvanceRefusesLowerAndSurvivesRestart(t *testing.T) {
	sim := swtpmtest.Start(t)
	c := dial(t, sim)
	ctx := context.Background()
	if _, err := tpm.OpenCounter(ctx, c, tpm.FirmwareCounterIndex); !errors.Is(err, tpm.ErrNoCounter) {
		t.Fatalf("open before define: %v", err)
	}
	k, err := tpm.DefineCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k.Read(ctx); err != nil || v != 0 {
		t.Fatalf("fresh counter reads %d, %v; want 0", v, err)
	}
	if v, err := k.Advance(ctx, 3); err != nil || v != 3 {
		t.Fatalf("advance to 3: %d, %v", v, err)
	}
	if v, err := k.Advance(ctx, 3); err != nil || v != 3 {
		t.Fatalf("advance to the same version: %d, %v", v, err)
	}
	if _, err := k.Advance(ctx, 2); !errors.Is(err, tpm.ErrRollback) {
		t.Fatalf("advance to a lower version: %v, want ErrRollback", err)
	}
	if err := k.Check(ctx, 2); !errors.Is(err, tpm.ErrRollback) {
		t.Fatalf("check lower version: %v", err)
	}
	if err := k.Check(ctx, 4); err != nil {
		t.Fatalf("check higher version: %v", err)
	}

	sim.Restart()
	k2, err := tpm.OpenCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k2.Read(ctx); err != nil || v != 3 {
		t.Fatalf("after restart: %d, %v; want 3", v, err)
	}
	if v, err := k2.Advance(ctx, 5); err != nil || v != 5 {
		t.Fatalf("advance to 5 after restart: %d, %v", v, err)
	}

	// Undefining and redefining does not reset the floor: the first
	// increment of the new counter starts above 5.
	if err := tpm.UndefineCounter(ctx, c, tpm.FirmwareCounterIndex); err != nil {
		t.Fatal(err)
	}
	k3, err := tpm.DefineCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k3.Advance(ctx, 1)
	if !errors.Is(err, tpm.ErrOvershoot) {
		t.Fatalf("first advance of a redefined counter: %d, %v; want ErrOvershoot", v, err)
	}
	if v <= 5 {
		t.Fatalf("redefined counter restarted at %d; a counter must not go back", v)
	}
	t.Logf("redefined counter's first value: %d", v)
}

func TestCertifyVerifies(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	ctx := context.Background()
	pub, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.OpenPersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("fresh nonce 1234")
	cert, err := k.Certify(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cert.Verify(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(pub) {
		t.Fatal("certification names another key")
	}
	ak, err := tpm.AKPublic(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ak, cert.AKPublic) {
		t.Fatal("attestation key is not the TPM's fixed one")
	}
	if _, err := cert.Verify([]byte("other nonce")); !errors.Is(err, tpm.ErrAttestation) {
		t.Fatalf("wrong nonce: %v", err)
	}
	tampered := *cert
	tampered.Attest = bytes.Clone(cert.Attest)
	tampered.Attest[len(tampered.Attest)-1] ^= 1
	if _, err := tampered.Verify(nonce); !errors.Is(err, tpm.ErrAttestation) {
		t.Fatalf("tampered attest: %v", err)
	}
	// A certification of one key presented with another key's public area.
	blob, _, err := tpm.CreateKeyBlob(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	swapped := *cert
	swapped.KeyPublic = blob.Public
	if _, err := swapped.Verify(nonce); !errors.Is(err, tpm.ErrAttestation) {
		t.Fatalf("swapped key: %v", err)
	}
}

func TestEvictThenSignFails(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	ctx := context.Background()
	if _, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle); !errors.Is(err, tpm.ErrHandleInUse) {
		t.Fatalf("second key at the same handle: %v", err)
	}
	k, err := tpm.OpenPersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	free, err := tpm.FreeKeyHandle(ctx, c)
	if err != nil || free != tpm.FirstKeyHandle+1 {
		t.Fatalf("free handle: 0x%x, %v", uint32(free), err)
	}
	if err := tpm.EvictKey(ctx, c, tpm.FirstKeyHandle); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(ctx, []byte("x")); !errors.Is(err, tpm.ErrKeyNotFound) {
		t.Fatalf("sign after evict: %v, want ErrKeyNotFound", err)
	}
	if _, err := tpm.OpenPersistentKey(ctx, c, tpm.FirstKeyHandle); !errors.Is(err, tpm.ErrKeyNotFound) {
		t.Fatalf("open after evict: %v", err)
	}
	if err := tpm.EvictKey(ctx, c, tpm.FirstKeyHandle); !errors.Is(err, tpm.ErrKeyNotFound) {
		t.Fatalf("evict twice: %v", err)
	}
}

func TestReconnectHonoursContext(t *testing.T) {
	sim := swtpmtest.Start(t)
	c := dial(t, sim)
	ctx := context.Background()
	if _, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle); err != nil {
		t.Fatal(err)
	}
	k, err := tpm.OpenPersistentKey(ctx, c, tpm.FirstKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	sim.Stop()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.Sign(short, []byte("x"))
	if err == nil {
		t.Fatal("signed with the TPM stopped")
	}
	if !errors.Is(err, tpm.ErrUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v names neither the unreachable TPM nor the deadline", err)
	}
	if !strings.Contains(err.Error(), sim.Addr()) {
		t.Fatalf("error %q does not name the address %s", err, sim.Addr())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("sign ignored its context for %v", d)
	}
	sim.Restart()
	sig, err := k.Sign(ctx, []byte("x"))
	if err != nil {
		t.Fatalf("sign after the TPM came back: %v", err)
	}
	if !k.PublicKey().Verify([]byte("x"), sig) {
		t.Fatal("signature does not verify")
	}
}

func TestDialUnreachableNamesAddress(t *testing.T) {
	sim := swtpmtest.Start(t)
	addr := sim.Addr()
	sim.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := tpm.Dial(ctx, tpm.Config{Addr: addr, RetryFor: 200 * time.Millisecond})
	if !errors.Is(err, tpm.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("dial of a stopped TPM: %v", err)
	}
}

// A predecessor that left transient objects behind would exhaust swtpm's
// three object slots; a new connection flushes them.
func TestFlushOnOpenClearsLeftovers(t *testing.T) {
	sim := swtpmtest.Start(t)
	ctx := context.Background()
	noFlush := false
	leaky, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr(), FlushOnOpen: &noFlush})
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.LeakTransientsForTest(ctx, leaky, 3); err != nil {
		t.Fatal(err)
	}
	if err := tpm.LeakTransientsForTest(ctx, leaky, 1); !errors.Is(err, tpm2.TPMRCObjectMemory) {
		t.Fatalf("a fourth object: %v, want TPM_RC_OBJECT_MEMORY", err)
	}
	leaky.Close()
	c := dial(t, sim)
	if _, err := tpm.CreatePersistentKey(ctx, c, tpm.FirstKeyHandle); err != nil {
		t.Fatalf("after flush on open: %v", err)
	}
}

func TestCheckSM2(t *testing.T) {
	full := tpm.Capabilities{
		Algorithms: []tpm2.TPMAlgID{tpm2.TPMAlgECC, tpm2.TPMAlgSM2, tpm2.TPMAlgSHA256},
		Curves:     []tpm2.TPMECCCurve{tpm2.TPMECCNistP256, tpm2.TPMECCSM2P256},
	}
	if err := full.CheckSM2(); err != nil {
		t.Fatal(err)
	}
	if full.SignHashAlg() != tpm2.TPMAlgSHA256 {
		t.Fatal("without SM3 the scheme must name SHA256")
	}
	withSM3 := full
	withSM3.Algorithms = append(withSM3.Algorithms, tpm2.TPMAlgSM3256)
	if withSM3.SignHashAlg() != tpm2.TPMAlgSM3256 {
		t.Fatal("with SM3 the scheme must name SM3_256")
	}
	noCurve := tpm.Capabilities{Algorithms: full.Algorithms, Curves: []tpm2.TPMECCCurve{tpm2.TPMECCNistP256}}
	err := noCurve.CheckSM2()
	if !errors.Is(err, tpm.ErrNoSM2) || !strings.Contains(err.Error(), "TPM_ECC_SM2_P256") || !strings.Contains(err.Error(), "tpm-sealed") {
		t.Fatalf("missing curve: %v", err)
	}
	noAlg := tpm.Capabilities{Algorithms: []tpm2.TPMAlgID{tpm2.TPMAlgECC}, Curves: full.Curves}
	if err := noAlg.CheckSM2(); !errors.Is(err, tpm.ErrNoSM2) || !strings.Contains(err.Error(), "TPM_ALG_SM2") {
		t.Fatalf("missing algorithm: %v", err)
	}
}

func TestSwtpmListsSM2(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	caps, err := tpm.QueryCapabilities(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := caps.CheckSM2(); err != nil {
		t.Fatalf("swtpm should support SM2: %v", err)
	}
}

// swtpm accepts a second connection but serves only the first; the second
// dial gives up with a message that says why instead of hanging.
func TestBusyTPMDoesNotHang(t *testing.T) {
	sim := swtpmtest.Start(t)
	first := dial(t, sim)
	_ = first
	ctx := context.Background()
	start := time.Now()
	_, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr(), RetryFor: 300 * time.Millisecond})
	if !errors.Is(err, tpm.ErrUnreachable) || !strings.Contains(err.Error(), "one client at a time") {
		t.Fatalf("dial while another client holds the TPM: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up only after %v", d)
	}
}

func TestMissingDeviceFailsFast(t *testing.T) {
	start := time.Now()
	_, err := tpm.Dial(context.Background(), tpm.Config{Addr: "/dev/hallmark-no-such-tpm"})
	if !errors.Is(err, tpm.ErrUnreachable) || !strings.Contains(err.Error(), "/dev/hallmark-no-such-tpm") {
		t.Fatalf("missing device: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v for a device that does not exist", d)
	}
}

// ExtendPCR extends every allocated bank, so no bank is left that could
// later be brought to the value a sealed key expects, and each bank holds
// what PredictPCR says.
func TestExtendPCRExtendsEveryBank(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	ctx := context.Background()
	const pcr = 15
	m1 := sha256.Sum256([]byte("slot content 1"))
	m2 := sha256.Sum256([]byte("slot content 2"))
	for _, m := range [][32]byte{m1, m2} {
		if err := tpm.ExtendPCR(ctx, c, pcr, m[:]); err != nil {
			t.Fatal(err)
		}
	}
	banks := map[tpm2.TPMAlgID]crypto.Hash{tpm2.TPMAlgSHA1: crypto.SHA1, tpm2.TPMAlgSHA256: crypto.SHA256, tpm2.TPMAlgSHA384: crypto.SHA384, tpm2.TPMAlgSHA512: crypto.SHA512}
	checked := 0
	for alg, h := range banks {
		var got []tpm2.TPM2BDigest
		err := c.Do(ctx, func(tr transport.TPM) error {
			rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
				{Hash: alg, PCRSelect: tpm2.PCClientCompatible.PCRs(pcr)},
			}}}.Execute(tr)
			if err == nil {
				got = rsp.PCRValues.Digests
			}
			return err
		})
		if err != nil || len(got) == 0 {
			continue // bank not allocated on this TPM
		}
		checked++
		if want := tpm.PredictPCR(h, m1[:], m2[:]); !bytes.Equal(got[0].Buffer, want) {
			t.Errorf("bank %v: PCR %d = %x, predicted %x", h, pcr, got[0].Buffer, want)
		}
	}
	if checked == 0 {
		t.Fatal("no PCR bank could be read")
	}
	vals, err := tpm.ReadPCRs(ctx, c, []uint{pcr})
	if err != nil {
		t.Fatal(err)
	}
	if want := tpm.PredictPCR(crypto.SHA256, m1[:], m2[:]); !bytes.Equal(vals[0], want) {
		t.Fatalf("ReadPCRs = %x, predicted %x", vals[0], want)
	}
	t.Logf("%d banks extended and checked", checked)
	if err := tpm.ExtendPCR(ctx, c, pcr, []byte("short")); err == nil {
		t.Fatal("a 5-byte measurement was extended")
	}
}

// Initialize gives a never-incremented counter its first value, once;
// on a TPM that held a higher counter before, that value starts above it.
func TestCounterInitialize(t *testing.T) {
	c := dial(t, swtpmtest.Start(t))
	ctx := context.Background()
	if v, err := tpm.ReadCounter(ctx, c, tpm.FirmwareCounterIndex); err != nil || v != 0 {
		t.Fatalf("ReadCounter without a counter = %d, %v", v, err)
	}
	k, err := tpm.DefineCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k.Initialize(ctx); err != nil || v != 1 {
		t.Fatalf("first Initialize on a fresh TPM = %d, %v; want 1", v, err)
	}
	if v, err := k.Initialize(ctx); err != nil || v != 1 {
		t.Fatalf("second Initialize = %d, %v; want 1 (unchanged)", v, err)
	}
	if v, err := k.Advance(ctx, 4); err != nil || v != 4 {
		t.Fatalf("advance after initialising = %d, %v; want exactly 4", v, err)
	}
	if v, err := tpm.ReadCounter(ctx, c, tpm.FirmwareCounterIndex); err != nil || v != 4 {
		t.Fatalf("ReadCounter = %d, %v", v, err)
	}
	if err := tpm.UndefineCounter(ctx, c, tpm.FirmwareCounterIndex); err != nil {
		t.Fatal(err)
	}
	k, err = tpm.DefineCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k.Read(ctx); err != nil || v != 0 {
		t.Fatalf("redefined counter reads %d, %v before its first increment", v, err)
	}
	v, err := k.Initialize(ctx)
	if err != nil || v <= 4 {
		t.Fatalf("Initialize of a redefined counter = %d, %v; want above 4", v, err)
	}
	t.Logf("a redefined counter starts at %d after one that reached 4", v)
}
