// Package hsm is Hallmark's key custody: SM2 signing keys held in a TPM
// 2.0 with native SM2, software keys sealed by a TPM to PCR values, keys
// in a PKCS#11 HSM (build tag pkcs11), and a passphrase-encrypted
// development keystore.
//
// Every backend is a [Signer], which satisfies gm.Signer: consensus, the
// network layer and provisioning sign through it without knowing where
// the key lives. A key is named by one reference string (see [Ref]) and
// opened with [Open], the call the node runtime makes with the reference
// from its config:
//
//	s, err := hsm.Open(ctx, "tpm:handle=0x81000010", hsm.Options{TPM: tpm.Config{Addr: "/dev/tpmrm0"}})
//
// Security officers manage keys with [Generate], [Describe], [Rotate],
// [Destroy] and [List]; a device is provisioned with a tpm-sealed key
// that only a given release opens with [GenerateSealedTo], and an update
// carries the key to the next release with [ResealTo]. Each appends an entry to a hash-chained audit log
// (package hsm/audit) when Options.Audit is set. A rotation produces the
// chain's rotation statement (txs.NodeRotateKey: the body of a
// gov.node-rotate-key transaction) signed by the old and the new key.
//
// Subpackages: hsm/tpm (the TPM 2.0 commands, including the NV
// anti-rollback counter), hsm/devkeys (the dev key file format),
// hsm/audit, hsm/pkcs11 (cgo) and hsm/swtpmtest (a real swtpm for tests).
// docs/KEYS.md describes custody kinds, threat model and lifecycle.
package hsm
