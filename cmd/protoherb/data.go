package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"protoherb/dataset"
	"protoherb/imageio"
	"protoherb/progress"
)

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Inspect datasets and build preprocessed image caches",
	}
	cmd.AddCommand(newDataStatsCmd(), newDataCacheCmd())
	return cmd
}

// dataFlags are the flags every command reading a dataset shares.
type dataFlags struct {
	path, format, split string
}

func (f *dataFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "data", "", "dataset: folder, metadata JSON or CSV (Herbarium: the folder holding nybg2020/, or below)")
	cmd.Flags().StringVar(&f.format, "format", "", "dataset format (default: detect): herbarium2020|herbarium2021|herbarium2022|imagefolder|csv|omniglot")
	cmd.Flags().StringVar(&f.split, "split", "train", "split: train|test (Omniglot: train|val|test|trainval)")
	_ = cmd.MarkFlagRequired("data")
}

func (f *dataFlags) open() (*dataset.Dataset, error) {
	return dataset.Open(f.path, dataset.Options{Format: f.format, Split: f.split})
}

func newDataStatsCmd() *cobra.Command {
	var df dataFlags
	var opt imageio.CheckOptions
	var check, quiet bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print images, classes, images per class, head/medium/tail counts and taxonomy levels",
		Long: `Prints images, classes, images per class, head/medium/tail counts and taxonomy levels.

--check also reads every image file's header and end, in parallel (--decode: decodes every image), and
lists each file the loader could not read with the reason; the command then fails (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := df.open()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			dataset.ComputeStats(d).Print(out, d)
			if !check && !opt.Decode {
				return nil
			}
			paths := d.Paths()
			opt.Bar = progress.New(int64(len(paths)), "check images", progress.Options{Quiet: quiet, Unit: "img"})
			bad, err := imageio.CheckFiles(cmd.Context(), paths, opt)
			if err != nil {
				return err
			}
			for _, b := range bad {
				fmt.Fprintf(out, "  bad image: %v\n", b)
			}
			fmt.Fprintf(out, "checked %d image files: %d bad\n", len(paths), len(bad))
			if len(bad) > 0 {
				return fmt.Errorf("%s: %d of %d image files cannot be read (listed above)", d.Root, len(bad), len(paths))
			}
			return nil
		},
	}
	df.register(cmd)
	cmd.Flags().BoolVar(&check, "check", false, "also read every image's header and end, list the bad files, fail when there is one")
	cmd.Flags().BoolVar(&opt.Decode, "decode", false, "with --check (implied): decode every image, not only its header")
	cmd.Flags().IntVar(&opt.Workers, "workers", 0, "files checked in parallel (0 = one per CPU)")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

func newDataCacheCmd() *cobra.Command {
	var df dataFlags
	var (
		size, workers int
		out, onBad    string
		crop, quiet   bool
	)
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Decode every image once at training size into one packed uint8 file the loader reads at memory speed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := imageio.ParseBadPolicy(onBad)
			if err != nil {
				return usageError{err}
			}
			if out == "" {
				return usageErrorf("--out is required")
			}
			d, err := df.open()
			if err != nil {
				return err
			}
			paths := d.Paths()
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			bar := progress.New(int64(len(paths)), "cache", progress.Options{Quiet: quiet, Unit: "img"})
			rep, err := imageio.BuildCache(cmd.Context(), abs, paths, imageio.CacheOptions{
				Size: size, Crop: crop, Workers: workers, OnBad: policy, Bar: bar,
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for i, b := range rep.BadImages {
				if i == 20 {
					fmt.Fprintf(w, "  ... and %d more\n", len(rep.BadImages)-20)
					break
				}
				fmt.Fprintf(w, "  bad image: %v\n", b)
			}
			fmt.Fprintf(w, "cached %d images (%d bad, skipped) in %s: %.1f MiB\n", rep.Images, rep.Bad, abs, float64(rep.Bytes)/(1<<20))
			slog.Info("cache written", "file", abs, "images", rep.Images, "bad", rep.Bad)
			return nil
		},
	}
	df.register(cmd)
	cmd.Flags().IntVar(&size, "size", 256, "shorter side of the stored images, in pixels")
	cmd.Flags().BoolVar(&crop, "crop", false, "store only the centred square (size x size)")
	cmd.Flags().StringVar(&out, "out", "", "cache file to write")
	cmd.Flags().IntVar(&workers, "workers", 0, "decoding goroutines (0 = one per CPU)")
	cmd.Flags().StringVar(&onBad, "on-bad-image", "skip", "skip (record, count and list bad images) or fail")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}
