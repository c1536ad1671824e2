package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNoSM2 is returned when the TPM implements neither the SM2 signature
// scheme nor the SM2 curve. The tpm-sealed custody (a software SM2 key
// sealed to the TPM) works on such TPMs.
var ErrNoSM2 = errors.New("TPM lacks SM2 (TPM_ALG_SM2 / TPM_ECC_SM2_P256); use the tpm-sealed custody instead")

// Capabilities is what Hallmark needs to know about a TPM's algorithms.
type Capabilities struct {
	Algorithms []tpm2.TPMAlgID
	Curves     []tpm2.TPMECCCurve
}

// HasAlg reports whether the TPM lists alg.
func (c Capabilities) HasAlg(alg tpm2.TPMAlgID) bool {
	for _, a := range c.Algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// HasCurve reports whether the TPM lists curve.
func (c Capabilities) HasCurve(curve tpm2.TPMECCCurve) bool {
	for _, k := range c.Curves {
		if k == curve {
			return true
		}
	}
	return false
}

// CheckSM2 returns nil if native SM2 signing is possible, else an error
// wrapping ErrNoSM2 that says what is missing.
func (c Capabilities) CheckSM2() error {
	var missing []string
	if !c.HasAlg(tpm2.TPMAlgECC) {
		missing = append(missing, "TPM_ALG_ECC")
	}
	if !c.HasAlg(tpm2.TPMAlgSM2) {
		missing = append(missing, "TPM_ALG_SM2")
	}
	if !c.HasCurve(tpm2.TPMECCSM2P256) {
		missing = append(missing, "curve TPM_ECC_SM2_P256")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing %v)", ErrNoSM2, missing)
	}
	return nil
}

// SignHashAlg is the hash algorithm named in the TPM2_Sign scheme for an
// SM2 signature over a precomputed e. The TPM signs the digest as given;
// only the hash's size must match e's 32 bytes. SM3_256 is the honest
// name where the TPM lists it; swtpm does not (TPM_RC_HASH), so SHA256.
func (c Capabilities) SignHashAlg() tpm2.TPMAlgID {
	if c.HasAlg(tpm2.TPMAlgSM3256) {
		return tpm2.TPMAlgSM3256
	}
	return tpm2.TPMAlgSHA256
}

// QueryCapabilities asks the TPM for its algorithms and ECC curves.
func QueryCapabilities(ctx context.Context, c *Conn) (Capabilities, error) {
	var caps Capabilities
	err := c.Do(ctx, func(t transport.TPM) error {
		caps = Capabilities{}
		var err error
		caps.Algorithms, err = algorithms(t)
		if err != nil {
			return err
		}
		caps.Curves, err = curves(t)
		return err
	})
	if err != nil {
		return Capabilities{}, fmt.Errorf("tpm %s: querying capabilities: %w", c.Addr(), err)
	}
	return caps, nil
}

func algorithms(t transport.TPM) ([]tpm2.TPMAlgID, error) {
	var out []tpm2.TPMAlgID
	next := uint32(0)
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: next, PropertyCount: 128}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("TPM_CAP_ALGS: %w", err)
		}
		algs, err := rsp.CapabilityData.Data.Algorithms()
		if err != nil {
			return nil, fmt.Errorf("TPM_CAP_ALGS: %w", err)
		}
		for _, a := range algs.AlgProperties {
			out = append(out, a.Alg)
		}
		if !rsp.MoreData || len(algs.AlgProperties) == 0 {
			return out, nil
		}
		next = uint32(algs.AlgProperties[len(algs.AlgProperties)-1].Alg) + 1
	}
}

func curves(t transport.TPM) ([]tpm2.TPMECCCurve, error) {
	var out []tpm2.TPMECCCurve
	next := uint32(0)
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapECCCurves, Property: next, PropertyCount: 64}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("TPM_CAP_ECC_CURVES: %w", err)
		}
		cl, err := rsp.CapabilityData.Data.ECCCurves()
		if err != nil {
			return nil, fmt.Errorf("TPM_CAP_ECC_CURVES: %w", err)
		}
		out = append(out, cl.ECCCurves...)
		if !rsp.MoreData || len(cl.ECCCurves) == 0 {
			return out, nil
		}
		next = uint32(cl.ECCCurves[len(cl.ECCCurves)-1]) + 1
	}
}
