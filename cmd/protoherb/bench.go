package main

import "github.com/spf13/cobra"

// newBenchCmd groups the benchmarks. Every benchmark prints its headline figure as its last line,
// in the form "name: value unit".
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks: each prints its headline figure as its last line (name: value unit)",
	}
	cmd.AddCommand(
		newBenchStepCmd(),
		newBenchDDPCmd(),
		newBenchPredictCmd(),
		newBenchSearchCmd(),
		newBenchDecodeCmd(),
		newBenchEmbedCmd(),
		newBenchServeCmd(),
	)
	return cmd
}
