package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"protoherb/cluster"
	"protoherb/dataset"
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/progress"
	"protoherb/proto"
	"protoherb/torch"
)

// modelFlags are the flags that load a model and feed it images (embed, prototypes, predict).
type modelFlags struct {
	model, fingerprint  string
	spec                infer.ModelSpec
	device, onBad       string
	batch, workers      int
	threads             int
	data, format, split string
}

func (m *modelFlags) register(f *pflag.FlagSet, split string) {
	f.StringVar(&m.model, "model", "", "trained model: checkpoint folder, run folder, weights (.safetensors, or a PyTorch .pth/.pt state dict with --backbone and --image-size) or a TorchScript module")
	f.StringVar(&m.fingerprint, "fingerprint", "", "model fingerprint to record (default: a hash of the model's weight files)")
	registerSpecFlags(f, &m.spec)
	f.StringVar(&m.device, "device", "cpu", "cpu, cuda or cuda:N")
	f.StringVar(&m.onBad, "on-bad-image", "skip", "an image that cannot be read: skip (listed; the rest go on) or fail")
	f.IntVar(&m.batch, "batch", 32, "images per forward pass")
	f.IntVar(&m.workers, "workers", 0, "image decoding workers (0: one per core)")
	f.IntVar(&m.threads, "threads", 0, "libtorch threads (0: number of cores)")
	f.StringVar(&m.data, "data", "", "dataset: folder, metadata file or CSV")
	f.StringVar(&m.format, "format", "", "dataset format (default: detect): "+strings.Join(dataset.Formats, ", "))
	f.StringVar(&m.split, "split", split, "dataset split")
}

// embedder opens the model; close frees it.
func (m *modelFlags) embedder() (*infer.ModelEmbedder, string, error) {
	if m.model == "" {
		return nil, "", usageErrorf("--model is required")
	}
	dev, err := torch.ParseDevice(m.device)
	if err != nil {
		return nil, "", err
	}
	torch.SetNumThreads(m.threads)
	m.spec.Device = dev
	fp := m.fingerprint
	if fp == "" {
		if fp, err = infer.Fingerprint(m.model); err != nil {
			return nil, "", err
		}
	}
	e, err := infer.LoadModel(m.model, m.spec)
	if err != nil {
		return nil, "", err
	}
	return e, fp, nil
}

func (m *modelFlags) loaderOptions(e *infer.ModelEmbedder) (imageio.LoaderOptions, error) {
	bad, err := imageio.ParseBadPolicy(m.onBad)
	if err != nil {
		return imageio.LoaderOptions{}, err
	}
	return imageio.LoaderOptions{Workers: m.workers, BatchSize: m.batch, Transform: e.Transform(), OnBad: bad}, nil
}

// parseShard reads --shard "i/n" (0-based i).
func parseShard(s string) (i, n int, err error) {
	if s == "" {
		return 0, 1, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, e1 := strconv.Atoi(a)
	n, e2 := strconv.Atoi(b)
	if !ok || e1 != nil || e2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard %q: want i/n with 0 ≤ i < n", s)
	}
	return i, n, nil
}

func openData(m *modelFlags) (*dataset.Dataset, error) {
	if m.data == "" {
		return nil, usageErrorf("--data is required")
	}
	return dataset.Open(m.data, dataset.Options{Format: m.format, Split: m.split})
}

// embedDataset embeds shard i of n of the dataset (every n-th sample from the i-th) in metadata order.
// Images that cannot be read keep their row (zeros) and are listed in Failed.
func embedDataset(ctx context.Context, m *modelFlags, shard string, quiet bool) (*proto.Embeddings, error) {
	si, sn, err := parseShard(shard)
	if err != nil {
		return nil, err
	}
	d, emb, fp, lo, err := m.open()
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	return infer.EmbedDataset(ctx, emb, d, infer.DatasetOptions{Shard: si, Shards: sn, Fingerprint: fp, Loader: lo,
		Bar: progress.Options{Quiet: quiet}})
}

// open opens the dataset and the model, and returns the loader options that feed the model; the
// caller closes the embedder.
func (m *modelFlags) open() (*dataset.Dataset, *infer.ModelEmbedder, string, imageio.LoaderOptions, error) {
	d, err := openData(m)
	if err != nil {
		return nil, nil, "", imageio.LoaderOptions{}, err
	}
	emb, fp, err := m.embedder()
	if err != nil {
		return nil, nil, "", imageio.LoaderOptions{}, err
	}
	lo, err := m.loaderOptions(emb)
	if err != nil {
		emb.Close()
		return nil, nil, "", imageio.LoaderOptions{}, err
	}
	return d, emb, fp, lo, nil
}

func newEmbedCmd() *cobra.Command {
	var (
		m          modelFlags
		out, shard string
		quiet      bool
		shards     int
	)
	cmd := &cobra.Command{
		Use:   "embed --model CKPT --data PATH [--split test] --out emb.safetensors",
		Short: "Embed a dataset split once: float32 [N, D] embeddings with image ids and labels (shardable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if shard == "" { // the shard of a distributed job (torchrun, Kubernetes Indexed Job)
				i, n, err := cluster.Shard(os.Getenv, shards)
				if err != nil {
					return err
				}
				shard, out = fmt.Sprintf("%d/%d", i, n), cluster.ShardPath(out, i, n)
			}
			e, err := embedDataset(cmd.Context(), &m, shard, quiet)
			if err != nil {
				return err
			}
			if err := e.Save(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "embedded %d images (%d could not be read) of dimension %d with model %s into %s\n",
				e.Len()-len(e.Failed), len(e.Failed), e.Dim, e.Model, out)
			return nil
		},
	}
	m.register(cmd.Flags(), "test")
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "embeddings file to write (safetensors)")
	f.StringVar(&shard, "shard", "", "embed only shard i/n (every n-th image from the i-th, 0-based); default: RANK/WORLD_SIZE or JOB_COMPLETION_INDEX of --shards")
	f.IntVar(&shards, "shards", 0, "shards of a Kubernetes Indexed Job (with JOB_COMPLETION_INDEX); --out gets the shard's number ({shard} in it, else .shard-i-of-n)")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
