package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"protoherb/cluster"
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/progress"
	"protoherb/proto"
)

// buildFlags are the robust-prototype options (recorded by prototypes, applied by predict).
type buildFlags struct {
	center, normalize bool
	shrink            string
}

func (b *buildFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&b.center, "center", false, "subtract the global mean embedding from prototypes and queries")
	f.BoolVar(&b.normalize, "normalize", false, "scale prototypes and queries to unit length (cosine ranking)")
	f.StringVar(&b.shrink, "shrink", "", "shrink classes toward their genus and family: genus=λ,family=μ, auto (empirical Bayes) or none")
}

// edit returns the change the flags the user set make to a recorded build.
func (b *buildFlags) edit(f *pflag.FlagSet) proto.BuildEdit {
	return func(base proto.Build) (proto.Build, error) { return b.apply(f, base) }
}

// apply overrides base with the flags the user set.
func (b *buildFlags) apply(f *pflag.FlagSet, base proto.Build) (proto.Build, error) {
	if f.Changed("center") {
		base.Center = b.center
	}
	if f.Changed("normalize") {
		base.Normalize = b.normalize
	}
	if f.Changed("shrink") {
		if err := base.SetShrink(b.shrink); err != nil {
			return base, err
		}
	}
	return base, nil
}

// loadEmbeddings reads and joins comma-separated embeddings files.
func loadEmbeddings(list string) (*proto.Embeddings, error) {
	var parts []*proto.Embeddings
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		e, err := proto.LoadEmbeddings(p)
		if err != nil {
			return nil, err
		}
		parts = append(parts, e)
	}
	return proto.ConcatEmbeddings(parts...)
}

// accumulateEmbeddings adds the labelled rows of e (not the failed ones) to s.
func accumulateEmbeddings(s *proto.Store, e *proto.Embeddings) error {
	failed := make(map[int64]bool, len(e.Failed))
	for _, id := range e.Failed {
		failed[id] = true
	}
	const chunk = 4096
	var skipped int
	for r0 := 0; r0 < e.Len(); r0 += chunk {
		var vec []float32
		var lab, ids []int64
		for r := r0; r < min(r0+chunk, e.Len()); r++ {
			if failed[e.IDs[r]] || e.Labels[r] < 0 {
				skipped++
				continue
			}
			vec = append(vec, e.Vectors[r*e.Dim:(r+1)*e.Dim]...)
			lab, ids = append(lab, e.Labels[r]), append(ids, e.IDs[r])
		}
		if err := s.Accumulate(vec, lab, ids); err != nil {
			return err
		}
	}
	if skipped > 0 {
		slog.Warn("embeddings without a label or image were left out of the prototypes", "rows", skipped)
	}
	return nil
}

func newPrototypesCmd() *cobra.Command {
	var (
		m       modelFlags
		b       buildFlags
		from    string
		out     string
		normEmb bool
		quiet   bool
		shards  int
	)
	cmd := &cobra.Command{
		Use:   "prototypes (--model CKPT --data PATH | --from emb.safetensors[,...]) --out protos.safetensors",
		Short: "Per-class embedding sums and counts over the training images (shards merge exactly), with class names and taxonomy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			build, err := b.apply(cmd.Flags(), proto.Build{})
			if err != nil {
				return err
			}
			opt := proto.Options{NormalizeEmbeddings: normEmb}
			var s *proto.Store
			if from != "" {
				e, err := loadEmbeddings(from)
				if err != nil {
					return err
				}
				if s, err = proto.New(e.Dim, e.Model, e.Classes, opt); err != nil {
					return err
				}
				if err := accumulateEmbeddings(s, e); err != nil {
					return err
				}
			} else {
				// The shard of a distributed job (torchrun, Kubernetes Indexed Job): shards merge exactly.
				si, sn, err := cluster.Shard(os.Getenv, shards)
				if err != nil {
					return err
				}
				out = cluster.ShardPath(out, si, sn)
				if s, err = streamPrototypes(cmd, &m, opt, quiet, si, sn); err != nil {
					return err
				}
			}
			s.SetDefaultBuild(build)
			if err := s.Replace(out); err != nil {
				return err
			}
			var empty int
			for _, c := range s.Classes() {
				if s.Count(c.ID) == 0 {
					empty++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d classes (%d without images), %d images, dimension %d, model %s, build %s: %s\n",
				s.Len(), empty, s.Total(), s.Dim(), s.Model(), build, out)
			return nil
		},
	}
	m.register(cmd.Flags(), "train")
	b.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "build from embeddings files (comma-separated) instead of a model and images")
	f.StringVar(&out, "out", "", "prototype file to write (safetensors)")
	f.IntVar(&shards, "shards", 0, "with --model: shards of a Kubernetes Indexed Job (JOB_COMPLETION_INDEX; RANK/WORLD_SIZE need none); --out gets the shard's number")
	f.BoolVar(&normEmb, "normalize-embeddings", false, "scale each embedding to unit length before summing (queries too)")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	_ = cmd.MarkFlagRequired("out")
	cmd.AddCommand(newPrototypesMergeCmd(), newPrototypesAddCmd())
	return cmd
}

