package storage

import (
	"encoding/binary"
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// Bucket names. docs/STORAGE.md describes every key and value byte by byte;
// keep the two in step.
var (
	bucketMeta         = []byte("meta")
	bucketBlocks       = []byte("blocks")    // height → block record
	bucketBlockIDs     = []byte("block_ids") // block id → height
	bucketShards       = []byte("shards")    // height → this node's shard (erasure.EncodeShard)
	bucketBodies       = []byte("bodies")    // height → SM3(body) ‖ body
	bucketTxs          = []byte("txs")       // tx id → height ‖ position
	bucketState        = []byte("state")     // key → height ‖ value
	bucketCerts        = []byte("certs")     // height → commit certificate
	bucketPayloads     = []byte("payloads")  // digest → payload location
	bucketMasks        = []byte("masks")     // digest → mask record
	bucketErasePending = []byte("erase_pending")
	bucketSafety       = []byte("safety")     // empty since schema 3 (see safetymigrate.go)
	bucketAudit        = []byte("audit")      // seq → chain ‖ entry
	bucketAuditTime    = []byte("audit_time") // time ‖ seq → empty
	bucketAuditSeg     = []byte("audit_seg")  // segment number → segment record

	allBuckets = [][]byte{
		bucketMeta, bucketBlocks, bucketBlockIDs, bucketShards, bucketBodies, bucketTxs,
		bucketState, bucketCerts, bucketPayloads, bucketMasks, bucketErasePending,
		bucketSafety, bucketAudit, bucketAuditTime, bucketAuditSeg,
	}
)

// Keys in the meta bucket.
var (
	metaSchema      = []byte("schema")       // uint32 BE
	metaChainID     = []byte("chain_id")     // UTF-8
	metaCreated     = []byte("created")      // int64 BE, ms since 1970 UTC
	metaPayloadSeg  = []byte("payload_seg")  // uint32 BE segment ‖ uint64 BE committed length
	metaAuditHead   = []byte("audit_head")   // CBOR auditHead
	metaScrubCursor = []byte("scrub_cursor") // uint64 BE: next height a scrub pass checks
	safetyKey       = []byte("current")
)

// SchemaVersion is the layout version this build writes. Version 3 keeps
// the consensus safety data in safety.log; Open moves it there from the
// safety.db of versions 1 and 2 (and from the main file's safety and kept
// buckets of stores older still) and then records version 3, so that an
// older build refuses the store (ErrSchemaTooNew) rather than start
// without its safety data. The main file's layout is otherwise unchanged
// since version 1.
const SchemaVersion = 3

// oldestSchema is the oldest layout version this build reads.
const oldestSchema = 1

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func u32(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return b[:]
}

// heightKey is the key of every height-indexed bucket: 8 bytes big-endian,
// so that byte order is height order.
func heightKey(h uint64) []byte { return u64(h) }

func parseHeightKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: height key of %d bytes", ErrCorrupt, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

// noShard marks a block for which this node holds no shard (it was not a
// validator of the block's epoch).
const noShard = 0xFFFF

// blockRecord is the value in the blocks bucket:
//
//	id [32] ‖ validators uint16 BE ‖ shard index uint16 BE (0xFFFF: none) ‖ canonical header
type blockRecord struct {
	ID         ledger.BlockID
	Validators int
	ShardIndex int // -1: no shard held
	Header     *ledger.Header
}

const blockRecordPrefix = gm.DigestSize + 4

func encodeBlockRecord(id ledger.BlockID, n, index int, header []byte) []byte {
	out := make([]byte, 0, blockRecordPrefix+len(header))
	out = append(out, id[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	if index < 0 {
		index = noShard
	}
	out = binary.BigEndian.AppendUint16(out, uint16(index))
	return append(out, header...)
}

// decodeBlockRecord parses and checks a block record: the header must
// decode strictly, hash to the stored id and sit at the expected height.
func decodeBlockRecord(height uint64, v []byte) (*blockRecord, error) {
	if len(v) < blockRecordPrefix+1 {
		return nil, fmt.Errorf("%w: block record %d is %d bytes", ErrCorrupt, height, len(v))
	}
	var r blockRecord
	copy(r.ID[:], v)
	r.Validators = int(binary.BigEndian.Uint16(v[32:]))
	r.ShardIndex = int(binary.BigEndian.Uint16(v[34:]))
	if r.ShardIndex == noShard {
		r.ShardIndex = -1
	}
	raw := v[blockRecordPrefix:]
	if got := gm.SM3(raw); got != r.ID {
		return nil, fmt.Errorf("%w: header at height %d hashes to %s, record says %s", ErrCorrupt, height, short(got), short(r.ID))
	}
	h, err := ledger.DecodeHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: header at height %d: %v", ErrCorrupt, height, err)
	}
	if h.Height != height {
		return nil, fmt.Errorf("%w: header stored at height %d says %d", ErrCorrupt, height, h.Height)
	}
	if r.Validators < 1 || r.ShardIndex >= r.Validators {
		return nil, fmt.Errorf("%w: block %d: shard %d of %d validators", ErrCorrupt, height, r.ShardIndex, r.Validators)
	}
	r.Header = h
	return &r, nil
}

// Transaction index value: height uint64 BE ‖ position uint32 BE.
func encodeTxLoc(height uint64, pos int) []byte {
	return binary.BigEndian.AppendUint32(u64(height), uint32(pos))
}

func decodeTxLoc(v []byte) (TxLocation, error) {
	if len(v) != 12 {
		return TxLocation{}, fmt.Errorf("%w: transaction index entry of %d bytes", ErrCorrupt, len(v))
	}
	return TxLocation{Height: binary.BigEndian.Uint64(v), Index: int(binary.BigEndian.Uint32(v[8:]))}, nil
}

// State value: height of the last write uint64 BE ‖ value.
func encodeStateValue(height uint64, value []byte) []byte {
	out := make([]byte, 8, 8+len(value))
	binary.BigEndian.PutUint64(out, height)
	return append(out, value...)
}

func decodeStateValue(v []byte) (value []byte, height uint64, err error) {
	if len(v) < 8 {
		return nil, 0, fmt.Errorf("%w: state value of %d bytes", ErrCorrupt, len(v))
	}
	return v[8:], binary.BigEndian.Uint64(v), nil
}

// Body value: SM3(body) ‖ body. The digest lets a read or a scrub detect a
// damaged body without decoding it (bbolt has no checksums on data pages).
func encodeBodyValue(body []byte) []byte {
	d := gm.SM3(body)
	out := make([]byte, 0, gm.DigestSize+len(body))
	out = append(out, d[:]...)
	return append(out, body...)
}

// checkBodyValue returns the body inside v (aliasing v) if its digest and
// length match.
func checkBodyValue(height uint64, v []byte, bodySize uint64) ([]byte, error) {
	if len(v) < gm.DigestSize {
		return nil, fmt.Errorf("%w: body %d: record of %d bytes", ErrCorrupt, height, len(v))
	}
	body := v[gm.DigestSize:]
	if uint64(len(body)) != bodySize {
		return nil, fmt.Errorf("%w: body %d is %d bytes, header says %d", ErrCorrupt, height, len(body), bodySize)
	}
	if gm.SM3(body) != gm.Digest(v[:gm.DigestSize]) {
		return nil, fmt.Errorf("%w: body %d does not match its digest", ErrCorrupt, height)
	}
	return body, nil
}

// payloadLoc is where a payload's bytes live:
//
//	segment uint32 BE ‖ offset uint64 BE ‖ length uint32 BE ‖ height uint64 BE
type payloadLoc struct {
	Segment uint32
	Offset  int64
	Length  int
	Height  uint64 // block that first stored it
}

const payloadLocSize = 4 + 8 + 4 + 8

func (l payloadLoc) encode() []byte {
	out := make([]byte, 0, payloadLocSize)
	out = binary.BigEndian.AppendUint32(out, l.Segment)
	out = binary.BigEndian.AppendUint64(out, uint64(l.Offset))
	out = binary.BigEndian.AppendUint32(out, uint32(l.Length))
	return binary.BigEndian.AppendUint64(out, l.Height)
}

func decodePayloadLoc(v []byte) (payloadLoc, error) {
	if len(v) != payloadLocSize {
		return payloadLoc{}, fmt.Errorf("%w: payload location of %d bytes", ErrCorrupt, len(v))
	}
	l := payloadLoc{
		Segment: binary.BigEndian.Uint32(v),
		Offset:  int64(binary.BigEndian.Uint64(v[4:])),
		Length:  int(binary.BigEndian.Uint32(v[12:])),
		Height:  binary.BigEndian.Uint64(v[16:]),
	}
	if l.Offset < 0 || l.Length > ledger.MaxPayloadBytes {
		return payloadLoc{}, fmt.Errorf("%w: payload location %+v", ErrCorrupt, l)
	}
	return l, nil
}

// Audit time index key: time in ms as uint64 BE with the sign bit flipped
// (so negative times sort first) ‖ seq uint64 BE.
func auditTimeKey(ms int64, seq uint64) []byte {
	out := make([]byte, 0, 16)
	out = binary.BigEndian.AppendUint64(out, uint64(ms)^(1<<63))
	return binary.BigEndian.AppendUint64(out, seq)
}

func parseAuditTimeKey(k []byte) (ms int64, seq uint64, err error) {
	if len(k) != 16 {
		return 0, 0, fmt.Errorf("%w: audit time key of %d bytes", ErrCorrupt, len(k))
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), binary.BigEndian.Uint64(k[8:]), nil
}
