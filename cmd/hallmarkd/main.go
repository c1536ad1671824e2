// Command hallmarkd is the Hallmark node daemon. It reads one configuration
// file (docs/CONFIG.md), opens the node's key, store and network, and runs
// until SIGTERM or SIGINT, when it shuts down cleanly.
//
//	hallmarkd -config /data/hallmark/node.json
//	hallmarkd -config node.json -check     # validate the configuration and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"hallmark/firmware/config"
	"hallmark/firmware/node"
)

func main() {
	path := flag.String("config", "/data/hallmark/node.json", "configuration file")
	check := flag.Bool("check", false, "check the configuration and exit")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("hallmarkd", node.Version)
		return
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hallmarkd:", err)
		os.Exit(2)
	}
	if *check {
		fmt.Println("hallmarkd: configuration OK")
		return
	}
	log := cfg.Log.NewLogger(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(ctx, node.Options{Config: cfg, Logger: log})
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("node stopped", "err", err)
		os.Exit(1)
	}
}
