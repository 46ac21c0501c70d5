package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBenchStepCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "step",
		Short: "Time one prototypical training step (forward, loss, backward, Adam)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("bench step: not wired yet")
		},
	}
}
