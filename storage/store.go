package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"hallmark/ledger"
)

// File names inside a store directory.
const (
	dbFileName     = "hallmark.db"
	payloadDirName = "payloads"
)

// Initial size of the main file's memory map. bbolt maps a file with
// room to spare and maps it again, larger, when the file outgrows the
// map (doubling up to 1 GiB, then 1 GiB at a time). Mapping again waits
// for every open read transaction to end and holds off new ones, so the
// commit that crosses the boundary stalls behind the slowest reader and
// every reader stalls behind it; afterwards each page faults in anew.
// Mapping generously from the start avoids that until the file is this
// large. A map costs address space, not memory: pages are read in as
// they are touched, and the file is not grown to the map's size.
// 32-bit builds keep bbolt's default.
const mainMmapBytes = (1 << 30) * (strconv.IntSize / 64)

// Defaults for Options fields left zero.
const (
	DefaultWindow              = 1000
	DefaultAuditSegmentEntries = 1 << 16
	DefaultPayloadSegmentBytes = 64 << 20
	DefaultLockTimeout         = 5 * time.Second
	// MinAuditRetention is the shortest retention the store accepts for
	// audit entries: six months (183 days).
	MinAuditRetention = 183 * 24 * time.Hour
)

// Options configure a store. ChainID is required; zero values elsewhere
// take the defaults above.
type Options struct {
	// ChainID is the chain this store belongs to. A new store records it;
	// an existing one must match.
	ChainID string
	// Window is how many of the most recent blocks keep their full body
	// (besides this node's shard). Older bodies are pruned and rebuilt
	// from peers' shards on demand.
	Window uint64
	// Archive keeps every body in full; a scrub pass also restores bodies
	// missing from before archive mode was turned on.
	Archive bool
	// Logger receives progress and repair reports. Nil discards.
	Logger *slog.Logger
	// AuditRetention is how long audit entries must be kept; at least
	// MinAuditRetention (the default).
	AuditRetention time.Duration
	// AuditSegmentEntries caps the entries of one audit segment; a segment
	// also closes when an entry from a later UTC day arrives.
	AuditSegmentEntries int
	// PayloadSegmentBytes is the size after which payload blobs go to a
	// new segment file.
	PayloadSegmentBytes int64
	// LockTimeout bounds the wait for another process to release the file.
	LockTimeout time.Duration
	// Now is the clock for audit retention and metadata; nil is time.Now.
	Now func() time.Time

	// safetyCompactBytes overrides DefaultSafetyCompactBytes (tests).
	safetyCompactBytes int64
	// crashAt names a step at which a migration or compaction stops as if
	// the process had died there (tests; see the crash* constants).
	crashAt string
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.ChainID == "" || len(c.ChainID) > ledger.MaxChainIDLen || !utf8.ValidString(c.ChainID) {
		return c, fmt.Errorf("%w: chain id must be UTF-8 of 1 to %d bytes", ErrInvalid, ledger.MaxChainIDLen)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = MinAuditRetention
	}
	if c.AuditRetention < MinAuditRetention {
		return c, fmt.Errorf("%w: audit retention %s is shorter than the minimum %s", ErrInvalid, c.AuditRetention, MinAuditRetention)
	}
	if c.AuditSegmentEntries <= 0 {
		c.AuditSegmentEntries = DefaultAuditSegmentEntries
	}
	if c.PayloadSegmentBytes <= 0 {
		c.PayloadSegmentBytes = DefaultPayloadSegmentBytes
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = DefaultLockTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.safetyCompactBytes <= 0 {
		c.safetyCompactBytes = DefaultSafetyCompactBytes
	}
	return c, nil
}

// Store is one node's persistent state: a bbolt file, the safety log and
// payload segment files in one directory. Its methods are safe for
// concurrent use; writes are serialised.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger
	db   *bolt.DB
	// safety holds the consensus safety record and the kept blocks, apart
	// from db so that a vote's fdatasync never waits behind a block commit.
	safety *safetyLog

	// writeMu serialises every write that touches payload segments or
	// must read-then-write consistently (commits, masks, repairs).
	writeMu  sync.Mutex
	payloads *segments
	closed   atomic.Bool

	tip atomic.Pointer[TipInfo]
}

// TipInfo describes the highest committed block.
type TipInfo struct {
	Height uint64
	ID     ledger.BlockID
	Header ledger.Header
}

// Meta is the node metadata recorded in the store.
type Meta struct {
	Schema  uint32
	ChainID string
	Created time.Time
}

