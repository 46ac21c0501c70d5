package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"protoherb/search"
	"protoherb/torch"
)

func newBenchSearchCmd() *cobra.Command {
	var (
		classes, dim, queries, k, repeat int
		qTile, pTile, threads            int
		torchThreads                     int
		pipeline                         bool
		metric                           string
		seed                             uint64
	)
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Exact top-k nearest-prototype search on random vectors: queries/s and GFLOP/s",
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := search.ParseMetric(metric)
			if err != nil {
				return err
			}
			if classes <= 0 || dim <= 0 || queries <= 0 || repeat <= 0 {
				return fmt.Errorf("bench search: --classes, --dim, --queries and --repeat must be positive")
			}
			torch.SetNumThreads(torchThreads)
			rng := rand.New(rand.NewPCG(seed, 1))
			normals := func(n int) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				return x
			}
			protos, q := normals(classes*dim), normals(queries*dim)
			ids := make([]int64, classes)
			for i := range ids {
				ids[i] = int64(i)
			}
			idx := search.NewFlat(dim, m)
			defer idx.Close()
			if err := idx.Add(protos, ids); err != nil {
				return err
			}
			opt := search.Options{QueryTile: qTile, ProtoTile: pTile, Threads: threads, Pipeline: pipeline}
			idx.SetOptions(opt)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "classes=%d dim=%d queries=%d k=%d metric=%s query-tile=%d proto-tile=%d threads=%d pipeline=%v torch-threads=%d\n",
				classes, dim, queries, k, m, qTile, pTile, threads, pipeline, torch.NumThreads())
			// Warm-up on a slice of the queries: builds the libtorch copy and wakes OpenBLAS's threads.
			if _, _, err := idx.Search(cmd.Context(), q[:min(queries, 256)*dim], k); err != nil {
				return err
			}
			flop := 2 * float64(queries) * float64(classes) * float64(dim)
			var rates []float64
			for r := range repeat {
				t0 := time.Now()
				if _, _, err := idx.Search(cmd.Context(), q, k); err != nil {
					return err
				}
				sec := time.Since(t0).Seconds()
				rates = append(rates, float64(queries)/sec)
				fmt.Fprintf(out, "run %d: %.3f s, %.0f queries/s, %.1f GFLOP/s\n", r+1, sec, float64(queries)/sec, flop/sec/1e9)
			}
			slices.Sort(rates)
			med := rates[len(rates)/2]
			fmt.Fprintf(out, "median %.0f queries/s, %.1f GFLOP/s; best %.0f queries/s\n", med, med*flop/float64(queries)/1e9, rates[len(rates)-1])
			fmt.Fprintf(out, "search: %.0f queries/s\n", med)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&classes, "classes", 32093, "number of prototypes")
	f.IntVar(&dim, "dim", 512, "vector dimension")
	f.IntVar(&queries, "queries", 8192, "number of queries")
	f.IntVar(&k, "k", 5, "neighbours per query")
	f.IntVar(&repeat, "repeat", 3, "timed runs (the median is reported)")
	f.IntVar(&qTile, "query-tile", 0, "queries per matrix product (0: default)")
	f.IntVar(&pTile, "proto-tile", 0, "prototypes per matrix product (0: default)")
	f.IntVar(&threads, "threads", 0, "goroutines scanning a tile (0: GOMAXPROCS)")
	f.IntVar(&torchThreads, "torch-threads", 0, "libtorch intra-op threads (0: leave as is); OpenBLAS reads OPENBLAS_NUM_THREADS")
	f.BoolVar(&pipeline, "pipeline", false, "overlap the scan of a tile with the next matrix product")
	f.StringVar(&metric, "metric", "l2", "l2 or cosine")
	f.Uint64Var(&seed, "seed", 1, "random seed")
	return cmd
}
