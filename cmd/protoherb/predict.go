package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"protoherb/predict"
	"protoherb/proto"
	"protoherb/search"
)

func newPredictCmd() *cobra.Command {
	var (
		m                    modelFlags
		b                    buildFlags
		protos, embs         string
		out, topkOut         string
		failedOut, metric    string
		k, qTile, pTile, thr int
		otherModel, quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "predict --prototypes P (--embeddings E | --model CKPT --data TEST) --out submission.csv [--topk 5 --topk-out topk.csv]",
		Short: "Nearest-prototype predictions for a test set: the Kaggle submission (Id,Predicted) and optionally the top-k",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t0 := time.Now()
			if (embs == "") == (m.model == "") {
				return fmt.Errorf("give either --embeddings or --model with --data")
			}
			if k < 1 {
				return fmt.Errorf("--topk %d: want at least 1", k)
			}
			met, err := search.ParseMetric(metric)
			if err != nil {
				return err
			}
			// The prototypes are built with the recorded build (flags override) and the sums dropped
			// before the embeddings are read, so the two never sit in memory together.
			x, err := proto.Open(protos, proto.OpenOptions{Edit: b.edit(cmd.Flags()), Metric: met, ReadOnly: true,
				Search: search.Options{QueryTile: qTile, ProtoTile: pTile, Threads: thr}})
			if err != nil {
				return err
			}
			defer x.Close()
			debug.FreeOSMemory()
			p, build := x.Prototypes(), x.Build()
			if p == nil {
				return fmt.Errorf("%s: no class has an image", protos)
			}
			check := func(dim int, model string) error { return checkModel(protos, p.Dim, p.Model, dim, model, otherModel) }
			e, err := testEmbeddings(cmd.Context(), &m, embs, quiet, check)
			if err != nil {
				return err
			}
			tLoad := time.Since(t0)
			r, err := predict.Run(cmd.Context(), x, e, k)
			if err != nil {
				return err
			}
			tSearch := r.SearchTime
			if err := writePredictions(r, out, topkOut, failedOut); err != nil {
				return err
			}
			nq := float64(e.Len())
			fmt.Fprintf(cmd.OutOrStdout(), "%d test images, %d prototypes (%d classes without images excluded), %d-d, build %s, metric %s: %s\n",
				e.Len(), len(p.Classes), len(p.Excluded), p.Dim, build, met, out)
			fmt.Fprintf(cmd.OutOrStdout(), "load+build %.2f s, search %.2f s (%.0f queries/s), total %.2f s\n",
				tLoad.Seconds(), tSearch.Seconds(), nq/tSearch.Seconds(), time.Since(t0).Seconds())
			return nil
		},
	}
	m.register(cmd.Flags(), "test")
	b.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&protos, "prototypes", "", "prototype file (protoherb prototypes); its recorded build options apply unless overridden")
	f.StringVar(&embs, "embeddings", "", "test embeddings files (comma-separated, protoherb embed) instead of --model and --data")
	f.StringVar(&out, "out", "", "submission CSV to write (Id,Predicted)")
	f.IntVar(&k, "topk", 5, "neighbours kept per image")
	f.StringVar(&topkOut, "topk-out", "", "also write the top-k CSV (Id,Rank,Predicted,Distance)")
	f.StringVar(&failedOut, "failed-out", "", "list of unreadable test images (default: OUT.failed.csv, written only when there are some)")
	f.StringVar(&metric, "metric", "l2", "l2 (= euclidean, as train's --distance) or cosine")
	f.IntVar(&qTile, "query-tile", 0, "queries per matrix product (0: default)")
	f.IntVar(&pTile, "proto-tile", 0, "prototypes per matrix product (0: default)")
	f.IntVar(&thr, "search-threads", 0, "goroutines scanning a tile (0: one per core)")
	f.BoolVar(&otherModel, "allow-other-model", false, "accept test embeddings whose model fingerprint differs from the prototypes'")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	_ = cmd.MarkFlagRequired("prototypes")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// testEmbeddings reads the test embeddings files (their headers checked first), or embeds the
// --data test split with the model; check refuses another model's embeddings.
func testEmbeddings(ctx context.Context, m *modelFlags, embs string, quiet bool, check func(dim int, model string) error) (*proto.Embeddings, error) {
	if embs == "" {
		e, err := embedDataset(ctx, m, "", quiet)
		if err != nil {
			return nil, err
		}
		return e, check(e.Dim, e.Model)
	}
	for _, path := range strings.Split(embs, ",") {
		dim, model, _, err := proto.EmbeddingsHeader(strings.TrimSpace(path))
		if err != nil {
			return nil, err
		}
		if err := check(dim, model); err != nil {
			return nil, err
		}
	}
	return loadEmbeddings(embs)
}

// writePredictions writes the submission, the top-k file when asked, and the list of unreadable
// images when there are some (default OUT.failed.csv).
func writePredictions(r *predict.Result, out, topkOut, failedOut string) error {
	if err := r.WriteSubmission(out); err != nil {
		return err
	}
	if topkOut != "" {
		if err := r.WriteTopK(topkOut); err != nil {
			return err
		}
	}
	if len(r.Failed) == 0 {
		return nil
	}
	if failedOut == "" {
		failedOut = out + ".failed.csv"
	}
	if err := r.WriteFailed(failedOut); err != nil {
		return err
	}
	slog.Warn("test images that could not be read were given the most frequent class", "images", len(r.Failed), "class", r.Fallback, "list", failedOut)
	return nil
}

// checkModel refuses test embeddings from another model than the prototypes'.
func checkModel(protos string, haveDim int, haveModel string, dim int, model string, otherModel bool) error {
	if dim != haveDim {
		return fmt.Errorf("%s: prototypes are %d-dimensional (model %s), the test embeddings %d-dimensional (model %s): they come from different models",
			protos, haveDim, haveModel, dim, model)
	}
	if model != haveModel && !otherModel {
		return fmt.Errorf("%s: prototypes were made by model %s, the test embeddings by %s (pass --allow-other-model if that is intended)",
			protos, haveModel, model)
	}
	return nil
}
