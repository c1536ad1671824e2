//go:build !linux

package xdp

import "time"

// origin anchors the monotonic reading on hosts without CLOCK_MONOTONIC
// access; only the twin runs there, so any monotonic origin will do.
var origin = time.Now()

func monotonicNs() uint64 { return uint64(time.Since(origin)) + 1 }

// ClockOffset returns wall-clock ns minus the twin's monotonic ns.
func ClockOffset() int64 {
	now := time.Now()
	return now.UnixNano() - int64(now.Sub(origin)) - 1
}
