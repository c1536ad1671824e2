package xdp

import (
	"context"
	"log/slog"
	"time"
)

// FastPath is the fast path a node runs: the kernel program when it could
// be attached, the Go twin otherwise.
type FastPath struct {
	// Filter receives the verified facts and reports the counters.
	Filter Filter
	// Twin is non-nil when the kernel program is not attached: the
	// ingress must then judge every datagram with it before anything else.
	Twin *Twin
	// Mode is "xdp-native", "xdp-generic" or "twin".
	Mode string
}

// KeepClock republishes the wall-clock offset every interval until ctx is
// done, so that wall-clock steps (NTP) reach the timestamp window.
func (fp *FastPath) KeepClock(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fp.Filter.SetClock(ClockOffset(), 0); err != nil && log != nil {
				log.Warn("fast path: publishing clock offset", "err", err)
			}
		}
	}
}

// Close releases the filter.
func (fp *FastPath) Close() error { return fp.Filter.Close() }

func startTwin(cfg Config, reason error, log *slog.Logger) (*FastPath, error) {
	tw, err := NewTwin(cfg)
	if err != nil {
		return nil, err
	}
	if err := tw.SetClock(ClockOffset(), 0); err != nil {
		return nil, err
	}
	if log != nil {
		log.Warn("fast path: XDP not attached, the Go twin judges datagrams in user space", "reason", reason)
	}
	return &FastPath{Filter: tw, Twin: tw, Mode: "twin"}, nil
}
