package storage

import bolt "go.etcd.io/bbolt"

// PageWrites returns the number of pages bbolt has written to the main
// file since it was opened (benchmarks report it per transaction).
func (s *Store) PageWrites() int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

// BucketPages returns, per bucket of the main file, its leaf, branch and
// overflow page counts and key count.
func (s *Store) BucketPages() map[string][4]int {
	out := map[string][4]int{}
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			out[string(name)] = [4]int{st.LeafPageN, st.BranchPageN, st.LeafOverflowN, st.KeyN}
			return nil
		})
	})
	return out
}

// FreelistPages returns bbolt's free and pending page counts and the
// freelist's encoded size in bytes.
func (s *Store) FreelistPages() (free, pending, bytes int) {
	st := s.db.Stats()
	return st.FreePageN, st.PendingPageN, st.FreelistInuse
}

// SafetyStats counts what the safety log has done since the store was
// opened: write calls, fdatasyncs, bytes appended and compactions.
type SafetyStats struct {
	Writes, Syncs, Bytes, Compactions int64
}

// SafetyStats returns the safety log's counters.
func (s *Store) SafetyStats() SafetyStats {
	l := s.safety
	return SafetyStats{Writes: l.writes.Load(), Syncs: l.syncs.Load(), Bytes: l.written.Load(), Compactions: l.compactions.Load()}
}

// MmapAddr returns where the main file is mapped; it changes when bbolt
// maps the file again.
func (s *Store) MmapAddr() uintptr {
	return s.db.Info().Data
}

// Crash points (see WithCrashAt).
const (
	CrashCompactTmpWritten = crashCompactTmpWritten
	CrashCompactTmpSynced  = crashCompactTmpSynced
	CrashCompactRenamed    = crashCompactRenamed
	CrashMigrateLogWritten = crashMigrateLogWritten
	CrashMigrateSchema     = crashMigrateSchema
)

// ErrSimulatedCrash is the error of a step stopped by WithCrashAt.
var ErrSimulatedCrash = errSimulatedCrash

// WithSafetyCompactBytes returns o with the safety log's compaction bound
// set to n bytes.
func WithSafetyCompactBytes(o Options, n int64) Options {
	o.safetyCompactBytes = n
	return o
}

// WithCrashAt returns o with a simulated crash at the named step: Open
// (a migration) or the first compaction stops there, leaving the files
// as a crash would, and fails with ErrSimulatedCrash.
func WithCrashAt(o Options, step string) Options {
	o.crashAt = step
	return o
}
