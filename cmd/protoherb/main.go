// Command protoherb identifies plant species from herbarium specimen images with prototypical
// networks: pretrain a backbone, train it episodically, build one prototype per class, search them.
//
// This package stays thin: each subcommand lives in its own file and only parses flags, then calls
// into the library packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"protoherb/torch"
)

// Exit codes (README, "Exit codes"): scripts tell a finished run from an interrupted or failed one.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (bad data, a full disk, a NaN loss, ...)
	exitUsage   = 2 // the command line is wrong: unknown command or flag, bad or missing flag value
	// An interrupted command exits 128 + the signal's number, as a shell reports a process killed by
	// it: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, after saving what it saves (a checkpoint).
	exitSignal = 128
)

// Every command runs its models on the main goroutine: holding it to the main OS thread gives
// libtorch's OpenMP one thread pool (torch.LockComputeThread).
func init() { torch.LockComputeThread() }

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain executes the command line args and returns the process's exit code. SIGINT and SIGTERM cancel
// the command's context; the command saves and stops, and the code then says which signal ended it.
func runMain(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(interrupted{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var sig interrupted
	if errors.As(context.Cause(ctx), &sig) {
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "protoherb:", err)
		}
		fmt.Fprintf(stderr, "protoherb: stopped by %v\n", sig.s)
		return exitSignal + int(sig.s)
	}
	if err != nil {
		fmt.Fprintln(stderr, "protoherb:", err)
		if isUsage(err) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ s syscall.Signal }

func (i interrupted) Error() string { return i.s.String() + " received" }

// usageError marks an error in the command line itself (exit 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// usageErrorf is the error of a command whose flags are wrong or missing, e.g. a flag that is
// required only without another: usageErrorf("--out is required").
func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// ranError marks an error returned by a command's body (exit 1 unless it is a usageError).
type ranError struct{ error }

func (r ranError) Unwrap() error { return r.error }

// isUsage tells command-line errors: those the command's body returns as usageError, and every error
// cobra raises before the body runs (unknown command or flag, a bad flag value, wrong arguments, a
// missing required flag).
func isUsage(err error) bool {
	var u usageError
	if errors.As(err, &u) {
		return true
	}
	var r ranError
	return !errors.As(err, &r)
}

// markRunErrors wraps the body of c and of every command below it so that its errors are told from
// cobra's command-line errors (isUsage).
func markRunErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := run(cmd, args); err != nil {
				return ranError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRunErrors(sub)
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
		newPipelineCmd(),
	)
	markRunErrors(root)
	return root
}
