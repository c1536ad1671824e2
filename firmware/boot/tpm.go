package boot

import (
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/ledger"
)

// OpenTPM opens the first TPM device of paths that exists (normally the
// kernel's resource manager /dev/tpmrm0, then the raw /dev/tpm0).
func OpenTPM(paths []string) (transport.TPMCloser, string, error) {
	var errs []error
	for _, p := range paths {
		t, err := linuxtpm.Open(p)
		if err == nil {
			return t, p, nil
		}
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("boot: no TPM: %w", errors.Join(errs...))
}

// bankHash maps a PCR bank's algorithm to its hash. SM3 banks have no
// crypto.Hash; they take the SM3 measurement as is.
func bankHash(alg tpm2.TPMAlgID) (crypto.Hash, bool) {
	switch alg {
	case tpm2.TPMAlgSHA1:
		return crypto.SHA1, true
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, true
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, true
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// activeBanks returns the PCR banks in which pcr is allocated.
func activeBanks(tpm transport.TPM, pcr int) ([]tpm2.TPMAlgID, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("boot: read PCR banks: %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("boot: read PCR banks: %w", err)
	}
	var out []tpm2.TPMAlgID
	for _, s := range sel.PCRSelections {
		if pcr/8 < len(s.PCRSelect) && s.PCRSelect[pcr/8]&(1<<(pcr%8)) != 0 {
			out = append(out, tpm2.TPMAlgID(s.Hash))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("boot: PCR %d is allocated in no bank", pcr)
	}
	return out, nil
}

// ExtendMeasurement extends pcr in every active bank with the
// measurement m: banks with 32-byte digests (SHA-256, SM3) get m itself,
// others m hashed with the bank's hash (see images.BankDigest). No bank is
// left unextended, so none can later be brought to the value a sealed key
// expects.
func ExtendMeasurement(tpm transport.TPM, pcr int, m gm.Digest) error {
	banks, err := activeBanks(tpm, pcr)
	if err != nil {
		return err
	}
	var values tpm2.TPMLDigestValues
	for _, alg := range banks {
		var d []byte
		if h, ok := bankHash(alg); ok {
			d = images.BankDigest(h, m)
		} else if alg == tpm2.TPMAlgSM3256 {
			d = append([]byte(nil), m[:]...)
		} else {
			return fmt.Errorf("boot: PCR bank with unknown algorithm 0x%x", uint16(alg))
		}
		values.Digests = append(values.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: d})
	}
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   values,
	}.Execute(tpm)
	if err != nil {
		return fmt.Errorf("boot: extend PCR %d: %w", pcr, err)
	}
	return nil
}

func pcrSelection(alg tpm2.TPMAlgID, pcr int) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: alg, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(pcr))},
	}}
}

// ReadPCR returns the SHA-256 bank value of pcr.
func ReadPCR(tpm transport.TPM, pcr int) ([]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(tpm2.TPMAlgSHA256, pcr)}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("boot: read PCR %d: %w", pcr, err)
	}
	if len(rsp.PCRValues.Digests) != 1 {
		return nil, fmt.Errorf("boot: read PCR %d: %d values", pcr, len(rsp.PCRValues.Digests))
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
}

// SealedKey is a secret sealed by the TPM to the SHA-256 value of one
// PCR: it unseals only on the same TPM while that PCR holds that value.
// Its encoding is canonical CBOR.
//
// This is a stand-in for the sealed-key backend of package hsm, which the
// lead wires in place of [TPMUnsealer] when it lands; the format is
// defined here only so that boot can be tested end to end before then.
type SealedKey struct {
	Version uint8  `cbor:"1,keyasint"`
	PCR     uint8  `cbor:"2,keyasint"`
	Public  []byte `cbor:"3,keyasint"` // TPM2B_PUBLIC
	Private []byte `cbor:"4,keyasint"` // TPM2B_PRIVATE
}

const sealedKeyVersion = 1

// ErrWrongMeasurement means a sealed key's PCR policy failed: the system
// did not boot the firmware the key was sealed to.
var ErrWrongMeasurement = errors.New("boot: key is sealed to another firmware measurement")

func srk(tpm transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("boot: create storage root key: %w", err)
	}
	return rsp, nil
}

func flush(tpm transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tpm)
}

// PolicyForPCR returns the TPM policy digest that a sealed key with
// PolicyPCR over the SHA-256 bank of pcr holding pcrValue carries.
func PolicyForPCR(pcr int, pcrValue []byte) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	h := crypto.SHA256.New()
	h.Write(pcrValue)
	cmd := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: pcrSelection(tpm2.TPMAlgSHA256, pcr)}
	if err := cmd.Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// Seal seals secret so that it unseals only while pcr's SHA-256 bank
// holds pcrValue (see images.PredictPCR). The PCR need not hold that value
// now: this is how a key is sealed to a firmware before it boots.
func Seal(tpm transport.TPM, pcr int, pcrValue, secret []byte) ([]byte, error) {
	policy, err := PolicyForPCR(pcr, pcrValue)
	if err != nil {
		return nil, err
	}
	parent, err := srk(tpm)
	if err != nil {
		return nil, err
	}
	defer flush(tpm, parent.ObjectHandle)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.ObjectHandle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM:    true,
				FixedParent: true,
				NoDA:        true,
			},
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		}),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("boot: seal: %w", err)
	}
	return ledger.Marshal(SealedKey{
		Version: sealedKeyVersion,
		PCR:     uint8(pcr),
		Public:  tpm2.Marshal(rsp.OutPublic),
		Private: tpm2.Marshal(rsp.OutPrivate),
	})
}

