package main

import (
	"fmt"
	"math"
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
		quietWait                        time.Duration
		tries                            int
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
			fmt.Fprintf(out, "load average before: %s\n", loadAvg())
			var rates []float64
			var dist []float32
			var got []int64
			for r := range repeat {
				// Each run waits for a quiet machine and is retried (keeping the cleanest) while other
				// processes use more than 5% of the CPUs: the machine is shared.
				var best struct {
					sec, foreign float64
					st           search.Stats
				}
				best.foreign = 2
				for try := 0; try < tries; try++ {
					waitQuiet(quietWait)
					var st search.Stats
					opt.Stats = &st
					idx.SetOptions(opt)
					b0, a0 := procStat()
					own0 := ownCPU()
					t0 := time.Now()
					if dist, got, err = idx.Search(cmd.Context(), q, k); err != nil {
						return err
					}
					sec := time.Since(t0).Seconds()
					b1, a1 := procStat()
					foreign := 0.0
					if a1 > a0 {
						foreign = max(0, (float64(b1-b0)-(ownCPU()-own0)*clkTck)/float64(a1-a0))
					}
					if foreign < best.foreign {
						best.sec, best.foreign, best.st = sec, foreign, st
					}
					if foreign <= 0.05 {
						break
					}
				}
				sec, st := best.sec, best.st
				rates = append(rates, float64(queries)/sec)
				fmt.Fprintf(out, "run %d: %.3f s, %.0f queries/s, %.1f GFLOP/s (products %.3f s, scans %.3f s, %d tiles) [foreign %.0f%%]\n",
					r+1, sec, float64(queries)/sec, flop/sec/1e9, st.Product.Seconds(), st.Scan.Seconds(), st.Tiles, best.foreign*100)
			}
			if err := spotCheck(protos, q, dim, k, m, dist, got); err != nil {
				return err
			}
			slices.Sort(rates)
			med := rates[len(rates)/2]
			fmt.Fprintf(out, "median %.0f queries/s, %.1f GFLOP/s; best %.0f queries/s; load average after: %s\n",
				med, med*flop/float64(queries)/1e9, rates[len(rates)-1], loadAvg())
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
	f.DurationVar(&quietWait, "quiet-wait", 30*time.Second, "before each run, wait up to this long for other processes to use under 8% of the CPUs")
	f.IntVar(&tries, "tries", 2, "measure a run up to this many times while other load exceeds 5%, keeping the cleanest")
	return cmd
}

// spotCheck compares the first queries' top-1 with a float64 brute force, so a benchmark never reports
// the speed of a wrong answer.
func spotCheck(protos, q []float32, dim, k int, m search.Metric, dist []float32, got []int64) error {
	n := len(protos) / dim
	norm := func(x []float32) float64 {
		if m != search.Cosine {
			return 1
		}
		var s float64
		for _, v := range x {
			s += float64(v) * float64(v)
		}
		return math.Sqrt(s)
	}
	for i := range min(8, len(q)/dim) {
		qi := q[i*dim : (i+1)*dim]
		qn := norm(qi)
		bestD, bestJ := math.Inf(1), -1
		for j := range n {
			pj := protos[j*dim : (j+1)*dim]
			pn := norm(pj)
			var d float64
			for c := range dim {
				a, b := float64(qi[c])/qn, float64(pj[c])/pn
				if m == search.Cosine {
					d -= a * b
				} else {
					d += (a - b) * (a - b)
				}
			}
			if m == search.Cosine {
				d++
			}
			if d < bestD {
				bestD, bestJ = d, j
			}
		}
		if got[i*k] != int64(bestJ) && math.Abs(float64(dist[i*k])-bestD) > 1e-4*(1+bestD) {
			return fmt.Errorf("bench search: query %d: nearest is %d at %.6g, brute force says %d at %.6g", i, got[i*k], dist[i*k], bestJ, bestD)
		}
	}
	return nil
}
