// Package gm is Hallmark's facade over the Chinese national cryptography
// standards: SM2 (GB/T 32918) signatures and public-key encryption, SM3
// (GB/T 32905) hashing, SM4 (GB/T 32907) in GCM mode, and X.509 certificates
// signed with SM2-with-SM3.
//
// It is the only package in the module that imports a GM library
// (github.com/emmansun/gmsm). Everything else speaks in the types defined
// here: [PublicKey], [PrivateKey], [Signature], [Digest] and [KeyID].
//
// Conventions fixed by this package:
//
//   - An SM2 signature over a message M by key P is computed over
//     e = SM3(Z_A ‖ M), where Z_A is derived from the signer's user id and
//     P. The user id defaults to "1234567812345678" ([DefaultUID]).
//   - Signatures are carried as 64 bytes, r ‖ s, each a 32-byte big-endian
//     integer ([Signature]). [Signature.DER] and [ParseDERSignature]
//     convert to and from the ASN.1 form used by other SM2 libraries.
//   - Public keys are carried as 64 bytes X ‖ Y (the ledger's account public
//     key) or 65 bytes 0x04 ‖ X ‖ Y (SEC 1 uncompressed). A key id is the
//     SM3 digest of the 64-byte form.
//   - SM2 ciphertexts are C1 ‖ C3 ‖ C2 with C1 uncompressed (GB/T 32918.4).
//
// Every parser returns an error for malformed input; none panics.
package gm
