package xdp

import (
	"errors"
	"fmt"
	"log/slog"
)

// Start attaches the kernel program to ifname and returns it as the fast
// path; if the kernel refuses (no CAP_BPF, no such interface, no XDP
// support) it falls back to the Go twin. It logs which path is active.
func Start(ifname string, cfg Config, log *slog.Logger) (*FastPath, error) {
	if _, err := cfg.params(); err != nil {
		return nil, err
	}
	if ifname == "" {
		return startTwin(cfg, errors.New("no interface configured"), log)
	}
	p, err := LoadProgram(cfg)
	if err != nil {
		return startTwin(cfg, err, log)
	}
	mode, err := p.Attach(ifname)
	if err != nil {
		p.Close()
		return startTwin(cfg, err, log)
	}
	if log != nil {
		log.Info("fast path: XDP program attached", "interface", ifname, "mode", string(mode))
	}
	return &FastPath{Filter: p, Mode: fmt.Sprintf("xdp-%s", mode)}, nil
}
