package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"protoherb/pipeline"
	"protoherb/torch"
)

func newPipelineCmd() *cobra.Command {
	var c pipeline.Config
	var opt pipeline.Options
	var config string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "run --data PATH --out DIR [--budget 15m] [flags] | --resume DIR | --config FILE --out DIR",
		Short: "From a dataset to a scored submission within a time budget: pretrain, train, prototypes, predict, evaluate",
		Long: `Runs the whole pipeline on a dataset and writes DIR/submission.csv, DIR/topk.csv and, when the predicted
images have labels (a labelled test split, a solution.csv beside the data, or --holdout), DIR/report/.

It measures the step time on this machine and fits pretraining on all classes to --budget (episodic
training only with --train-steps: at equal time it did worse); stretches each whole image to the
square (--resize squash) and averages embeddings with the mirror image's (--tta flip);
chooses the backbone and image size for the device and the budget (or the --init file's backbone);
chooses the prototype build (plain, centred, normalised, shrunk toward genus and family) by macro-F1 on
held-out training images, never the test set. Every choice goes to DIR/config.yaml: --config that file
repeats the run. --resume DIR continues the interrupted stage; Ctrl-C saves a checkpoint first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opt.Resume && opt.Out == "" {
				return usageErrorf("--resume needs --out DIR (the run to continue)")
			}
			if opt.Out == "" {
				return usageErrorf("--out is required")
			}
			if config != "" {
				saved, err := pipeline.ReadConfig(config)
				if err != nil {
					return err
				}
				c.Merge(saved)
			}
			if c.Data == "" && !opt.Resume {
				return usageErrorf("--data is required (or --config, or --resume)")
			}
			torch.SetNumThreads(c.Threads)
			if err := torch.ManualSeed(max(c.Seed, 1)); err != nil {
				return err
			}
			opt.Log = cmd.OutOrStdout()
			opt.Reseed = torch.ManualSeed
			opt.Bar.Quiet = quiet
			res, err := pipeline.Run(cmd.Context(), c, opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Submission: %s\nTop-5: %s\nPrototypes: %s\nConfig: %s/config.yaml\n",
				res.Submission, res.TopK, res.Prototypes, opt.Out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Data, "data", "", "dataset: folder, metadata file, CSV or split file (path,class,split)")
	f.StringVar(&c.Format, "format", "", "dataset format (default: detect)")
	f.StringVar(&opt.Out, "out", "", "output folder")
	f.DurationVar(&c.Budget, "budget", 0, "time for the whole run (default 15m)")
	f.StringVar(&c.Device, "device", "", "cpu, cuda or cuda:N (default cpu)")
	f.StringVar(&c.Init, "init", "", "start pretraining from these weights (.safetensors, PyTorch .pth/.pt, checkpoint)")
	f.Float64Var(&c.Holdout, "holdout", 0, "hold out this share of each class's training images to evaluate on")
	f.BoolVar(&opt.Resume, "resume", false, "continue the run in --out (its config.yaml)")
	f.StringVar(&config, "config", "", "a run's config.yaml: repeat its choices (flags given win)")
	f.StringVar(&c.Backbone, "backbone", "", "backbone (default: chosen for the device and budget)")
	f.IntVar(&c.ImageSize, "image-size", 0, "model input size (default: chosen)")
	f.IntVar(&c.PretrainSteps, "pretrain-steps", 0, "pretraining batches (default: fitted to the budget; -1: none)")
	f.IntVar(&c.TrainSteps, "train-steps", 0, "episodic training episodes after pretraining (default: none)")
	f.StringVar(&c.Resize, "resize", "", "squash: whole image stretched to the square; fit: whole image at its aspect, padded with its border's colour; crop: centre square (default squash)")
	f.StringVar(&c.TTA, "tta", "", "flip: average each embedding with its mirror image's; none (default flip)")
	f.IntVar(&c.Threads, "threads", runtime.NumCPU(), "libtorch threads")
	f.Uint64Var(&c.Seed, "seed", 0, "random seed (default 1)")
	f.BoolVar(&quiet, "quiet", false, "no progress bars")
	return cmd
}
