package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"protoherb/synth"
)

func newSynthCmd() *cobra.Command {
	cfg := synth.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "synth --out DIR",
		Short: "Generate a synthetic herbarium in the Herbarium 2020 layout (images, metadata, solution.csv)",
		Long: `Generate procedural herbarium specimen sheets in the exact Herbarium 2020 (FGVC7) layout:
DIR/nybg2020/train/metadata.json and train/images/<cat/100>/<cat%100>/<id>.jpg, DIR/nybg2020/test/
metadata.json and test/images/<id/1000>/<id>.jpg, and DIR/solution.csv (Id,Predicted: the true category
of every test image). Species traits are inherited family -> genus -> species; specimen counts per
species follow a power law between --min-per-class and --max-per-class (train and test together), with
at most --test-per-class test images each; names are written as Latin-1 bytes like the original.
The output is byte-identical for a --seed whatever --workers is.

The scale of Herbarium 2020 (1,030,331 train and 136,721 test images; the real data has 1,030,747 and
138,292): --species 32094 --genera 3678 --families 310 --max-per-class 1800 --alpha 0.74
--test-per-class 10 --test-fraction 0.3 (add --metadata-only to benchmark readers in seconds).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			res, err := synth.Generate(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			slog.Info("synth done", "species", len(res.Categories), "train", res.TrainImages,
				"test", res.TestImages, "elapsed", time.Since(start).Round(time.Millisecond))
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "dataset:  %s\n", res.Root)
			fmt.Fprintf(out, "solution: %s\n", res.Solution)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Out, "out", "", "output directory (required)")
	f.IntVar(&cfg.Species, "species", cfg.Species, "number of species (categories)")
	f.IntVar(&cfg.Genera, "genera", cfg.Genera, "number of genera")
	f.IntVar(&cfg.Families, "families", cfg.Families, "number of families")
	f.IntVar(&cfg.MinPerClass, "min-per-class", cfg.MinPerClass, "fewest specimens per species (train and test together)")
	f.IntVar(&cfg.MaxPerClass, "max-per-class", cfg.MaxPerClass, "most specimens per species (train and test together)")
	f.Float64Var(&cfg.Alpha, "alpha", cfg.Alpha, "power-law tail index of the specimens per species (smaller: heavier head)")
	f.IntVar(&cfg.TestPerClass, "test-per-class", cfg.TestPerClass, "most test images per species (0: no test set)")
	f.Float64Var(&cfg.TestFraction, "test-fraction", cfg.TestFraction, "expected share of a species' specimens beyond the first that go to test")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	f.IntVar(&cfg.Size, "size", cfg.Size, "long side of every sheet in pixels")
	f.IntVar(&cfg.Quality, "quality", cfg.Quality, "JPEG quality")
	f.IntVar(&cfg.Workers, "workers", 0, "parallel renderers (0: one per CPU)")
	f.BoolVar(&cfg.MetadataOnly, "metadata-only", false, "write metadata and solution.csv but no images (for scale tests)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
