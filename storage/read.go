package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"hallmark/ledger"
	"hallmark/storage/erasure"
)

// StoredHeader is a committed header with what the store recorded beside
// it: the block id, the validator count of its epoch (the number of
// shards) and which shard this node keeps (-1: none).
type StoredHeader struct {
	ledger.Header
	ID         ledger.BlockID
	Validators int
	ShardIndex int
}

func (r *blockRecord) stored() *StoredHeader {
	return &StoredHeader{Header: *r.Header, ID: r.ID, Validators: r.Validators, ShardIndex: r.ShardIndex}
}

func getBlockRecord(tx *bolt.Tx, height uint64) (*blockRecord, error) {
	v := tx.Bucket(bucketBlocks).Get(heightKey(height))
	if v == nil {
		return nil, fmt.Errorf("%w: block %d", ErrNotFound, height)
	}
	return decodeBlockRecord(height, v)
}

// Header returns the committed header at height.
func (s *Store) Header(height uint64) (*StoredHeader, error) {
	var out *StoredHeader
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := getBlockRecord(tx, height)
		if err != nil {
			return err
		}
		out = rec.stored()
		return nil
	})
	return out, err
}

// HeaderByID returns the committed header with the given block id.
func (s *Store) HeaderByID(id ledger.BlockID) (*StoredHeader, error) {
	var out *StoredHeader
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlockIDs).Get(id[:])
		if v == nil {
			return fmt.Errorf("%w: block %s", ErrNotFound, short(id))
		}
		h, err := parseHeightKey(v)
		if err != nil {
			return err
		}
		rec, err := getBlockRecord(tx, h)
		if err != nil {
			return err
		}
		if rec.ID != id {
			return fmt.Errorf("%w: id index points %s at height %d, which holds %s", ErrCorrupt, short(id), h, short(rec.ID))
		}
		out = rec.stored()
		return nil
	})
	return out, err
}

// CommitCert returns the commit certificate stored with the block at height.
func (s *Store) CommitCert(height uint64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCerts).Get(heightKey(height))
		if v == nil {
			return fmt.Errorf("%w: certificate of block %d", ErrNotFound, height)
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// Shard returns this node's verified shard of the block at height, to
// serve a peer that rebuilds the body. It returns ErrNotFound if this node
// keeps no shard of that block and ErrCorrupt if the stored shard fails
// its proof (a scrub pass repairs it).
func (s *Store) Shard(height uint64) (*erasure.Shard, error) {
	var out *erasure.Shard
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := getBlockRecord(tx, height)
		if err != nil {
			return err
		}
		out, err = ownShardOf(tx, rec)
		return err
	})
	return out, err
}

// ownShardOf reads and verifies this node's shard of rec; the returned
// shard's Data does not alias the database.
func ownShardOf(tx *bolt.Tx, rec *blockRecord) (*erasure.Shard, error) {
	h := rec.Header.Height
	if rec.ShardIndex < 0 {
		return nil, fmt.Errorf("%w: this node keeps no shard of block %d", ErrNotFound, h)
	}
	v := tx.Bucket(bucketShards).Get(heightKey(h))
	if v == nil {
		return nil, fmt.Errorf("%w: shard %d of block %d is missing", ErrCorrupt, rec.ShardIndex, h)
	}
	sh, err := erasure.DecodeShard(bytes.Clone(v))
	if err != nil {
		return nil, fmt.Errorf("%w: shard of block %d: %v", ErrCorrupt, h, err)
	}
	if int(sh.Index) != rec.ShardIndex {
		return nil, fmt.Errorf("%w: block %d holds shard %d, expected %d", ErrCorrupt, h, sh.Index, rec.ShardIndex)
	}
	if err := sh.Verify(rec.Header.ShardRoot, rec.Validators, rec.Header.BodySize); err != nil {
		return nil, fmt.Errorf("%w: block %d: %v", ErrCorrupt, h, err)
	}
	return sh, nil
}

// localBody returns a copy of the stored body of rec if present and
// intact; (nil, nil) if not stored.
func localBody(tx *bolt.Tx, rec *blockRecord) ([]byte, error) {
	v := tx.Bucket(bucketBodies).Get(heightKey(rec.Header.Height))
	if v == nil {
		return nil, nil
	}
	body, err := checkBodyValue(rec.Header.Height, v, rec.Header.BodySize)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(body), nil
}

