package storage

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/storage/erasure"
)

// Limits on batch contents beyond what ledger enforces.
const (
	// MaxStateKey bounds a state key (bbolt allows 32 KiB).
	MaxStateKey = 4096
	// MaxStateValue bounds one state value.
	MaxStateValue = 16 << 20
	// MaxCertBytes bounds a commit certificate.
	MaxCertBytes = 1 << 20
)

// Batch is everything that changes when one block commits. The node
// runtime builds it from the committed block, the result of executing it,
// and the certificate that committed it.
type Batch struct {
	// Block is the committed block. Transactions may carry their
	// payloads; those present are stored content-addressed.
	Block *ledger.Block
	// Validators is n, the validator count of the block's epoch: the
	// number of shards the body is split into.
	Validators int
	// ShardIndex is this node's index in that epoch's validator set, the
	// shard it keeps, or -1 if it is not a validator of that epoch.
	ShardIndex int
	// Shard optionally carries this node's shard as computed when it voted;
	// it is checked against the header. When nil the store encodes the body.
	Shard *erasure.Shard
	// Body optionally carries the body's encoding, ledger.EncodeBody of
	// Block.Txs, as the caller computed it when it checked the block
	// against its header (ledger.Block.CheckBodyEncoding, or Seal for a
	// block it built). Its length is checked against the header; the
	// transaction root is still recomputed from the transactions. When
	// nil the store encodes the transactions.
	Body []byte
	// Writes are the state changes of executing the block. Their state
	// root (ledger.NextStateRoot over the parent's) must equal
	// Header.StateRoot.
	Writes []ledger.Write
	// Cert is the certificate that commits the block (opaque to storage),
	// kept so that catch-up can serve the block with it.
	Cert []byte
	// Audit entries recorded in the same transaction as the block.
	Audit []AuditEntry
	// Masks erase payloads the regulator ordered masked in this block.
	Masks []Mask
}

// prepared is a batch after every check that needs no database access.
type prepared struct {
	height    uint64
	id        ledger.BlockID
	header    []byte
	body      []byte
	shard     []byte // encoded, nil if none held
	txIDs     []ledger.TxID
	writes    []ledger.Write // canonical: sorted, one per key
	payloads  []payloadBlob  // distinct, digest-checked
	auditRecs [][]byte
}

type payloadBlob struct {
	digest gm.Digest
	data   []byte
	height uint64 // the block that stores it
}

// CommitBlock stores a committed block in one bbolt transaction: its
// header (by height and id), this node's shard with its proof, the full
// body, the transaction index, the state writes, the payloads, the commit
// certificate, audit entries and masks. The block must extend the tip
// (height tip+1 and previous hash the tip's id; height 0 on an empty
// store). After a crash the store holds either the previous block or this
// one as its tip, never a part of it. When CommitBlock returns nil the
// block is on disk (fsync'd). ctx is checked before any work; once
// writing begins the commit runs to completion or fails as a whole.
func (s *Store) CommitBlock(ctx context.Context, b *Batch) error {
	return s.CommitBlocks(ctx, []*Batch{b})
}

