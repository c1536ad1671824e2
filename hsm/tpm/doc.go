// Package tpm is Hallmark's use of a TPM 2.0 (github.com/google/go-tpm):
// connections that survive TPM restarts ([Conn]), SM2 keys at persistent
// handles or as wrapped blobs ([Key]) signed through a hand-marshalled
// TPM2_Sign with the TPM_ALG_SM2 scheme, measurements extended into every
// PCR bank ([ExtendPCR], predicted by [PredictPCR]), data sealed to PCR
// values ([Seal], [Unseal]), key certification by the TPM's attestation
// key ([Key.Certify], [Certification.Verify]) and monotonic NV counters
// for anti-rollback ([Counter], initialised at provisioning).
//
// The SM2 convention: the TPM signs e = SM3(Z_A ‖ M), computed outside
// it (swtpm has no SM3), so the signature verifies with any standard SM2
// verifier under the default user id. go-tpm v0.9.8 has no SM2 members in
// its scheme and signature unions, hence the hand-written command.
//
// Tested against swtpm (package hsm/swtpmtest); see docs/KEYS.md.
package tpm
