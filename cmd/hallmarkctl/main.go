// Command hallmarkctl is the operator's tool for Hallmark appliances:
// keys, genesis, enrolment, images, submitting and querying. Each command
// group lives in its own file and registers itself in newRootCmd.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hallmarkctl:", err)
		os.Exit(1)
	}
}

// newRootCmd builds the command tree. Command groups add themselves here.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hallmarkctl",
		Short:         "Operate Hallmark appliances: keys, genesis and enrolment ceremonies, governance, images, flashing, updates, submissions, queries and status",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newKeyCmd(), newImageCmd(), newFlashCmd(), newUpdateCmd(),
		newCarryKeysCmd(), newDevnetCmd(), newStatusCmd(), newSubmitCmd(), newQueryCmd(),
		newGenesisCmd(), newCACmd(), newEnrolCmd(), newGovCmd(), newTxCmd(), newNodeKeyCmd(), newRevokeCmd())
	return root
}
