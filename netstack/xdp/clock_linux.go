package xdp

import "golang.org/x/sys/unix"

// monotonicNs reads CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() reads.
func monotonicNs() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux the program loads on.
		panic("xdp: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return uint64(ts.Nano())
}

// ClockOffset returns wall-clock ns minus CLOCK_MONOTONIC ns, the value
// user space publishes with [Filter.SetClock]. It reads the monotonic
// clock on both sides of the wall clock and uses their midpoint.
func ClockOffset() int64 {
	var a, w, b unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &w)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
	mid := a.Nano() + (b.Nano()-a.Nano())/2
	return w.Nano() - mid
}
