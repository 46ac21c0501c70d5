package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"protoherb/cluster"
	"protoherb/torch"
	"protoherb/train"
)

func newTrainCmd() *cobra.Command {
	return newRunCmd(train.ModeEpisodic, &cobra.Command{
		Use:   "train --data PATH --run-dir DIR [flags] | --resume DIR",
		Short: "Episodic prototypical-network training (N-way K-shot Q-query), validated on held-out classes",
		Long: `Trains a backbone as a prototypical network: every step is one episode of --way classes drawn from
every training class with at least --shot+--query images; prototypes are the mean support embeddings;
the loss is one cross-entropy over -squared euclidean distances (or scale·cosine with a learned
temperature, --distance cosine). Adam with the paper's schedule (lr halved every --lr-step episodes)
or --schedule cosine. Every --eval-every episodes it measures --test-way --test-shot accuracy with a
95% CI over --eval-episodes episodes on held-out classes (--val-split, else --val-frac of the
classes) and keeps the best checkpoint in RUN_DIR/best.

Every option can come from --config run.yaml (keys are the flag names); flags given on the command
line win. --resume RUN_DIR continues a run exactly from its newest checkpoint (with its saved
config; flags given override it). Ctrl-C (SIGTERM) saves a checkpoint and exits 130 (143).

Omniglot, the paper's recipe:
  protoherb train --data ../shared/data/omniglot --val-split val --run-dir runs/omniglot`,
	})
}

// newRunCmd adds the flags of a training stage to cmd and runs it.
func newRunCmd(mode string, cmd *cobra.Command) *cobra.Command {
	cfg := train.Defaults(mode)
	var configFile, resume string
	var quiet bool
	var distTimeout time.Duration
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file of options (keys are flag names); flags given override it")
	f.StringVar(&resume, "resume", "", "continue the run in this directory from its newest checkpoint")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	f.DurationVar(&distTimeout, "dist-timeout", 5*time.Minute, "distributed runs: how long a rank waits for the others before failing")
	bindRunFlags(f, &cfg, mode)
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := effectiveConfig(cmd, &cfg, mode, configFile, resume)
		if err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return usageError{err}
		}
		opt := train.Options{Resume: resume != ""}
		opt.Bar.Quiet = quiet
		torch.SetNumThreads(c.Threads)
		if err := torch.ManualSeed(c.Seed); err != nil {
			return err
		}
		group, err := joinJob(&c, distTimeout)
		if err != nil {
			return err
		}
		if group != nil {
			defer group.Close()
			opt.Group = group
		}
		res, err := train.Run(cmd.Context(), c, opt)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if group != nil && group.Rank() != 0 {
			fmt.Fprintf(out, "rank %d: %s stopped at step %d (rank 0 writes the run)\n", group.Rank(), mode, res.Step)
			return nil
		}
		if res.Interrupted {
			fmt.Fprintf(out, "interrupted at step %d; checkpoint %s; continue with: protoherb %s --resume %s\n", res.Step, res.Checkpoint, mode, c.RunDir)
			return nil
		}
		if res.Best != "" {
			fmt.Fprintf(out, "best validation accuracy %.4f (%s)\n", res.BestAcc, res.Best)
		}
		if res.SecPerStep > 0 {
			fmt.Fprintf(out, "%.3f s/step, %.0f images/s, %.1f%% of the step time in sampling and loading images\n",
				res.SecPerStep, res.ImagesPerS, 100*res.DataShare)
		}
		fmt.Fprintf(out, "%s: step %d, loss %.4f, checkpoint %s\n", mode, res.Step, res.Loss, res.Checkpoint)
		return nil
	}
	return cmd
}

// joinJob joins the distributed job the environment describes (torchrun, Kubernetes), or returns
// nil when the process runs alone. Gloo carries CPU runs, NCCL (where compiled in) CUDA runs.
func joinJob(c *train.Config, timeout time.Duration) (*torch.Group, error) {
	role, err := cluster.FromEnv(os.Getenv)
	if err != nil || !role.Distributed() {
		return nil, err
	}
	if c.Device == "cuda" {
		c.Device = fmt.Sprintf("cuda:%d", role.LocalRank) // one GPU per local rank
	}
	backend := "gloo"
	if c.Device != "" && c.Device != "cpu" && slices.Contains(torch.DistBackends(), "nccl") {
		backend = "nccl"
	}
	slog.Info("distributed: joining", "role", role.String(), "backend", backend)
	return torch.NewGroup(torch.GroupOptions{Backend: backend, MasterAddr: role.MasterAddr, MasterPort: role.MasterPort,
		Rank: role.Rank, Size: role.WorldSize, Timeout: timeout, AgentStore: role.AgentStore})
}

// effectiveConfig layers the options: defaults, then the resumed run's config.yaml, then --config,
// then the flags given on the command line.
func effectiveConfig(cmd *cobra.Command, cfg *train.Config, mode, configFile, resume string) (train.Config, error) {
	changed := map[string]string{}
	cmd.Flags().Visit(func(fl *pflag.Flag) { changed[fl.Name] = fl.Value.String() })
	base := train.Defaults(mode)
	var err error
	if resume != "" {
		if base, err = train.ReadConfig(train.ConfigPath(resume), base); err != nil {
			return base, fmt.Errorf("--resume: %w", err)
		}
		if base.Mode != mode {
			return base, fmt.Errorf("--resume %s: that is a %s run, not %s", resume, base.Mode, mode)
		}
		base.RunDir = resume
	}
	if configFile != "" {
		if base, err = train.ReadConfig(configFile, base); err != nil {
			return base, err
		}
	}
	*cfg = base
	for name, v := range changed {
		if err := cmd.Flags().Set(name, v); err != nil {
			return base, fmt.Errorf("--%s: %w", name, err)
		}
	}
	cfg.Mode = mode
	return *cfg, nil
}

