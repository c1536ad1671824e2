package tpm

import (
	"context"
	"crypto"
	_ "crypto/sha1" // PCR banks
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MeasurementSize is the size of a measurement extended into a PCR: an
// SM3 or SHA-256 digest.
const MeasurementSize = 32

// bankHash maps a PCR bank's algorithm to its hash. The SM3 bank has no
// crypto.Hash; being 32 bytes wide it takes a measurement as is.
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

// BankDigest is the digest [ExtendPCR] extends into the bank hashed with
// h for the measurement m: m itself in a bank as wide as m (SHA-256, and
// SM3 on TPMs that have it), else m hashed with the bank's hash.
func BankDigest(h crypto.Hash, m []byte) []byte {
	if h.Size() == len(m) {
		return append([]byte(nil), m...)
	}
	hh := h.New()
	hh.Write(m)
	return hh.Sum(nil)
}

// PredictPCR returns the value a PCR of the bank hashed with h holds after
// a reset (all zeros) and one [ExtendPCR] per measurement, in order. Data
// is sealed to the SHA-256 value of a firmware that has not booted yet
// this way (see [PCRPolicyDigest], [SealToPolicy]).
func PredictPCR(h crypto.Hash, measurements ...[]byte) []byte {
	value := make([]byte, h.Size())
	for _, m := range measurements {
		hh := h.New()
		hh.Write(value)
		hh.Write(BankDigest(h, m))
		value = hh.Sum(value[:0])
	}
	return value
}

// pcrBanks returns the algorithms of the banks in which pcr is allocated.
func pcrBanks(t transport.TPM, pcr uint) ([]tpm2.TPMAlgID, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM_CAP_PCRS: %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("%w: TPM_CAP_PCRS: %v", ErrBadResponse, err)
	}
	var out []tpm2.TPMAlgID
	for _, s := range sel.PCRSelections {
		if int(pcr/8) < len(s.PCRSelect) && s.PCRSelect[pcr/8]&(1<<(pcr%8)) != 0 {
			out = append(out, s.Hash)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("PCR %d is allocated in no bank", pcr)
	}
	return out, nil
}

// ExtendPCR extends pcr with the measurement m (32 bytes), as booted
// firmware does with its image digest before anything unseals a key. It
// extends every bank in which the PCR is allocated, each with
// [BankDigest] of m, in one command: a bank left unextended could later
// be brought to the value a sealed key expects. Sealing policies use the
// SHA-256 bank ([PCRBank]), which then holds [PredictPCR] of m.
func ExtendPCR(ctx context.Context, c *Conn, pcr uint, m []byte) error {
	if len(m) != MeasurementSize {
		return fmt.Errorf("PCR extend needs a %d-byte measurement, got %d", MeasurementSize, len(m))
	}
	if err := checkPCRs([]uint{pcr}); err != nil {
		return err
	}
	var banks []tpm2.TPMAlgID
	err := c.Do(ctx, func(t transport.TPM) error {
		var err error
		banks, err = pcrBanks(t, pcr)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm %s: extending PCR %d: %w", c.Addr(), pcr, err)
	}
	var values tpm2.TPMLDigestValues
	for _, alg := range banks {
		var d []byte
		switch h, ok := bankHash(alg); {
		case ok:
			d = BankDigest(h, m)
		case alg == tpm2.TPMAlgSM3256:
			d = append([]byte(nil), m...)
		default:
			return fmt.Errorf("tpm %s: extending PCR %d: bank with unknown algorithm 0x%04x", c.Addr(), pcr, uint16(alg))
		}
		values.Digests = append(values.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: d})
	}
	err = c.DoOnce(ctx, func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   values,
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm %s: extending PCR %d: %w", c.Addr(), pcr, err)
	}
	return nil
}