// checkBlockData verifies this node's shard and stored body of rec.
func (s *Store) checkBlockData(tx *bolt.Tx, rec *blockRecord) error {
	var errs []error
	if rec.ShardIndex >= 0 {
		if _, err := ownShardOf(tx, rec); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := localBody(tx, rec); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Body returns the encoded body (ledger.EncodeBody: transactions without
// payloads) of the block at height. It uses the stored body when it is
// present and intact; otherwise it rebuilds the body from this node's
// shard and shards fetched through f (nil: local only), verifying each
// against the header, and rewrites whatever of its own was damaged or is
// due (its shard; the body, inside the window or on an archive node).
func (s *Store) Body(ctx context.Context, height uint64, f ShardFetcher) ([]byte, error) {
	var rec *blockRecord
	var body []byte
	var own *erasure.Shard
	var localErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getBlockRecord(tx, height); err != nil {
			return err
		}
		if body, localErr = localBody(tx, rec); body != nil {
			return nil
		}
		if rec.ShardIndex >= 0 {
			if own, err = ownShardOf(tx, rec); err != nil {
				localErr = errors.Join(localErr, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if body != nil {
		return body, nil
	}
	if localErr != nil {
		s.log.Warn("stored block data damaged; rebuilding from shards", "height", height, "err", localErr)
	}
	body, err = s.rebuild(ctx, rec, own, f)
	if err != nil {
		return nil, err
	}
	if err := s.storeRebuilt(rec, body, own == nil && rec.ShardIndex >= 0, true); err != nil {
		s.log.Error("storing rebuilt block data", "height", height, "err", err)
	}
	return body, nil
}

// Block returns the committed block at height, transactions without their
// payloads (see Payload).
func (s *Store) Block(ctx context.Context, height uint64, f ShardFetcher) (*ledger.Block, error) {
	h, err := s.Header(height)
	if err != nil {
		return nil, err
	}
	body, err := s.Body(ctx, height, f)
	if err != nil {
		return nil, err
	}
	txs, err := ledger.DecodeBody(body)
	if err != nil {
		return nil, fmt.Errorf("%w: body of block %d: %v", ErrCorrupt, height, err)
	}
	return &ledger.Block{Header: h.Header, Txs: txs}, nil
}

// TxLocation is where a committed transaction sits.
type TxLocation struct {
	Height uint64
	Index  int
}

// TxLocation returns the height and position of a committed transaction,
// or ErrNotFound: the cheap check the executor uses to refuse replays.
func (s *Store) TxLocation(id ledger.TxID) (TxLocation, error) {
	var loc TxLocation
	err := s.View(func(sn *Snapshot) error {
		var err error
		loc, err = sn.TxLocation(id)
		return err
	})
	return loc, err
}

// TxInclusion is a committed transaction with what a client needs to
// verify it: the header (whose id the chain commits to) and the Merkle
// proof of the transaction id against Header.TxRoot.
type TxInclusion struct {
	TxLocation
	Header *StoredHeader
	Tx     ledger.Transaction // without payload
	Proof  ledger.MerkleProof
}

// Tx returns a committed transaction with its inclusion proof.
func (s *Store) Tx(ctx context.Context, id ledger.TxID, f ShardFetcher) (*TxInclusion, error) {
	loc, err := s.TxLocation(id)
	if err != nil {
		return nil, err
	}
	b, err := s.Block(ctx, loc.Height, f)
	if err != nil {
		return nil, err
	}
	if loc.Index >= len(b.Txs) || b.Txs[loc.Index].ID() != id {
		return nil, fmt.Errorf("%w: index says %s is transaction %d of block %d", ErrCorrupt, short(id), loc.Index, loc.Height)
	}
	proof, err := b.ProveTx(loc.Index)
	if err != nil {
		return nil, err
	}
	h, err := s.Header(loc.Height)
	if err != nil {
		return nil, err
	}
	return &TxInclusion{TxLocation: loc, Header: h, Tx: b.Txs[loc.Index], Proof: proof}, nil
}

// SaveSafety replaces the consensus safety data and keeps the blocks
// given (see [KeptBlock]), and drops kept blocks at or below the
// committed tip: one frame appended to the safety log with one write. It
// returns once the frame is on disk (fdatasync), so consensus may let a
// vote leave afterwards. A block already kept with the same bytes is not
// written again. One save carries at most 1 GiB + 2 MiB.
func (s *Store) SaveSafety(ctx context.Context, data []byte, keep ...KeptBlock) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	if len(data) > MaxCertBytes {
		return fmt.Errorf("%w: safety data of %d bytes", ErrInvalid, len(data))
	}
	for _, k := range keep {
		if len(k.Data) == 0 || len(k.Data) > MaxKeptBytes {
			return fmt.Errorf("%w: kept block %s of %d bytes", ErrInvalid, short(k.ID), len(k.Data))
		}
	}
	tip, hasTip := s.committedTip()
	// The safety log has its own lock, so this never waits for a block
	// commit.
	if err := s.safety.save(data, keep, tip, hasTip); err != nil {
		return fmt.Errorf("storage: save safety data: %w", err)
	}
	return nil
}

// LoadSafety returns the last safety data saved, or nil if none was.
func (s *Store) LoadSafety() ([]byte, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	return s.safety.load(), nil
}

// Snapshot is a consistent read-only view of the store, valid inside the
// function given to View. Byte slices it returns alias the database and
// are valid only until that function returns.
type Snapshot struct {
	tx *bolt.Tx
}

// View runs fn on a consistent snapshot: the state as of one committed
// block, whatever commits meanwhile. Keep fn short: a long-lived snapshot
// keeps the pages it sees from being reused.
func (s *Store) View(fn func(*Snapshot) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Snapshot{tx: tx}) })
}

// TxLocation is [Store.TxLocation] in the snapshot: one read transaction
// for many lookups.
func (sn *Snapshot) TxLocation(id ledger.TxID) (TxLocation, error) {
	v := sn.tx.Bucket(bucketTxs).Get(id[:])
	if v == nil {
		return TxLocation{}, &notFound{kind: "transaction", id: id}
	}
	return decodeTxLoc(v)
}

// Tip returns the height of the highest block in the snapshot, ok = false
// if there is none.
func (sn *Snapshot) Tip() (height uint64, ok bool) {
	k, _ := sn.tx.Bucket(bucketBlocks).Cursor().Last()
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// Get returns the value of a state key and the height of the block that
// last wrote it, or ErrNotFound.
func (sn *Snapshot) Get(key []byte) (value []byte, height uint64, err error) {
	v := sn.tx.Bucket(bucketState).Get(key)
	if v == nil {
		return nil, 0, &notFound{kind: "state key", key: string(key[:min(len(key), maxKeyInError)])}
	}
	return decodeStateValue(v)
}

// SkipRest, returned by a Scan callback, ends the scan without error.
var SkipRest = errors.New("storage: skip the rest of the scan")

// Scan calls fn for each state key with the given prefix, in byte order,
// starting at start if it sorts after the prefix (for paging: pass the
// last key seen plus a zero byte). fn's arguments are valid only during
// the call. Return SkipRest to stop early.
func (sn *Snapshot) Scan(prefix, start []byte, fn func(key, value []byte, height uint64) error) error {
	from := prefix
	if bytes.Compare(start, prefix) > 0 {
		from = start
	}
	c := sn.tx.Bucket(bucketState).Cursor()
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		value, height, err := decodeStateValue(v)
		if err != nil {
			return err
		}
		if err := fn(k, value, height); err != nil {
			if errors.Is(err, SkipRest) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Get returns a copy of a state value and the height that last wrote it.
func (s *Store) Get(key []byte) (value []byte, height uint64, err error) {
	err = s.View(func(sn *Snapshot) error {
		v, h, err := sn.Get(key)
		value, height = bytes.Clone(v), h
		return err
	})
	return value, height, err
}

// Scan is Snapshot.Scan on a fresh snapshot.
func (s *Store) Scan(prefix, start []byte, fn func(key, value []byte, height uint64) error) error {
	return s.View(func(sn *Snapshot) error { return sn.Scan(prefix, start, fn) })
}
