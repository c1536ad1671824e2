// Command hallmarkctl is the operator's tool for Hallmark appliances.
//
// This main registers only the image commands; the lead merges it with the
// root command of the key-custody work.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hallmarkctl",
		Short:         "Operate Hallmark appliances",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newImageCmd(), newFlashCmd(), newUpdateCmd())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}