// streamPrototypes embeds the training images and sums them per class without keeping them.
func streamPrototypes(cmd *cobra.Command, m *modelFlags, opt proto.Options, quiet bool, shard, shards int) (*proto.Store, error) {
	d, emb, fp, lo, err := m.open()
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	s, err := proto.New(emb.Dim(), fp, d.Classes, opt)
	if err != nil {
		return nil, err
	}
	var idx []int
	for i, smp := range d.Samples {
		if smp.Label >= 0 && i%shards == shard {
			idx = append(idx, i)
		}
	}
	dim := emb.Dim()
	bar := progress.New(int64(len(idx)), "prototypes", progress.Options{Quiet: quiet, Unit: "img"})
	bad, err := infer.EmbedItems(cmd.Context(), imageio.ItemsFromDataset(d, idx), lo, emb.Embed, bar, func(rows []int, v []float32) error {
		labels, ids := make([]int64, len(rows)), make([]int64, len(rows))
		for j, r := range rows {
			smp := d.Samples[idx[r]]
			labels[j], ids[j] = d.Classes[smp.Label].ID, smp.ID
		}
		return s.Accumulate(v[:len(rows)*dim], labels, ids)
	})
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		slog.Warn("training image could not be read; left out", "path", b.Path, "err", b.Err)
	}
	return s, nil
}

func newPrototypesMergeCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge A B [C...] --out ALL",
		Short: "Merge prototype files (shards) exactly: same dimension, model and options",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := proto.MergeFiles(cmd.Context(), args)
			if err != nil {
				return err
			}
			if err := m.Replace(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "merged %d files: %d classes, %d images: %s\n", len(args), m.Len(), m.Total(), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "merged prototype file to write")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newPrototypesAddCmd() *cobra.Command {
	var (
		m                         modelFlags
		path, name, genus, family string
		id                        int64
	)
	cmd := &cobra.Command{
		Use:   "add --prototypes P --model CKPT --class NAME [--genus G --family F] IMAGES...",
		Short: "Append a species (or add images to one) without retraining; the file is replaced atomically",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := proto.Open(path, proto.OpenOptions{})
			if err != nil {
				return err
			}
			defer s.Close()
			emb, fp, err := m.embedder()
			if err != nil {
				return err
			}
			defer emb.Close()
			if emb.Dim() != s.Dim() {
				return fmt.Errorf("%s: prototypes are %d-dimensional (model %s) but --model makes %d-dimensional embeddings", path, s.Dim(), s.Model(), emb.Dim())
			}
			if fp != s.Model() {
				return fmt.Errorf("%s: prototypes were made by model %s, --model is %s (pass --fingerprint to override)", path, s.Model(), fp)
			}
			c := proto.Class{ID: proto.AutoID, Name: name, Genus: genus, Family: family}
			if cmd.Flags().Changed("id") {
				c.ID = id
			}
			lo, err := m.loaderOptions(emb)
			if err != nil {
				return err
			}
			lo.OnBad = imageio.Fail // a named image that cannot be read is an error, not a silent skip
			items := make([]imageio.Item, len(args))
			for i, a := range args {
				items[i] = imageio.Item{Path: a, Label: -1}
			}
			vec := make([]float32, len(args)*emb.Dim())
			if _, err := infer.EmbedItems(cmd.Context(), items, lo, emb.Embed, nil, func(rows []int, v []float32) error {
				for j, r := range rows {
					copy(vec[r*emb.Dim():(r+1)*emb.Dim()], v[j*emb.Dim():(j+1)*emb.Dim()])
				}
				return nil
			}); err != nil {
				return err
			}
			got, err := s.Enrol(c, vec, "")
			if err != nil {
				return err
			}
			sp := got.Species
			fmt.Fprintf(cmd.OutOrStdout(), "class %d %q (%s, %s) now has %d images: %s\n", sp.ID, sp.Name, sp.Genus, sp.Family, sp.Count, path)
			return nil
		},
	}
	m.register(cmd.Flags(), "train")
	f := cmd.Flags()
	f.StringVar(&path, "prototypes", "", "prototype file to update")
	f.StringVar(&name, "class", "", "species name (an existing name adds images to that class)")
	f.Int64Var(&id, "id", 0, "class id of a new species (default: one more than the largest); names match ignoring case and spacing, as the server's")
	f.StringVar(&genus, "genus", "", "genus")
	f.StringVar(&family, "family", "", "family")
	_ = cmd.MarkFlagRequired("prototypes")
	_ = cmd.MarkFlagRequired("class")
	return cmd
}
