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

// SafetyPageWrites returns the number of page writes bbolt has made to
// safety.db since it was opened.
func (s *Store) SafetyPageWrites() int64 {
	st := s.safe.Stats()
	return st.TxStats.GetWrite()
}

// MmapAddrs returns where the main and the safety file are mapped; an
// address changes when bbolt maps a file again.
func (s *Store) MmapAddrs() (main, safety uintptr) {
	return s.db.Info().Data, s.safe.Info().Data
}
