package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"protoherb/demo"
	"protoherb/torch"
)

func newDemoCmd() *cobra.Command {
	var c demo.Config
	cmd := &cobra.Command{
		Use:   "demo --out DIR",
		Short: "Run the whole pipeline on a generated herbarium (synth, pretrain, train, prototypes, predict, evaluate) and write a report",
		Long: `Generates a small long-tailed herbarium in the Herbarium 2020 layout, pretrains a Conv-4 backbone on
the most populated species, trains it episodically, builds one prototype per species, predicts the test
set with an exact search over all prototypes, and scores it with the competition metric against two
baselines computed in the same run: a random guess and nearest prototypes on the pretrained backbone.
Writes DIR/report.md with PNG charts; needs no download and runs in minutes on 2 cores.`,
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
			res, err := demo.Run(cmd.Context(), c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\nDone in %s. Report: %s\n", res.Elapsed.Round(1e9), res.Report)
			fmt.Fprintf(out, "Model: %s   Prototypes: %s\n\nNext:\n", res.TrainRun, res.Prototypes)
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
	f.IntVar(&c.PretrainSteps, "pretrain-steps", 600, "pretraining batches")
	f.IntVar(&c.TrainSteps, "train-steps", 600, "training episodes")
	f.IntVar(&c.TopClasses, "top-classes", 60, "pretraining species (the most populated)")
	f.IntVar(&c.Way, "way", 20, "classes per training episode")
	f.IntVar(&c.Shot, "shot", 2, "support images per class")
	f.IntVar(&c.Query, "query", 2, "query images per class")
	f.IntVar(&c.Threads, "threads", runtime.NumCPU(), "libtorch threads")
	f.Uint64Var(&c.Seed, "seed", 1, "random seed")
	f.BoolVar(&c.Quiet, "quiet", false, "no progress bars")
	return cmd
}
