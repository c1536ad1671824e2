// Package storage is a node's persistent store: one bbolt file holding
// committed headers, this node's erasure-coded shard of every block body
// (with its Merkle proof against Header.ShardRoot), the full bodies of a
// recent window, the transaction index, world state, commit certificates
// and the audit log; an append-only log holding the consensus safety data
// and kept blocks; and payload segment files that keep content-addressed
// payloads outside bbolt so that a masked payload can really be erased.
//
// The node runtime is its user:
//
//   - CommitBlock stores everything a committed block changes in one
//     fsync'd bbolt transaction; a crash leaves the previous or the new
//     block, never a part.
//   - Header, Body, Block, Tx, Get/Scan/View, Payload and CommitCert read;
//     Body rebuilds a pruned body from any k verified shards fetched
//     through a ShardFetcher, which the network layer implements.
//   - SaveSafety/LoadSafety keep consensus safety data, and KeptBlocks/
//     ReleaseKept the blocks voted for, in the safety log: one write and
//     one fdatasync per save.
//   - AppendAudit, AuditRange, ExportAudit, SealAudit and PruneAudit run
//     the audit log.
//   - Scrub (or ScrubLoop in the background) re-hashes stored data and
//     repairs it from local data or peers.
//   - MaskPayload (or Batch.Masks) erases a payload's bytes from disk.
//
// The erasure coding itself is the pure package storage/erasure, which the
// proposer and voters call without a store. docs/STORAGE.md documents the
// file layout byte by byte and the crash and erasure guarantees.
package storage
