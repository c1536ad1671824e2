// Command hallmarkd is the Hallmark node daemon. It reads one configuration
// file (docs/CONFIG.md), opens the node's key, store and network, and runs
// until SIGTERM or SIGINT, when it shuts down cleanly.
//
//	hallmarkd -config /data/hallmark/node.json
//	hallmarkd -config node.json -check     # validate the configuration and exit
//	hallmarkd -config node.json -node-key tpm-sealed:/data/keys/node@1.2.0.sealed
//
// Started by the image's init (firmware/boot), it reports readiness on the
// file descriptor the init names (HALLMARK_READY_FD) once it has committed
// a block, which is what lets an updated slot commit itself. An image's
// init passes -node-key: each release opens the copy of the node key that
// is sealed to its own measurement.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"

	"hallmark/firmware/boot"
	"hallmark/firmware/config"
	"hallmark/firmware/node"
	"hallmark/ledger"
)

func main() {
	path := flag.String("config", "/data/hallmark/node.json", "configuration file")
	nodeKey := flag.String("node-key", "", "key reference that replaces the configuration's nodeKey")
	check := flag.Bool("check", false, "check the configuration and exit")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("hallmarkd", node.Version)
		return
	}
	var overrides []func(*config.Config)
	if *nodeKey != "" {
		overrides = append(overrides, func(c *config.Config) { c.NodeKey = *nodeKey })
	}
	cfg, err := config.Load(*path, overrides...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hallmarkd:", err)
		os.Exit(2)
	}
	if *check {
		fmt.Println("hallmarkd: configuration OK")
		return
	}
	log := cfg.Log.NewLogger(os.Stderr)
	applyRuntime(cfg.Runtime, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(ctx, node.Options{Config: cfg, Logger: log, OnCommit: readyOnFirstCommit(log)})
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("node stopped", "err", err)
		os.Exit(1)
	}
}

// applyRuntime sets the Go runtime's memory management from the
// configuration's runtime section (docs/CONFIG.md), replacing whatever the
// GOGC and GOMEMLIMIT environment variables set.
func applyRuntime(r config.Runtime, log *slog.Logger) {
	debug.SetGCPercent(*r.GCPercent)
	limit := *r.MemoryLimit
	if limit == 0 {
		limit = math.MaxInt64 // the runtime's "no limit"
	}
	debug.SetMemoryLimit(limit)
	log.Info("go runtime memory", "gcPercent", *r.GCPercent, "memoryLimitMiB", *r.MemoryLimit>>20)
}

// readyOnFirstCommit tells a supervising init that the node is healthy
// when it stores its first block: a node that opened its key and store
// but cannot take part in the chain is not healthy.
func readyOnFirstCommit(log *slog.Logger) func(uint64, ledger.BlockID) {
	var once sync.Once
	return func(height uint64, _ ledger.BlockID) {
		once.Do(func() {
			told, err := boot.NotifyReady()
			switch {
			case err != nil:
				log.Warn("cannot report readiness to the init", "err", err)
			case told:
				log.Info("reported ready to the init", "height", height)
			}
		})
	}
}
