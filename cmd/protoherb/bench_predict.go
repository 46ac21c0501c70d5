package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"protoherb/proto"
)

// benchPredictFlags are `bench predict`'s settings.
type benchPredictFlags struct {
	dir                   string
	classes, queries, dim int
	k                     int
	seed                  uint64
	sgemmN                int
	sgemmScript, python   string
}

func newBenchPredictCmd() *cobra.Command {
	var f benchPredictFlags
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "End-to-end predict from an embeddings file at the Herbarium 2020 shape: wall time and peak RSS",
		Long: `Writes (once, into --dir) a prototype file of --classes classes and an embeddings file of --queries
random test embeddings, then runs "protoherb predict --embeddings ... --topk K --topk-out ..." as a
child process and reports its wall time and peak resident memory (the child's own, so generating the
inputs does not count). Defaults: the Herbarium 2020 shape, 32,093 classes (plus one without
images) and 138,292 queries of 512 dimensions. The last line is "predict: X s".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return benchPredict(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "folder for the generated inputs and the outputs, reused when it holds them (default: a temporary folder)")
	fl.IntVar(&f.classes, "classes", 32093, "classes with training images")
	fl.IntVar(&f.queries, "queries", 138292, "test embeddings")
	fl.IntVar(&f.dim, "dim", 512, "embedding dimension")
	fl.IntVar(&f.k, "k", 5, "neighbours kept per test image")
	fl.IntVar(&f.sgemmN, "sgemm", 4096, "after the run, time an n×n SGEMM (and --sgemm-script) for the bound (0: skip)")
	fl.StringVar(&f.sgemmScript, "sgemm-script", "../shared/bench/sgemm.py", "reference SGEMM script run with --python; skipped when absent")
	fl.StringVar(&f.python, "python", "/usr/bin/python3", "Python with numpy and torch for --sgemm-script")
	fl.Uint64Var(&f.seed, "seed", 2020, "random seed of the generated inputs")
	return cmd
}

// benchPredict writes the inputs once, times a child `predict` and prints its wall time, peak RSS
// and share of the SGEMM bound; the last line is `predict: X s`.
func benchPredict(cmd *cobra.Command, f benchPredictFlags) error {
	if f.dir == "" {
		d, err := os.MkdirTemp("", "protoherb-bench-predict-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		f.dir = d
	} else if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("bench predict: --dir: %w", err)
	}
	protos, emb := filepath.Join(f.dir, "protos.safetensors"), filepath.Join(f.dir, "test.safetensors")
	_, e1 := os.Stat(protos)
	_, e2 := os.Stat(emb)
	if e1 != nil || e2 != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "writing %d prototypes and %d queries of %d dimensions into %s\n", f.classes, f.queries, f.dim, f.dir)
		var err error
		if protos, emb, err = proto.GenerateScaleFixture(f.dir, f.classes, f.queries, f.dim, f.seed); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.CommandContext(cmd.Context(), self, "predict", "--prototypes", protos, "--embeddings", emb,
		"--out", filepath.Join(f.dir, "submission.csv"), "--topk", strconv.Itoa(f.k), "--topk-out", filepath.Join(f.dir, "topk.csv"))
	child.Stdout, child.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
	t0 := time.Now()
	if err := child.Run(); err != nil {
		return fmt.Errorf("bench predict: %w", err)
	}
	wall := time.Since(t0)
	rss := int64(0)
	if ru, ok := child.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss // kB on Linux
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "%d queries against %d prototypes, %d-d, top-%d: %.1f s, peak RSS %.0f MB\n", f.queries, f.classes, f.dim, f.k, wall.Seconds(), float64(rss)/1024)
	if f.sgemmN > 0 {
		// The bound: the whole search at the machine's SGEMM rate, measured after the run.
		gf, err := sgemmRate(out, f.sgemmN, f.python, f.sgemmScript, 0)
		if err != nil {
			return err
		}
		bound := 2 * float64(f.queries) * float64(f.classes) * float64(f.dim) / (gf * 1e9)
		fmt.Fprintf(out, "SGEMM bound at %.1f GFLOP/s: %.1f s; predict takes %.2f× the bound\n", gf, bound, wall.Seconds()/bound)
	}
	fmt.Fprintf(out, "predict: %.1f s\n", wall.Seconds())
	return nil
}