// Open opens or creates the store in directory dir. It checks the file
// (length against its metadata, schema version, chain id), moves the
// safety data of an older layout into the safety log and replays the log,
// finishes any payload erasure a crash interrupted, discards payload bytes
// written for a block that never committed, and verifies the tip.
func Open(dir string, opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, dbFileName)
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         o.LockTimeout,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: mainMmapBytes,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %s)", ErrInUse, path, o.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	s := &Store{dir: dir, opts: o, log: o.Logger.With("component", "storage"), db: db}
	ok := false
	defer func() {
		if ok {
			return
		}
		if s.payloads != nil {
			s.payloads.close()
		}
		if s.safety != nil {
			s.safety.close()
		}
		db.Close()
	}()
	fresh, schema, err := s.checkMeta()
	if err != nil {
		return nil, err
	}
	if err := s.openSafety(fresh, schema); err != nil {
		return nil, err
	}
	if s.payloads, err = openSegments(filepath.Join(dir, payloadDirName), o.PayloadSegmentBytes, s.db, s.log); err != nil {
		return nil, err
	}
	if err := s.finishErasures(); err != nil {
		return nil, err
	}
	if err := s.loadTip(); err != nil {
		return nil, err
	}
	// bbolt fsyncs its file but not the directory entry naming it: without
	// this, a power cut soon after a new store was created could lose the
	// files (and every block committed into them) on file systems that do
	// not order directory updates with file data.
	for _, d := range []string{filepath.Dir(filepath.Clean(dir)), dir, filepath.Join(dir, payloadDirName)} {
		if err := syncDir(d); err != nil {
			return nil, err
		}
	}
	ok = true
	if t := s.tip.Load(); t != nil {
		s.log.Info("store opened", "dir", dir, "tip", t.Height, "id", short(t.ID), "archive", o.Archive, "window", o.Window)
	} else {
		s.log.Info("store opened", "dir", dir, "tip", "empty", "archive", o.Archive, "window", o.Window)
	}
	return s, nil
}

// checkMeta checks the metadata of an existing store (schema version,
// chain id, buckets) and reports its schema version, or reports a new
// one (fresh). It writes nothing.
func (s *Store) checkMeta() (fresh bool, schema uint32, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			fresh = true
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				return fmt.Errorf("%w: bbolt file has bucket %q but no Hallmark metadata", ErrNotStore, name)
			})
		}
		v := meta.Get(metaSchema)
		if len(v) != 4 {
			return fmt.Errorf("%w: schema version missing", ErrNotStore)
		}
		switch schema = binary.BigEndian.Uint32(v); {
		case schema > SchemaVersion:
			return fmt.Errorf("%w: %s has schema version %d, this build reads up to %d; run a newer hallmarkd",
				ErrSchemaTooNew, s.dir, schema, SchemaVersion)
		case schema < oldestSchema:
			return fmt.Errorf("%w: schema version %d has no migration", ErrNotStore, schema)
		}
		if chain := string(meta.Get(metaChainID)); chain != s.opts.ChainID {
			return fmt.Errorf("%w: %s holds chain %q, not %q", ErrChainMismatch, s.dir, chain, s.opts.ChainID)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %s missing", ErrCorrupt, name)
			}
		}
		return nil
	})
	return fresh, schema, err
}

// initMeta creates the buckets and metadata of a new store.
func (s *Store) initMeta() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("storage: create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		created := make([]byte, 8)
		binary.BigEndian.PutUint64(created, uint64(s.opts.Now().UnixMilli()))
		for _, kv := range []struct{ k, v []byte }{
			{metaSchema, u32(SchemaVersion)},
			{metaChainID, []byte(s.opts.ChainID)},
			{metaCreated, created},
		} {
			if err := meta.Put(kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// loadTip reads the highest block, checks that its record is intact, that
// the id index points back at it and that it links to its parent.
func (s *Store) loadTip() error {
	return s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketBlocks).Cursor().Last()
		if k == nil {
			s.tip.Store(nil)
			return nil
		}
		h, err := parseHeightKey(k)
		if err != nil {
			return err
		}
		rec, err := decodeBlockRecord(h, v)
		if err != nil {
			return fmt.Errorf("storage: tip: %w", err)
		}
		if got := tx.Bucket(bucketBlockIDs).Get(rec.ID[:]); len(got) != 8 || binary.BigEndian.Uint64(got) != h {
			return fmt.Errorf("%w: tip %d is missing from the block id index", ErrCorrupt, h)
		}
		if h > 0 {
			parent, err := decodeBlockRecord(h-1, tx.Bucket(bucketBlocks).Get(heightKey(h-1)))
			if err != nil {
				return fmt.Errorf("storage: parent of tip: %w", err)
			}
			if parent.ID != rec.Header.PrevHash {
				return fmt.Errorf("%w: tip %d does not link to block %d", ErrCorrupt, h, h-1)
			}
		}
		if err := s.checkBlockData(tx, rec); err != nil {
			// The block itself is committed; a damaged shard or body is
			// repairable, so report it and let scrub fix it.
			s.log.Warn("tip data damaged; run a scrub pass to repair", "height", h, "err", err)
		}
		s.tip.Store(&TipInfo{Height: h, ID: rec.ID, Header: *rec.Header})
		return nil
	})
}

// Tip returns the highest committed block, or ok = false for an empty store.
func (s *Store) Tip() (TipInfo, bool) {
	t := s.tip.Load()
	if t == nil {
		return TipInfo{}, false
	}
	return *t, true
}

// Meta returns the node metadata recorded when the store was created.
func (s *Store) Meta() (Meta, error) {
	var m Meta
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		m.Schema = binary.BigEndian.Uint32(b.Get(metaSchema))
		m.ChainID = string(b.Get(metaChainID))
		if c := b.Get(metaCreated); len(c) == 8 {
			m.Created = time.UnixMilli(int64(binary.BigEndian.Uint64(c))).UTC()
		}
		return nil
	})
	return m, err
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close waits for running transactions and closes the files.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	err := s.payloads.close()
	if e := s.safety.close(); e != nil && err == nil {
		err = fmt.Errorf("storage: close: %w", e)
	}
	if e := s.db.Close(); e != nil && err == nil {
		err = fmt.Errorf("storage: close: %w", e)
	}
	return err
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}
