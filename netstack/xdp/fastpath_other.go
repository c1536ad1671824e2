//go:build !linux

package xdp

import (
	"errors"
	"log/slog"
)

// Start returns the Go twin: XDP exists only on Linux.
func Start(ifname string, cfg Config, log *slog.Logger) (*FastPath, error) {
	if _, err := cfg.params(); err != nil {
		return nil, err
	}
	return startTwin(cfg, errors.New("XDP needs Linux"), log)
}
