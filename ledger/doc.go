// Package ledger holds Hallmark's data model: the six objects of the
// platform specification's data-format standard (account, block,
// transaction, entity, contract, config), their canonical encoding, the
// identifiers derived from it, and the SM3 Merkle tree that commits to a
// block's transactions.
//
// Everything that is signed or hashed is encoded as deterministic CBOR
// (RFC 8949 §4.2.1, core deterministic encoding) with small integer map
// keys. Decoding is strict: a decoder accepts only bytes that re-encode to
// themselves, so every object has exactly one encoding and one id.
// Decoders reject unknown versions, unknown fields, oversize fields and
// trailing bytes, and never panic.
//
// The package is pure: no I/O, clocks or randomness.
package ledger
