package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"protoherb/plot"
)

func newPlotCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "plot RUN_DIR",
		Short: "Redraw a run's loss and accuracy curves: RUN_DIR/metrics.jsonl → RUN_DIR/curves.png",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := out
			if dst == "" {
				dst = filepath.Join(args[0], "curves.png")
			}
			if err := plot.Curves(filepath.Join(args[0], "metrics.jsonl"), dst); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), dst)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output PNG (default RUN_DIR/curves.png)")
	return cmd
}
