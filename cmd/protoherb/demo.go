package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"protoherb/demo"
	"protoherb/torch"
)

func newDemoCmd() *cobra.Command {
	var c demo.Config
	cmd := &cobra.Command{
		Use:   "demo --out DIR",
		Short: "Generate a herbarium and run the whole pipeline on it (synth, then run) and write a report",
		Long: `Generates a small long-tailed herbarium in the Herbarium 2020 layout, then runs protoherb run on it
within --budget (pretrain a Conv-4 backbone on all species, one prototype per species with the build
chosen on held-out training images, an exact search over all prototypes for the test set, the
competition metric) and scores it beside a random guess. Writes DIR/report.md with PNG charts and
DIR/run/ (run's config.yaml, model, prototypes, submission); needs no download and runs in minutes on
2 cores.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Out == "" {
				return usageErrorf("--out is required")
			}
			c.Log = cmd.OutOrStdout()
			torch.SetNumThreads(c.Threads)
			if err := torch.ManualSeed(c.Seed); err != nil {
				return err
			}
			c.Reseed = torch.ManualSeed
			res, err := demo.Run(cmd.Context(), c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\nDone in %s. Report: %s\n", res.Elapsed.Round(1e9), res.Report)
			fmt.Fprintf(out, "Model: %s   Prototypes: %s\n\nNext:\n", res.Model, res.Prototypes)
			for _, l := range demo.NextCommands(os.Args[0], res) {
				fmt.Fprintln(out, "  "+l)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Out, "out", "demo-out", "output folder")
	f.IntVar(&c.Species, "species", 200, "species to generate")
	f.IntVar(&c.Genera, "genera", 60, "genera")
	f.IntVar(&c.Families, "families", 18, "families")
	f.IntVar(&c.SheetSize, "sheet-size", 320, "long side of the generated sheets (px)")
	f.IntVar(&c.ImageSize, "image-size", 64, "model input size (px)")
	f.DurationVar(&c.Budget, "budget", 4*time.Minute, "run's time for training, embedding and prediction")
	f.IntVar(&c.PretrainSteps, "pretrain-steps", 0, "pretraining batches (default: fitted to the budget)")
	f.IntVar(&c.TrainSteps, "train-steps", 0, "episodic training episodes after pretraining (default: none)")
	f.IntVar(&c.Threads, "threads", runtime.NumCPU(), "libtorch threads")
	f.Uint64Var(&c.Seed, "seed", 1, "random seed")
	f.BoolVar(&c.Quiet, "quiet", false, "no progress bars")
	return cmd
}
