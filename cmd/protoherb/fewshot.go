package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"protoherb/torch"
	"protoherb/train"
)

func newFewshotCmd() *cobra.Command {
	o := train.FewShotOptions{Split: "test", Ways: []int{5}, Shots: []int{1}, Query: 15, Episodes: 1000, Seed: 1, Device: "cpu",
		InMemory: "auto"}
	var quiet bool
	threads := runtime.NumCPU()
	cmd := &cobra.Command{
		Use:   "fewshot --model CKPT --data PATH [--split test] [--way 5 --shot 1 --query 15 --episodes 1000]",
		Short: "N-way K-shot accuracy of a trained model with a 95% confidence interval",
		Long: `Draws --episodes N-way K-shot episodes from a split (every class with at least shot+query
images) and reports the mean query accuracy with its 95% confidence interval (1.96·std/√episodes).
--model is a checkpoint folder or a run directory (its best checkpoint, else its newest); the image
size, channels and distance are the model's. --way and --shot take lists (--way 5,20 --shot 1,5):
every combination is evaluated, and every distinct image is embedded once, in eval mode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Model == "" || o.Data == "" {
				return usageErrorf("fewshot: --model and --data are required")
			}
			o.Bar.Quiet = quiet
			torch.SetNumThreads(threads)
			r, err := train.FewShot(cmd.Context(), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "model %s, %s split %s (%d classes)\n", r.Checkpoint, o.Data, o.Split, r.Tasks[0].Classes)
			for _, t := range r.Tasks {
				fmt.Fprintf(out, "fewshot: %d-way %d-shot %s\n", t.Way, t.Shot, t.Stats)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Model, "model", "", "checkpoint folder or run directory")
	f.StringVar(&o.Data, "data", "", "dataset folder or metadata file")
	f.StringVar(&o.Format, "format", "", "dataset format (default: detected)")
	f.StringVar(&o.Split, "split", o.Split, "split to draw episodes from")
	f.IntSliceVar(&o.Ways, "way", o.Ways, "classes per episode (a list evaluates each)")
	f.IntSliceVar(&o.Shots, "shot", o.Shots, "support images per class (a list evaluates each)")
	f.IntVar(&o.Query, "query", o.Query, "query images per class")
	f.IntVar(&o.Episodes, "episodes", o.Episodes, "episodes")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "random seed of the episodes")
	f.StringVar(&o.Device, "device", o.Device, "cpu, cuda or cuda:N")
	f.IntVar(&threads, "threads", threads, "libtorch threads")
	f.StringVar(&o.InMemory, "in-memory", o.InMemory, "decode the images once into RAM: auto, true, false")
	f.IntVar(&o.Workers, "workers", 0, "image decoding goroutines (0: cores)")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}
