package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleCacheBytes is the block cache. Pebble's default is 8 MiB; bbolt
// reads straight from its 1 GiB mmap, so give pebble a cache of the order
// of the hot index instead.
const pebbleCacheBytes = 64 << 20

// pebbleEngine keeps hallmark's buckets as one-byte key prefixes in one
// keyspace and commits each block as one batch with Sync.
type pebbleEngine struct {
	db     *pebble.DB
	cache  interface{ Unref() }
	nsyncs *atomic.Int64
}

// pebbleOptions are pebble's defaults except: bloom filters (10 bits per
// key) on every level, since the commit's duplicate checks and the
// lookups are point reads of keys that mostly do not exist or sit in one
// table; a 64 MiB block cache; the newest format major version of this
// release (default is the oldest it supports); a silent logger.
func pebbleOptions(fs vfs.FS) *pebble.Options {
	o := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

func openPebble(dir string) (engine, error) {
	n := new(atomic.Int64)
	o := pebbleOptions(countingFS{FS: vfs.Default, n: n})
	c := pebble.NewCache(pebbleCacheBytes)
	o.Cache = c
	db, err := pebble.Open(dir, o)
	if err != nil {
		c.Unref()
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	return &pebbleEngine{db: db, cache: c, nsyncs: n}, nil
}

func pebbleKey(buf []byte, bucket int, key []byte) []byte {
	buf = append(buf[:0], byte('A'+bucket))
	return append(buf, key...)
}

func (e *pebbleEngine) exists(key []byte) (bool, error) {
	_, closer, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

func (e *pebbleEngine) commit(b *block) error {
	var k []byte
	for _, c := range b.checks {
		k = pebbleKey(k, c.bucket, c.key)
		found, err := e.exists(k)
		if err != nil {
			return err
		}
		if found {
			return fmt.Errorf("block %d: %w", b.height, errDuplicate)
		}
	}
	batch := e.db.NewBatchWithSize(b.bytes() + 16*len(b.ops))
	defer batch.Close()
	for _, o := range b.ops {
		k = pebbleKey(k, o.bucket, o.key)
		var err error
		if o.del {
			err = batch.Delete(k, nil)
		} else {
			err = batch.Set(k, o.val, nil)
		}
		if err != nil {
			return err
		}
	}
	return batch.Commit(pebble.Sync)
}

func (e *pebbleEngine) lookup(key []byte) (bool, error) {
	return e.exists(pebbleKey(nil, bucketTxs, key))
}

func (e *pebbleEngine) syncs() int64 { return e.nsyncs.Load() }

func (e *pebbleEngine) pageWrites() int64 { return -1 }

// settle waits until no flush or compaction is running (up to a minute).
func (e *pebbleEngine) settle() error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		m := e.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("pebble: background work still running after a minute")
}

func (e *pebbleEngine) close() error {
	err := e.db.Close()
	e.cache.Unref()
	return err
}

// describe returns pebble's LSM summary.
func (e *pebbleEngine) describe() string { return e.db.Metrics().String() }

// countingFS counts the syncs pebble makes on its files and directories.
type countingFS struct {
	vfs.FS
	n *atomic.Int64
}

func (fs countingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return countingFile{File: f, n: fs.n}, nil
}

func (fs countingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}

func (fs countingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, opts...))
}

func (fs countingFS) OpenDir(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenDir(name))
}

func (fs countingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, c))
}

type countingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f countingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

func (f countingFile) SyncData() error {
	f.n.Add(1)
	return f.File.SyncData()
}

func (f countingFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if full {
		f.n.Add(1)
	}
	return full, err
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