// bindRunFlags binds the options of a stage to c (whose values are the defaults shown).
func bindRunFlags(f *pflag.FlagSet, c *train.Config, mode string) {
	f.StringVar(&c.RunDir, "run-dir", c.RunDir, "run directory: config.yaml, metrics.jsonl, curves.png, checkpoints")
	f.StringVar(&c.Data, "data", c.Data, "dataset folder or metadata file")
	f.StringVar(&c.Format, "format", c.Format, "dataset format (default: detected)")
	f.StringVar(&c.Split, "split", c.Split, "training split")
	f.Float64Var(&c.ValFrac, "val-frac", c.ValFrac, "validation share held out: of the classes (train) or images (pretrain)")
	f.IntVar(&c.ImageSize, "image-size", c.ImageSize, "input height and width (0: 28 for Omniglot, else 84)")
	f.IntVar(&c.Channels, "channels", c.Channels, "input channels, 1 or 3 (0: 1 for Omniglot, else 3)")
	f.StringVar(&c.Invert, "invert", c.Invert, "invert intensities: auto (Omniglot), true, false")
	f.BoolVar(&c.Augment, "augment", c.Augment, "random resized crop, flip and colour jitter")
	f.StringVar(&c.InMemory, "in-memory", c.InMemory, "decode every image once into RAM: auto, true, false")
	f.IntVar(&c.Workers, "workers", c.Workers, "image decoding goroutines (0: cores)")
	f.StringVar(&c.OnBadImage, "on-bad-image", c.OnBadImage, "an image that cannot be loaded: skip (replace it by another of its class; listed in RUN_DIR/bad-images.tsv) or fail")
	f.StringVar(&c.Backbone, "backbone", c.Backbone, "conv4, resnet12, resnet18, resnet50 or torchscript:PATH")
	f.IntVar(&c.EmbedDim, "embed-dim", c.EmbedDim, "linear embedding head size (0: none)")
	f.BoolVar(&c.L2Norm, "l2-norm", c.L2Norm, "L2-normalise embeddings")
	f.BoolVar(&c.ChannelsLast, "channels-last", c.ChannelsLast, "run convolutions on NHWC memory layout")
	f.StringVar(&c.Init, "init", c.Init, "start from these weights: a checkpoint folder, a run directory, a .safetensors file or a PyTorch .pth/.pt (torch.save)")
	f.IntVar(&c.Steps, "steps", c.Steps, "training steps (episodes for train, batches for pretrain)")
	f.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "sgd, adam or adamw")
	f.Float64Var(&c.LR, "lr", c.LR, "learning rate")
	f.Float64Var(&c.MinLR, "min-lr", c.MinLR, "final learning rate of the cosine schedule")
	f.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "weight decay")
	f.Float64Var(&c.Momentum, "momentum", c.Momentum, "SGD momentum (Nesterov when > 0)")
	f.StringVar(&c.Schedule, "schedule", c.Schedule, "step (lr × lr-gamma every lr-step), cosine or constant")
	f.IntVar(&c.LRStep, "lr-step", c.LRStep, "steps between learning-rate decays of the step schedule")
	f.Float64Var(&c.LRGamma, "lr-gamma", c.LRGamma, "decay factor of the step schedule")
	f.IntVar(&c.Warmup, "warmup", c.Warmup, "linear warm-up steps")
	f.IntVar(&c.TestWay, "test-way", c.TestWay, "classes per validation episode")
	f.IntVar(&c.TestShot, "test-shot", c.TestShot, "support images per class in validation episodes")
	f.IntVar(&c.TestQuery, "test-query", c.TestQuery, "query images per class in validation episodes")
	f.IntVar(&c.EvalEvery, "eval-every", c.EvalEvery, "validate every this many steps (0: never)")
	f.IntVar(&c.EvalEpisodes, "eval-episodes", c.EvalEpisodes, "validation episodes")
	f.IntVar(&c.SaveEvery, "save-every", c.SaveEvery, "checkpoint every this many steps (and at the end)")
	f.IntVar(&c.KeepLast, "keep-last", c.KeepLast, "checkpoints kept (besides the best)")
	f.StringVar(&c.Device, "device", c.Device, "cpu, cuda or cuda:N")
	f.IntVar(&c.Threads, "threads", c.Threads, "libtorch threads (default: number of cores)")
	f.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	if mode == train.ModePretrain {
		f.IntVar(&c.TopClasses, "top-classes", c.TopClasses, "train on the N most populated classes (0: all)")
		f.StringVar(&c.Sampling, "sampling", c.Sampling, "balanced (every class equally often) or plain (epochs over the images)")
		f.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "images per step (the global batch, split across distributed ranks)")
		f.Float64Var(&c.LabelSmoothing, "label-smoothing", c.LabelSmoothing, "label smoothing of the cross-entropy")
		f.StringVar(&c.Classifier, "classifier", c.Classifier, "linear or cosine classifier head")
		return
	}
	f.StringVar(&c.ValSplit, "val-split", c.ValSplit, "validation split of the dataset (default: hold out --val-frac of the classes)")
	f.IntVar(&c.Way, "way", c.Way, "classes per training episode")
	f.IntVar(&c.EpisodesPerStep, "episodes-per-step", c.EpisodesPerStep, "episodes a step averages its loss over (split across distributed ranks)")
	f.IntVar(&c.Shot, "shot", c.Shot, "support images per class")
	f.IntVar(&c.Query, "query", c.Query, "query images per class")
	f.StringVar(&c.Distance, "distance", c.Distance, "euclidean (squared) or cosine (learned temperature)")
}
