package main

import (
	"github.com/spf13/cobra"

	"hallmark/tools/devnet"
)

func newDevnetCmd() *cobra.Command {
	var o devnet.Options
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a local consortium: validators with swtpm-held keys on loopback and a demo kiosk",
		Long: `Runs a local Hallmark consortium for development (make run uses it):
every node is a hallmarkd process on loopback with its own swtpm, whose SM2
validator key was generated inside that TPM; a genesis, per-node
configuration files and development account keys are written to --dir; a
demo kiosk submits signed records over the datagram path at --rate per
second. A second run resumes the same chain (--fresh starts over). Ctrl-C
stops every node and TPM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return devnet.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "run", "directory for the consortium's state")
	f.IntVar(&o.Nodes, "nodes", 4, "number of validators")
	f.IntVar(&o.BasePort, "base-port", 7400, "node i uses ports base+10i to base+10i+6")
	f.StringVar(&o.Hallmarkd, "hallmarkd", "bin/hallmarkd", "the node binary")
	f.StringVar(&o.Swtpm, "swtpm", "swtpm", "the swtpm binary")
	f.BoolVar(&o.Fresh, "fresh", false, "wipe --dir and start a new chain")
	f.Float64Var(&o.Rate, "rate", 20, "demo kiosk records per second (0: no kiosk)")
	return cmd
}
