package tpm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Errors from sealing and unsealing.
var (
	// ErrPCRMismatch: the PCR values differ from those the data was sealed
	// to (the firmware or its measurements changed).
	ErrPCRMismatch = errors.New("PCR values do not match the sealing policy")
	// ErrWrongTPM: the blob does not load here; it was sealed by another
	// TPM, or this TPM's owner seed changed (TPM2_Clear).
	ErrWrongTPM = errors.New("sealed blob does not belong to this TPM")
)

// MaxSealedSize bounds the data a sealed object holds (TPM2B_SENSITIVE_DATA).
const MaxSealedSize = 128

// PCRBank is the PCR bank policies use. SHA-256 is the bank every TPM 2.0
// allocates; swtpm has no SM3 bank.
const PCRBank = tpm2.TPMAlgSHA256

// SealedBlob is data sealed under the storage root key with a PolicyPCR
// authorisation. Public and Private are what TPM2_Load takes; PCRs names
// the SHA-256 PCRs of the policy, and Policy is its digest.
type SealedBlob struct {
	Public  []byte // TPMT_PUBLIC of the keyed-hash object
	Private []byte // TPM2B_PRIVATE contents
	PCRs    []uint
	Policy  []byte
}

func pcrSelection(pcrs []uint) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      PCRBank,
		PCRSelect: tpm2.PCClientCompatible.PCRs(pcrs...),
	}}}
}

func checkPCRs(pcrs []uint) error {
	if len(pcrs) == 0 {
		return errors.New("no PCRs selected for the sealing policy")
	}
	for _, p := range pcrs {
		if p > 23 {
			return fmt.Errorf("PCR %d out of range 0-23", p)
		}
	}
	return nil
}

// PCRPolicyDigest is the policy digest of TPM2_PolicyPCR over pcrs (in
// ascending order) holding values, as a fresh SHA-256 policy session
// computes it. Use it to seal to values a future boot will produce.
func PCRPolicyDigest(pcrs []uint, values [][]byte) ([]byte, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(values) != len(pcrs) {
		return nil, fmt.Errorf("%d PCR values for %d PCRs", len(values), len(pcrs))
	}
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{Pcrs: pcrSelection(pcrs), PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// sortedPCRs returns pcrs ascending without duplicates: the order in
// which TPM2_PCR_Read returns them and PolicyPCR hashes them.
func sortedPCRs(pcrs []uint) []uint {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	return slices.Compact(out)
}

// ReadPCRs returns the SHA-256 values of pcrs, in ascending PCR order.
func ReadPCRs(ctx context.Context, c *Conn, pcrs []uint) ([][]byte, error) {
	pcrs = sortedPCRs(pcrs)
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	var values [][]byte
	err := c.Do(ctx, func(t transport.TPM) error {
		values = values[:0]
		// TPM2_PCR_Read returns at most 8 digests per call.
		for i := 0; i < len(pcrs); i += 8 {
			chunk := pcrs[i:min(i+8, len(pcrs))]
			rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(chunk)}.Execute(t)
			if err != nil {
				return fmt.Errorf("TPM2_PCR_Read: %w", err)
			}
			if len(rsp.PCRValues.Digests) != len(chunk) {
				return fmt.Errorf("TPM2_PCR_Read: %d values for %d PCRs (is the SHA-256 bank allocated?)", len(rsp.PCRValues.Digests), len(chunk))
			}
			for _, d := range rsp.PCRValues.Digests {
				values = append(values, d.Buffer)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: reading PCRs: %w", c.Addr(), err)
	}
	return values, nil
}

// Seal seals secret (at most MaxSealedSize bytes) to the current values
// of pcrs. The sealed object has no user auth (only the policy unseals
// it), is fixed to this TPM and its SRK, and is exempt from
// dictionary-attack lockout.
func Seal(ctx context.Context, c *Conn, secret []byte, pcrs []uint) (*SealedBlob, error) {
	pcrs = sortedPCRs(pcrs)
	values, err := ReadPCRs(ctx, c, pcrs)
	if err != nil {
		return nil, err
	}
	policy, err := PCRPolicyDigest(pcrs, values)
	if err != nil {
		return nil, err
	}
	return SealToPolicy(ctx, c, secret, pcrs, policy)
}

// SealToPolicy seals secret under a PolicyPCR digest computed in advance
// (see PCRPolicyDigest), so it unseals only when pcrs hold the values the
// digest was computed from.
func SealToPolicy(ctx context.Context, c *Conn, secret []byte, pcrs []uint, policy []byte) (*SealedBlob, error) {
	pcrs = sortedPCRs(pcrs)
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(secret) == 0 || len(secret) > MaxSealedSize {
		return nil, fmt.Errorf("sealed data must be 1-%d bytes, got %d", MaxSealedSize, len(secret))
	}
	if len(policy) != sha256.Size {
		return nil, fmt.Errorf("policy digest must be %d bytes, got %d", sha256.Size, len(policy))
	}
	blob := &SealedBlob{PCRs: pcrs, Policy: append([]byte(nil), policy...)}
	err := c.doSensitive(ctx, func(t transport.TPM) error {
		srk, err := createSRK(t)
		if err != nil {
			return err
		}
		defer flush(t, srk.Handle)
		rsp, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
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
				Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
					Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
				}),
			}),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_Create (seal): %w", err)
		}
		public, err := rsp.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		blob.Public = tpm2.Marshal(*public)
		blob.Private = rsp.OutPrivate.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: sealing: %w", c.Addr(), err)
	}
	return blob, nil
}

// Unseal returns the sealed data if the PCRs hold the sealed-to values.
// The caller should wipe the result when done. Errors wrap ErrPCRMismatch
// or ErrWrongTPM where those are the cause.
func Unseal(ctx context.Context, c *Conn, blob *SealedBlob) ([]byte, error) {
	if err := checkPCRs(blob.PCRs); err != nil {
		return nil, err
	}
	var secret []byte
	err := c.doSensitive(ctx, func(t transport.TPM) error {
		srk, err := createSRK(t)
		if err != nil {
			return err
		}
		defer flush(t, srk.Handle)
		loaded, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    tpm2.TPM2BPrivate{Buffer: blob.Private},
			InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](blob.Public),
		}.Execute(t)
		if err != nil {
			if errors.Is(err, tpm2.TPMRCIntegrity) || errors.Is(err, tpm2.TPMRCSize) || errors.Is(err, tpm2.TPMRCValue) {
				return fmt.Errorf("%w: %v", ErrWrongTPM, err)
			}
			return fmt.Errorf("loading sealed blob: %w", err)
		}
		defer flush(t, loaded.ObjectHandle)
		sel := pcrSelection(blob.PCRs)
		policy := tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicyPCR{PolicySession: h, Pcrs: sel}.Execute(t)
			return err
		})
		rsp, err := tpm2.Unseal{
			ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: policy},
		}.Execute(t)
		if err != nil {
			if errors.Is(err, tpm2.TPMRCPolicyFail) {
				return fmt.Errorf("%w (PCRs %v): %v", ErrPCRMismatch, blob.PCRs, err)
			}
			return fmt.Errorf("TPM2_Unseal: %w", err)
		}
		// Copy out before the transport's buffers are wiped, then
		// clear go-tpm's copy.
		secret = slices.Clone(rsp.OutData.Buffer)
		clear(rsp.OutData.Buffer)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: unsealing: %w", c.Addr(), err)
	}
	return secret, nil
}
