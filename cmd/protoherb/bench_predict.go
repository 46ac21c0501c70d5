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

func newBenchPredictCmd() *cobra.Command {
	var (
		dir                   string
		classes, queries, dim int
		k                     int
		seed                  uint64
		sgemmN                int
		sgemmScript, python   string
	)
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "End-to-end predict from an embeddings file at the Herbarium 2020 shape: wall time and peak RSS",
		Long: `Writes (once, into --dir) a prototype file of --classes classes and an embeddings file of --queries
random test embeddings, then runs "protoherb predict --embeddings ... --topk K --topk-out ..." as a
child process and reports its wall time and peak resident memory (the child's own, so generating the
inputs does not count). Defaults: the Herbarium 2020 shape, 32,093 classes (plus one without
images) and 138,292 queries of 512 dimensions. The last line is "predict: X s".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				d, err := os.MkdirTemp("", "protoherb-bench-predict-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			} else if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("bench predict: --dir: %w", err)
			}
			protos, emb := filepath.Join(dir, "protos.safetensors"), filepath.Join(dir, "test.safetensors")
			_, e1 := os.Stat(protos)
			_, e2 := os.Stat(emb)
			if e1 != nil || e2 != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "writing %d prototypes and %d queries of %d dimensions into %s\n", classes, queries, dim, dir)
				var err error
				if protos, emb, err = proto.GenerateScaleFixture(dir, classes, queries, dim, seed); err != nil {
					return err
				}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			child := exec.CommandContext(cmd.Context(), self, "predict", "--prototypes", protos, "--embeddings", emb,
				"--out", filepath.Join(dir, "submission.csv"), "--topk", strconv.Itoa(k), "--topk-out", filepath.Join(dir, "topk.csv"))
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
			fmt.Fprintf(out, "%d queries against %d prototypes, %d-d, top-%d: %.1f s, peak RSS %.0f MB\n", queries, classes, dim, k, wall.Seconds(), float64(rss)/1024)
			if sgemmN > 0 {
				// The bound: the whole search at the machine's SGEMM rate, measured after the run.
				gf, err := sgemmRate(out, sgemmN, python, sgemmScript, 0)
				if err != nil {
					return err
				}
				bound := 2 * float64(queries) * float64(classes) * float64(dim) / (gf * 1e9)
				fmt.Fprintf(out, "SGEMM bound at %.1f GFLOP/s: %.1f s; predict takes %.2f× the bound\n", gf, bound, wall.Seconds()/bound)
			}
			fmt.Fprintf(out, "predict: %.1f s\n", wall.Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "folder for the generated inputs and the outputs, reused when it holds them (default: a temporary folder)")
	f.IntVar(&classes, "classes", 32093, "classes with training images")
	f.IntVar(&queries, "queries", 138292, "test embeddings")
	f.IntVar(&dim, "dim", 512, "embedding dimension")
	f.IntVar(&k, "k", 5, "neighbours kept per test image")
	f.IntVar(&sgemmN, "sgemm", 4096, "after the run, time an n×n SGEMM (and --sgemm-script) for the bound (0: skip)")
	f.StringVar(&sgemmScript, "sgemm-script", "../shared/bench/sgemm.py", "reference SGEMM script run with --python; skipped when absent")
	f.StringVar(&python, "python", "/usr/bin/python3", "Python with numpy and torch for --sgemm-script")
	f.Uint64Var(&seed, "seed", 2020, "random seed of the generated inputs")
	return cmd
}
