package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"protoherb/dataset"
	"protoherb/eval"
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/predict"
	"protoherb/progress"
	"protoherb/proto"
)

// candidates are the prototype builds a run chooses from (docs/prototypes.md measures them).
var candidates = []Build{
	{Name: "plain"},
	{Name: "centred", Center: true},
	{Name: "centred-normalised", Center: true, Normalize: true},
	{Name: "robust", NormalizeEmbeddings: true, Center: true, Normalize: true, ShrinkGenus: 1, ShrinkFamily: 0.5},
	{Name: "robust-auto", NormalizeEmbeddings: true, Center: true, Normalize: true, AutoShrink: true},
}

// embedded holds the embeddings of a run's images, computed once.
type embedded struct {
	train, predict *proto.Embeddings
	fp             string
}

// embedAll embeds every training image and every image to predict with the trained model.
func embedAll(ctx context.Context, model string, d *data, bar progress.Options) (*embedded, error) {
	emb, err := infer.LoadModel(model, infer.ModelSpec{ChannelsLast: true, Chunk: -1})
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	fp, err := infer.Fingerprint(model)
	if err != nil {
		return nil, err
	}
	o := infer.DatasetOptions{Fingerprint: fp, Loader: imageio.LoaderOptions{BatchSize: 64}, Bar: bar}
	e := &embedded{fp: fp}
	if e.train, err = infer.EmbedDataset(ctx, emb, d.train, o); err != nil {
		return nil, err
	}
	if e.predict, err = infer.EmbedDataset(ctx, emb, d.predict, o); err != nil {
		return nil, err
	}
	return e, nil
}

// rows returns a copy of the embeddings of the samples of s (by image id).
func rows(all *proto.Embeddings, s *dataset.Dataset) *proto.Embeddings {
	want := make(map[int64]bool, len(s.Samples))
	for _, x := range s.Samples {
		want[x.ID] = true
	}
	out := &proto.Embeddings{Dim: all.Dim, Model: all.Model, Split: s.Split, Classes: all.Classes, Root: all.Root}
	for i, id := range all.IDs {
		if want[id] {
			out.IDs = append(out.IDs, id)
			out.Labels = append(out.Labels, all.Labels[i])
			out.Vectors = append(out.Vectors, all.Vectors[i*all.Dim:(i+1)*all.Dim]...)
		}
	}
	for _, id := range all.Failed {
		if want[id] {
			out.Failed = append(out.Failed, id)
		}
	}
	return out
}

// savePrototypes accumulates one prototype per class from the given embeddings into a prototype
// file at path recording build b, and opens it for search.
func savePrototypes(path string, e *embedded, d *data, from *proto.Embeddings, b Build) (*proto.Index, error) {
	po, pb := b.proto()
	store, err := proto.New(from.Dim, e.fp, d.train.Classes, po)
	if err != nil {
		return nil, err
	}
	if err := store.Accumulate(from.Vectors, from.Labels, from.IDs); err != nil {
		return nil, err
	}
	store.SetDefaultBuild(pb)
	if err := store.Save(path); err != nil {
		return nil, err
	}
	return proto.Open(path, proto.OpenOptions{ReadOnly: true})
}

// chooseBuild scores every candidate build by macro-F1 on the val images, with prototypes from the
// fit images only, and returns the best (the first on ties: the simplest). The candidates' files
// go to a scratch folder in out.
func chooseBuild(ctx context.Context, out string, e *embedded, d *data) (*Build, error) {
	fit, val := rows(e.train, d.fit), rows(e.train, d.val)
	if val.Len() == 0 {
		b := candidates[0]
		return &b, nil
	}
	classes, err := eval.ClassesFromDataset(d.fit)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(out, "candidates-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	truth := labelsOf(d.val)
	scores := map[string]float64{}
	best := -1
	for i, b := range candidates {
		x, err := savePrototypes(filepath.Join(tmp, b.Name+".safetensors"), e, d, fit, b)
		if err != nil {
			return nil, fmt.Errorf("prototypes %s: %w", b.Name, err)
		}
		q := *val
		q.Vectors = slices.Clone(val.Vectors)
		r, err := predict.Run(ctx, x, &q, 1)
		x.Close()
		if err != nil {
			return nil, err
		}
		rep, err := eval.Evaluate(truth, &eval.Labels{Name: "val predictions", IDs: r.IDs, Class: r.Pred}, eval.Options{Classes: classes})
		if err != nil {
			return nil, err
		}
		scores[b.Name] = rep.MacroF1
		if best < 0 || rep.MacroF1 > scores[candidates[best].Name] {
			best = i
		}
	}
	b := candidates[best]
	b.ValMacroF1 = scores
	return &b, nil
}
