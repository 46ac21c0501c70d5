// Command protoherb identifies plant species from herbarium specimen images with prototypical
// networks: pretrain a backbone, train it episodically, build one prototype per class, search them.
//
// This package stays thin: each subcommand lives in its own file and only parses flags, then calls
// into the library packages.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"protoherb/torch"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "protoherb:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "protoherb",
		Short:         "Identify plant species from herbarium specimens with prototypical networks",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			// libtorch starts with half the cores here (OMP_NUM_THREADS unset); every command uses
			// all of them unless its --threads says otherwise.
			torch.SetNumThreads(runtime.NumCPU())
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	// One constructor per subcommand; each lives in its own file.
	root.AddCommand(
		newVersionCmd(),
		newDemoCmd(),
		newEvaluateCmd(),
		newPlotCmd(),
		newSynthCmd(),
		newBenchCmd(),
		newDataCmd(),
		newServeCmd(),
		newPretrainCmd(),
		newTrainCmd(),
		newFewshotCmd(),
		newEmbedCmd(),
		newPrototypesCmd(),
		newPredictCmd(),
	)
	return root
}
