package infer

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"

	"protoherb/dataset"
	"protoherb/imageio"
	"protoherb/progress"
	"protoherb/proto"
)

// DatasetOptions say which samples of a dataset to embed and how to read them.
type DatasetOptions struct {
	// Shard and Shards select every Shards-th sample from the Shard-th (0-based); Shards 0 means all.
	Shard, Shards int
	// Fingerprint names the model in the embeddings file.
	Fingerprint string
	// Loader reads the images; its Transform is replaced by the embedder's.
	Loader imageio.LoaderOptions
	Bar    progress.Options
}

// RelativePaths returns the dataset's folder (absolute) and the paths of the samples idx relative
// to it, with forward slashes (an image outside the folder keeps its absolute path), for every
// dataset format: what `serve --index` needs to show a specimen.
func RelativePaths(d *dataset.Dataset, idx []int) (string, []string) {
	root, err := filepath.Abs(d.Root)
	if err != nil {
		root = d.Root
	}
	paths := make([]string, len(idx))
	for r, i := range idx {
		p := d.Samples[i].Path
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if rel, err := filepath.Rel(root, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			p = rel
		}
		paths[r] = filepath.ToSlash(p)
	}
	return root, paths
}

// EmbedDataset embeds a dataset (or one shard of it) in metadata order. Images that cannot be read
// keep their row (zeros) and are listed in Failed, unless the loader's policy is to fail.
func EmbedDataset(ctx context.Context, e *ModelEmbedder, d *dataset.Dataset, o DatasetOptions) (*proto.Embeddings, error) {
	shards := max(o.Shards, 1)
	var idx []int
	for i := o.Shard; i < len(d.Samples); i += shards {
		idx = append(idx, i)
	}
	dim := e.Dim()
	out := &proto.Embeddings{Dim: dim, Model: o.Fingerprint, Split: d.Split, Classes: d.Classes,
		IDs: make([]int64, len(idx)), Labels: make([]int64, len(idx)), Vectors: make([]float32, len(idx)*dim)}
	out.Root, out.Paths = RelativePaths(d, idx)
	for r, i := range idx {
		s := d.Samples[i]
		out.IDs[r], out.Labels[r] = s.ID, -1
		if s.Label >= 0 {
			out.Labels[r] = d.Classes[s.Label].ID
		}
	}
	lo := o.Loader
	lo.Transform = e.Transform()
	bar := progress.New(int64(len(idx)), "embed "+d.Split, progress.Options{Quiet: o.Bar.Quiet, Writer: o.Bar.Writer, Unit: "img"})
	bad, err := EmbedItems(ctx, imageio.ItemsFromDataset(d, idx), lo, e.Embed, bar, func(rows []int, v []float32) error {
		for j, r := range rows {
			copy(out.Vectors[r*dim:(r+1)*dim], v[j*dim:(j+1)*dim])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		out.Failed = append(out.Failed, out.IDs[b.Index])
		slog.Warn("image could not be read", "image", out.IDs[b.Index], "path", b.Path, "err", b.Err)
	}
	return out, nil
}
