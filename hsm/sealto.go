package hsm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"hallmark/gm"
	"hallmark/hsm/tpm"
)

// PCRValues maps PCRs to the SHA-256 bank values a sealed key expects
// them to hold, such as the value FirmwarePCR will hold once a given
// release has booted (tpm.PredictPCR of its measurement).
type PCRValues map[uint][]byte

func (v PCRValues) String() string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(v)) {
		parts = append(parts, fmt.Sprintf("%d=%s", p, hex.EncodeToString(v[p])))
	}
	return strings.Join(parts, ",")
}

// policy returns the PCRs and the PolicyPCR digest of a seal to values.
// The reference's PCR list, when it has one, must name the same PCRs.
func (r Ref) policy(values PCRValues) ([]uint, []byte, error) {
	if r.Kind != KindTPMSealed {
		return nil, nil, fmt.Errorf("%w: %s: only tpm-sealed keys are sealed to PCR values", ErrBadRef, r)
	}
	if len(values) == 0 {
		return nil, nil, fmt.Errorf("hsm: %s: no PCR values to seal to", r.Path)
	}
	pcrs := slices.Sorted(maps.Keys(values))
	if len(r.PCRs) > 0 && !slices.Equal(r.PCRs, pcrs) {
		return nil, nil, fmt.Errorf("%w: %s names PCRs %v, values are given for PCRs %v", ErrBadRef, r, r.PCRs, pcrs)
	}
	ordered := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		if len(values[p]) != sha256.Size {
			return nil, nil, fmt.Errorf("hsm: PCR %d value must be %d bytes (SHA-256 bank), got %d", p, sha256.Size, len(values[p]))
		}
		ordered[i] = values[p]
	}
	policy, err := tpm.PCRPolicyDigest(pcrs, ordered)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: %w", err)
	}
	return pcrs, policy, nil
}

// sealTo seals key to the policy and writes it to r.Path (never replacing
// a file), and describes the result.
func sealTo(ctx context.Context, r Ref, key *gm.PrivateKey, values PCRValues, opts *Options) (*KeyInfo, error) {
	pcrs, policy, err := r.policy(values)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(r.Path); err == nil {
		return nil, fmt.Errorf("hsm: %w: %s", ErrKeyExists, r.Path)
	}
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	d := key.Bytes()
	blob, err := tpm.SealToPolicy(ctx, c, d, pcrs, policy)
	clear(d)
	if owned {
		c.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: sealing %s: %w", r.Path, err)
	}
	if err := writeSealedFile(r.Path, key.PublicKey(), blob); err != nil {
		return nil, err
	}
	pub := key.PublicKey()
	return &KeyInfo{
		Ref: Ref{Kind: KindTPMSealed, Path: r.Path}.String(), Custody: KindTPMSealed,
		PublicKey: pub.String(), KeyID: pub.ID(),
		Detail: map[string]string{"pcrs": fmt.Sprint(pcrs), "pcrBank": "sha256", "sealedTo": values.String()},
	}, nil
}

// GenerateSealedTo creates a new tpm-sealed key at ref sealed to values
// instead of the PCRs' current values: the values a release produces once
// it has booted, so that a device is provisioned with a key that only
// that release can open. Until the PCRs hold those values the key cannot
// be opened, so GenerateSealedTo describes it instead of returning a
// signer. The reference's pcrs attribute, if present, must name the PCRs
// of values. Like Generate it never replaces a key and is audited.
func GenerateSealedTo(ctx context.Context, ref string, values PCRValues, opts Options) (info *KeyInfo, err error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	var pub *gm.PublicKey
	defer func() {
		detail := map[string]string{"sealedTo": values.String()}
		if aerr := opts.record("generate", ref, r.Kind, pub, err, detail); aerr != nil {
			info, err = nil, aerr
		}
	}()
	key, err := gm.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()
	if info, err = sealTo(ctx, r, key, values, &opts); err != nil {
		return nil, err
	}
	pub = key.PublicKey()
	return info, nil
}

// ResealTo opens the tpm-sealed key at ref, which must unseal under the
// PCRs' current values, and writes the same key to newRef sealed to
// values. It is how a key follows its device into the release an update
// installs: before the device reboots into the new release, the running
// one reseals its key to the new release's predicted PCR value, and keeps
// the old file for a fallback. The key keeps its identity. Audited as a
// "reseal" of ref.
func ResealTo(ctx context.Context, ref, newRef string, values PCRValues, opts Options) (info *KeyInfo, err error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	var pub *gm.PublicKey
	defer func() {
		detail := map[string]string{"newRef": newRef, "sealedTo": values.String()}
		if aerr := opts.record("reseal", ref, r.Kind, pub, err, detail); aerr != nil {
			info, err = nil, aerr
		}
	}()
	newR, err := ParseRef(newRef)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	if r.Kind != KindTPMSealed || newR.Kind != KindTPMSealed {
		return nil, fmt.Errorf("hsm: %w: resealing takes a tpm-sealed key to a tpm-sealed key, not %s to %s", ErrCustodyMismatch, r.Kind, newR.Kind)
	}
	// Refuse what sealTo would refuse before anything is unsealed.
	if _, _, err := newR.policy(values); err != nil {
		return nil, err
	}
	if _, err := os.Stat(newR.Path); err == nil {
		return nil, fmt.Errorf("hsm: %w: %s", ErrKeyExists, newR.Path)
	}
	key, err := unsealKey(ctx, r, &opts)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()
	pub = key.PublicKey()
	return sealTo(ctx, newR, key, values, &opts)
}