// CommitBlocks stores consecutive committed blocks, each as CommitBlock
// would, in one bbolt transaction: the first extends the tip and each of
// the others its predecessor. Every batch is checked before anything is
// written, and they are stored all or none: after a crash the tip is the
// previous one or the last of bs. Committing k blocks together writes
// the pages they share once and fsyncs once instead of k times; the
// node's committer does it when blocks queue up behind the disk.
func (s *Store) CommitBlocks(ctx context.Context, bs []*Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(bs) == 0 {
		return nil
	}
	for _, b := range bs {
		if b == nil || b.Block == nil {
			return fmt.Errorf("%w: nil batch or block", ErrInvalid)
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	tip := s.tip.Load()
	ps := make([]*prepared, len(bs))
	var blobs []payloadBlob
	seen := make(map[gm.Digest]bool)
	for i, b := range bs {
		p, err := s.prepare(b, tip)
		if err != nil {
			return fmt.Errorf("storage: commit block %d: %w", b.Block.Header.Height, err)
		}
		ps[i] = p
		tip = &TipInfo{Height: p.height, ID: p.id, Header: b.Block.Header}
		for _, pl := range p.payloads {
			if !seen[pl.digest] {
				seen[pl.digest] = true
				blobs = append(blobs, pl)
			}
		}
	}
	first, last := ps[0].height, ps[len(ps)-1].height
	what := fmt.Sprintf("commit block %d", first)
	if len(ps) > 1 {
		what = fmt.Sprintf("commit blocks %d to %d", first, last)
	}

	// Payload bytes go to the segment file first and are fsync'd; the
	// bbolt transaction that references them commits second. A crash in
	// between leaves bytes past the committed segment length, which Open
	// zeroes and truncates.
	var fresh []payloadBlob
	if len(blobs) > 0 {
		var err error
		if fresh, err = s.newPayloads(blobs); err != nil {
			return fmt.Errorf("storage: %s: %w", what, err)
		}
	}
	pending, err := s.payloads.append(fresh)
	if err != nil {
		return fmt.Errorf("storage: %s: write payloads: %w", what, err)
	}

	var erasures bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		// The payload index first, so that a mask in any of the blocks
		// finds (and queues for erasure) a payload the group stores.
		if err := pending.record(tx); err != nil {
			return err
		}
		for i, b := range bs {
			p := ps[i]
			if err := s.putBlock(tx, b, p); err != nil {
				if len(ps) > 1 {
					return fmt.Errorf("block %d: %w", p.height, err)
				}
				return err
			}
			for j := range b.Masks {
				erasures = true
				if err := putMask(tx, &b.Masks[j]); err != nil {
					return err
				}
			}
			if err := s.appendAudit(tx, p.auditRecs); err != nil {
				return err
			}
			if _, err := s.pruneBodies(tx, p.height, maxPrunePerCommit); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if rbErr := s.payloads.rollback(pending); rbErr != nil {
			s.log.Error("discarding payload bytes of a failed commit", "height", last, "err", rbErr)
		}
		return fmt.Errorf("storage: %s: %w", what, err)
	}
	s.payloads.commit(pending)
	s.tip.Store(tip)
	if erasures {
		if err := s.finishErasures(); err != nil {
			// The blocks and the mask records are committed; the erasure is
			// retried on the next mask or Open.
			s.log.Error("erasing masked payloads", "height", last, "err", err)
		}
	}
	return nil
}

// prepare checks the batch against the tip and its own header and does
// the encoding work outside the write transaction.
func (s *Store) prepare(b *Batch, tip *TipInfo) (*prepared, error) {
	h := &b.Block.Header
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMismatch, err)
	}
	if h.ChainID != s.opts.ChainID {
		return nil, fmt.Errorf("%w: block is for chain %q", ErrMismatch, h.ChainID)
	}
	prevRoot := ledger.GenesisStateRoot(s.opts.ChainID)
	switch {
	case tip == nil && h.Height != 0:
		return nil, fmt.Errorf("%w: store is empty, block has height %d", ErrNotNext, h.Height)
	case tip != nil && h.Height != tip.Height+1:
		return nil, fmt.Errorf("%w: height %d, tip is %d", ErrNotNext, h.Height, tip.Height)
	case tip != nil && h.PrevHash != tip.ID:
		return nil, fmt.Errorf("%w: previous hash %s, tip is %s", ErrNotNext, short(h.PrevHash), short(tip.ID))
	case tip != nil:
		prevRoot = tip.Header.StateRoot
	}
	n := b.Validators
	if n < 1 || n > erasure.MaxShards {
		return nil, fmt.Errorf("%w: %d validators", ErrInvalid, n)
	}
	if b.ShardIndex < -1 || b.ShardIndex >= n {
		return nil, fmt.Errorf("%w: shard index %d for %d validators", ErrInvalid, b.ShardIndex, n)
	}
	if len(b.Cert) > MaxCertBytes {
		return nil, fmt.Errorf("%w: certificate of %d bytes exceeds %d", ErrInvalid, len(b.Cert), MaxCertBytes)
	}

	p := &prepared{height: h.Height}
	var err error
	if p.header, err = ledger.EncodeHeader(h); err != nil {
		return nil, err
	}
	p.id = gm.SM3(p.header)

	txs := b.Block.Txs
	if len(txs) != int(h.TxCount) {
		return nil, fmt.Errorf("%w: %d transactions, header says %d", ErrMismatch, len(txs), h.TxCount)
	}
	if p.body = b.Body; p.body == nil {
		if p.body, err = ledger.EncodeBody(txs); err != nil {
			return nil, err
		}
	}
	if uint64(len(p.body)) != h.BodySize {
		return nil, fmt.Errorf("%w: body is %d bytes, header says %d", ErrMismatch, len(p.body), h.BodySize)
	}
	p.txIDs = make([]ledger.TxID, len(txs))
	leaves := make([]gm.Digest, len(txs))
	seen := make(map[gm.Digest]struct{})
	for i := range txs {
		p.txIDs[i] = txs[i].ID()
		leaves[i] = ledger.MerkleLeafHash(p.txIDs[i][:])
		if pl := txs[i].Payload; pl != nil {
			d := txs[i].Body.PayloadDigest
			if d == nil || gm.SM3(pl) != *d {
				return nil, fmt.Errorf("%w: payload of transaction %d does not match its digest", ErrMismatch, i)
			}
			if _, dup := seen[*d]; !dup {
				seen[*d] = struct{}{}
				p.payloads = append(p.payloads, payloadBlob{digest: *d, data: pl, height: h.Height})
			}
		}
	}
	if root := ledger.MerkleRootOfHashes(leaves); root != h.TxRoot {
		return nil, fmt.Errorf("%w: transaction root %s, header says %s", ErrMismatch, short(root), short(h.TxRoot))
	}

	if p.shard, err = s.ownShard(b, p.body); err != nil {
		return nil, err
	}

	if p.writes, err = ledger.CanonicalWriteSet(b.Writes); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	for _, w := range p.writes {
		if len(w.Key) > MaxStateKey || len(w.Value) > MaxStateValue {
			return nil, fmt.Errorf("%w: state write %q: key %d bytes (max %d), value %d bytes (max %d)",
				ErrInvalid, truncateKey(w.Key), len(w.Key), MaxStateKey, len(w.Value), MaxStateValue)
		}
	}
	root, err := ledger.NextStateRoot(prevRoot, p.writes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	if root != h.StateRoot {
		return nil, fmt.Errorf("%w: writes give state root %s, header says %s", ErrMismatch, short(root), short(h.StateRoot))
	}

	for i := range b.Masks {
		if err := b.Masks[i].validate(); err != nil {
			return nil, err
		}
	}
	if p.auditRecs, err = encodeAuditEntries(b.Audit); err != nil {
		return nil, err
	}
	return p, nil
}

// ownShard returns the encoded shard this node keeps, checking a supplied
// one against the header or computing it (and checking the whole root).
func (s *Store) ownShard(b *Batch, body []byte) ([]byte, error) {
	h := &b.Block.Header
	n := b.Validators
	if b.Shard != nil {
		if b.ShardIndex < 0 || int(b.Shard.Index) != b.ShardIndex {
			return nil, fmt.Errorf("%w: supplied shard %d, this node keeps %d", ErrInvalid, b.Shard.Index, b.ShardIndex)
		}
		if err := b.Shard.Verify(h.ShardRoot, n, h.BodySize); err != nil {
			return nil, fmt.Errorf("%w: supplied shard: %v", ErrMismatch, err)
		}
		return erasure.EncodeShard(b.Shard)
	}
	shards, root, err := erasure.NewShards(body, n)
	if err != nil {
		return nil, err
	}
	if root != h.ShardRoot {
		return nil, fmt.Errorf("%w: shard root for %d validators is %s, header says %s", ErrMismatch, n, short(root), short(h.ShardRoot))
	}
	if b.ShardIndex < 0 {
		return nil, nil
	}
	return erasure.EncodeShard(&shards[b.ShardIndex])
}

// appendFill is the fill percent of the buckets keyed by height: keys only
// ever come at the end, so a split can leave full pages behind instead of
// half-full ones (bbolt's default, meant for random inserts).
const appendFill = 1.0

// putBlock writes the block's records into the open write transaction.
func (s *Store) putBlock(tx *bolt.Tx, b *Batch, p *prepared) error {
	hk := heightKey(p.height)
	ids := tx.Bucket(bucketBlockIDs)
	if ids.Get(p.id[:]) != nil {
		return fmt.Errorf("%w: block %s is already stored", ErrMismatch, short(p.id))
	}
	blocks := tx.Bucket(bucketBlocks)
	blocks.FillPercent = appendFill
	if err := blocks.Put(hk, encodeBlockRecord(p.id, b.Validators, b.ShardIndex, p.header)); err != nil {
		return err
	}
	if err := ids.Put(p.id[:], hk); err != nil {
		return err
	}
	if p.shard != nil {
		shards := tx.Bucket(bucketShards)
		shards.FillPercent = appendFill
		if err := shards.Put(hk, p.shard); err != nil {
			return err
		}
	}
	bodies := tx.Bucket(bucketBodies)
	bodies.FillPercent = appendFill
	if err := bodies.Put(hk, encodeBodyValue(p.body)); err != nil {
		return err
	}
	txb := tx.Bucket(bucketTxs)
	for i, id := range p.txIDs {
		if loc := txb.Get(id[:]); loc != nil {
			prev, _ := decodeTxLoc(loc)
			return fmt.Errorf("%w: transaction %s already committed at height %d", ErrMismatch, short(id), prev.Height)
		}
		if err := txb.Put(id[:], encodeTxLoc(p.height, i)); err != nil {
			return err
		}
	}
	st := tx.Bucket(bucketState)
	for _, w := range p.writes {
		var err error
		if w.Delete {
			err = st.Delete(w.Key)
		} else {
			err = st.Put(w.Key, encodeStateValue(p.height, w.Value))
		}
		if err != nil {
			return fmt.Errorf("state key %q: %w", truncateKey(w.Key), err)
		}
	}
	if len(b.Cert) > 0 {
		certs := tx.Bucket(bucketCerts)
		certs.FillPercent = appendFill
		if err := certs.Put(hk, bytes.Clone(b.Cert)); err != nil {
			return err
		}
	}
	return nil
}

func truncateKey(k []byte) string {
	if len(k) > 48 {
		return string(k[:48]) + "…"
	}
	return string(k)
}