// Unsealer recovers a sealed key. It is the adapter point for key custody
// (package hsm); [TPMUnsealer] is the stand-in until hsm lands.
type Unsealer interface {
	Unseal(ctx context.Context, blob []byte) ([]byte, error)
}

// TPMUnsealer unseals [SealedKey] blobs with the TPM directly.
type TPMUnsealer struct{ TPM transport.TPM }

// Unseal loads the sealed object under the storage root key, satisfies its
// PCR policy with the current PCR value, and returns the secret. A PCR
// holding another value gives ErrWrongMeasurement.
func (u TPMUnsealer) Unseal(_ context.Context, blob []byte) ([]byte, error) {
	var sk SealedKey
	if err := ledger.Unmarshal(blob, &sk); err != nil {
		return nil, fmt.Errorf("boot: sealed key: %w", err)
	}
	if sk.Version != sealedKeyVersion || sk.PCR > 23 {
		return nil, fmt.Errorf("boot: sealed key version %d pcr %d", sk.Version, sk.PCR)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](sk.Public)
	if err != nil {
		return nil, fmt.Errorf("boot: sealed key public part: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](sk.Private)
	if err != nil {
		return nil, fmt.Errorf("boot: sealed key private part: %w", err)
	}
	parent, err := srk(u.TPM)
	if err != nil {
		return nil, err
	}
	defer flush(u.TPM, parent.ObjectHandle)
	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.ObjectHandle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(u.TPM)
	if err != nil {
		return nil, fmt.Errorf("boot: load sealed key (sealed on another TPM?): %w", err)
	}
	defer flush(u.TPM, obj.ObjectHandle)
	sess, closeSess, err := tpm2.PolicySession(u.TPM, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("boot: policy session: %w", err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(tpm2.TPMAlgSHA256, int(sk.PCR))}).Execute(u.TPM); err != nil {
		return nil, fmt.Errorf("boot: PCR policy: %w", err)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess}}.Execute(u.TPM)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, fmt.Errorf("%w (PCR %d)", ErrWrongMeasurement, sk.PCR)
	}
	if err != nil {
		return nil, fmt.Errorf("boot: unseal: %w", err)
	}
	return rsp.OutData.Buffer, nil
}

// DefaultCounterIndex is the NV index of the stand-in anti-rollback
// counter, in the owner range.
const DefaultCounterIndex = 0x01_48_4d_01 // "HM" 01

// TPMCounter is an anti-rollback counter over a TPM NV counter index
// (TPMA_NV_COUNTER): it can only go up, survives power loss, and cannot
// be reset by undefining and redefining the index.
//
// It is a stand-in for the NV counter of package hsm: the lead replaces it
// with hsm's implementation of images.RollbackCounter when hsm lands.
type TPMCounter struct {
	TPM   transport.TPM
	Index tpm2.TPMHandle
}

var _ images.RollbackCounter = TPMCounter{}

func (c TPMCounter) public() (*tpm2.NVReadPublicResponse, error) {
	return tpm2.NVReadPublic{NVIndex: c.Index}.Execute(c.TPM)
}

// Read returns the counter value, 0 if the index was never defined or
// never incremented.
func (c TPMCounter) Read(context.Context) (uint64, error) {
	pub, err := c.public()
	if errors.Is(err, tpm2.TPMRCHandle) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	contents, err := pub.NVPublic.Contents()
	if err != nil {
		return 0, fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	if !contents.Attributes.Written {
		return 0, nil
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: c.Index, Name: pub.NVName},
		Size:       8,
	}.Execute(c.TPM)
	if err != nil {
		return 0, fmt.Errorf("boot: read anti-rollback counter: %w", err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("boot: anti-rollback counter of %d bytes", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// Advance increments the counter until it is at least v. A counter's
// first increment sets it to the highest value any counter of the TPM
// ever had, so a fresh index may jump past v; it never goes down.
func (c TPMCounter) Advance(ctx context.Context, v uint64) error {
	if v == 0 {
		return nil
	}
	if _, err := c.public(); errors.Is(err, tpm2.TPMRCHandle) {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.TPMRHOwner,
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: c.Index,
				NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{
					OwnerWrite: true,
					OwnerRead:  true,
					AuthRead:   true,
					NT:         tpm2.TPMNTCounter,
					NoDA:       true,
				},
				DataSize: 8,
			}),
		}.Execute(c.TPM)
		if err != nil {
			return fmt.Errorf("boot: define anti-rollback counter: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	for range 1 << 12 {
		cur, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if cur >= v {
			return nil
		}
		pub, err := c.public()
		if err != nil {
			return fmt.Errorf("boot: anti-rollback counter: %w", err)
		}
		if _, err := (tpm2.NVIncrement{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: c.Index, Name: pub.NVName},
		}).Execute(c.TPM); err != nil {
			return fmt.Errorf("boot: increment anti-rollback counter: %w", err)
		}
	}
	return fmt.Errorf("boot: anti-rollback counter did not reach %d", v)
}
