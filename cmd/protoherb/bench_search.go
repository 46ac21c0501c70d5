package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"protoherb/search"
	"protoherb/torch"
)

// benchSearchConfig is what `bench search` measures.
type benchSearchConfig struct {
	classes, dim, queries, k, rounds int
	opt                              search.Options
	torchThreads                     int
	metric                           string
	seed                             uint64
	quietWait                        time.Duration
	sgemmN                           int
	sgemmScript, python              string
	tries                            int
}

func newBenchSearchCmd() *cobra.Command {
	var c benchSearchConfig
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Exact top-k nearest-prototype search on random vectors: queries/s and GFLOP/s against the SGEMM bound",
		Long: `Exact top-k nearest-prototype search on random vectors: queries/s and GFLOP/s.

Each round times one search of every query and then, in the same process, one n×n SGEMM through
libtorch's addmm (the system BLAS) and one through oneDNN's sgemm (the search's product, where
libtorch loads it), taking the faster as the bound: the ratio of the search to it in a round is the
share of the machine's SGEMM rate the search reaches, paired so that a shared machine's swings hit
both sides. The median round is reported, then the bound again with numpy's and PyTorch's SGEMM
(--sgemm-script).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return benchSearch(cmd, c)
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.classes, "classes", 32093, "number of prototypes")
	f.IntVar(&c.dim, "dim", 512, "vector dimension")
	f.IntVar(&c.queries, "queries", 8192, "number of queries")
	f.IntVar(&c.k, "k", 5, "neighbours per query")
	f.IntVar(&c.rounds, "repeat", 3, "rounds of one search and one SGEMM (the median is reported)")
	f.IntVar(&c.opt.QueryTile, "query-tile", 0, "queries per matrix product (0: default)")
	f.IntVar(&c.opt.ProtoTile, "proto-tile", 0, "prototypes per matrix product (0: default)")
	f.IntVar(&c.opt.Threads, "search-threads", 0, "goroutines scanning a tile (0: GOMAXPROCS)")
	f.IntVar(&c.torchThreads, "threads", 0, "libtorch intra-op threads, as on every command (0: leave as is); OpenBLAS reads OPENBLAS_NUM_THREADS")
	f.BoolVar(&c.opt.Pipeline, "pipeline", false, "overlap the scan of a tile with the next matrix product")
	f.StringVar(&c.metric, "metric", "l2", "l2 or cosine")
	f.Uint64Var(&c.seed, "seed", 1, "random seed")
	f.DurationVar(&c.quietWait, "quiet-wait", 30*time.Second, "before each run, wait up to this long for other processes to use under 8% of the CPUs")
	f.IntVar(&c.sgemmN, "sgemm", 4096, "n of the n×n SGEMM timed in every round and by --sgemm-script, for the bound (0: skip)")
	f.StringVar(&c.sgemmScript, "sgemm-script", "../shared/bench/sgemm.py", "reference SGEMM script run with --python (numpy and PyTorch); skipped when absent")
	f.StringVar(&c.python, "python", "/usr/bin/python3", "Python with numpy and torch for --sgemm-script")
	f.IntVar(&c.tries, "tries", 2, "measure a search up to this many times while other load exceeds 5%, keeping the cleanest")
	return cmd
}

// benchSearch runs the rounds and prints the figures; the last line is `search: X queries/s`.
func benchSearch(cmd *cobra.Command, c benchSearchConfig) error {
	m, err := search.ParseMetric(c.metric)
	if err != nil {
		return err
	}
	if c.classes <= 0 || c.dim <= 0 || c.queries <= 0 || c.rounds <= 0 {
		return fmt.Errorf("bench search: --classes, --dim, --queries and --repeat must be positive")
	}
	torch.SetNumThreads(c.torchThreads)
	rng := rand.New(rand.NewPCG(c.seed, 1))
	protos, q := randomNormals(rng, c.classes*c.dim), randomNormals(rng, c.queries*c.dim)
	ids := make([]int64, c.classes)
	for i := range ids {
		ids[i] = int64(i)
	}
	idx := search.NewFlat(c.dim, m)
	defer idx.Close()
	if err := idx.Add(protos, ids); err != nil {
		return err
	}
	idx.SetOptions(c.opt)
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "classes=%d dim=%d queries=%d k=%d metric=%s query-tile=%d proto-tile=%d threads=%d pipeline=%v torch-threads=%d\n",
		c.classes, c.dim, c.queries, c.k, m, c.opt.QueryTile, c.opt.ProtoTile, c.opt.Threads, c.opt.Pipeline, torch.NumThreads())
	// Warm-up on a slice of the queries: builds the libtorch copy and wakes OpenBLAS's threads.
	if _, _, err := idx.Search(cmd.Context(), q[:min(c.queries, 256)*c.dim], c.k); err != nil {
		return err
	}
	var mm *sgemmTimer
	if c.sgemmN > 0 {
		if mm, err = newSGEMMTimer(c.sgemmN); err != nil {
			return err
		}
		defer mm.close()
	}
	flop := 2 * float64(c.queries) * float64(c.classes) * float64(c.dim)
	fmt.Fprintf(out, "load average before: %s\n", loadAvg())
	var rates, gemm, shares []float64
	var res searchRun
	for r := range c.rounds {
		if res, err = timeSearch(cmd, idx, q, c); err != nil {
			return err
		}
		rates = append(rates, float64(c.queries)/res.sec)
		line := fmt.Sprintf("round %d: search %.3f s, %.0f queries/s, %.1f GFLOP/s (products %.3f s, scans %.3f s, %d tiles) [foreign %.0f%%]",
			r+1, res.sec, float64(c.queries)/res.sec, flop/res.sec/1e9, res.st.Product.Seconds(), res.st.Scan.Seconds(), res.st.Tiles, res.foreign*100)
		if mm != nil {
			addmm, direct, err := mm.rates()
			if err != nil {
				return err
			}
			gf := max(addmm, direct)
			gemm = append(gemm, gf)
			shares = append(shares, flop/res.sec/1e9/gf)
			line += fmt.Sprintf("; SGEMM %d³ %.1f GFLOP/s (addmm), %.1f (%s): search at %.1f%% of the faster",
				c.sgemmN, addmm, direct, torch.GemmEngine(), 100*shares[len(shares)-1])
		}
		fmt.Fprintln(out, line)
	}
	if err := spotCheck(protos, q, c.dim, c.k, m, res.dist, res.ids); err != nil {
		return err
	}
	med := median(rates)
	fmt.Fprintf(out, "median %.0f queries/s, %.1f GFLOP/s; best %.0f queries/s; load average after: %s\n",
		med, med*flop/float64(c.queries)/1e9, slices.Max(rates), loadAvg())
	if mm != nil {
		reportSearchBound(out, c, flop, med, median(gemm), median(shares))
	}
	fmt.Fprintf(out, "search: %.0f queries/s\n", med)
	return nil
}

// reportSearchBound prints the share of the SGEMM bound the search reached: paired within rounds
// (the faster of libtorch's addmm and GemmNT, same process), and against the best of that and
// numpy's and PyTorch's SGEMM.
func reportSearchBound(out io.Writer, c benchSearchConfig, flop, med, gemm, share float64) {
	perQuery := flop / float64(c.queries)
	fmt.Fprintf(out, "SGEMM %d³ in this process (the faster of addmm and %s), median of the rounds: %.1f GFLOP/s (bound %.0f queries/s); search / SGEMM in the same round, median: %.1f%%\n",
		c.sgemmN, torch.GemmEngine(), gemm, gemm*1e9/perQuery, 100*share)
	best := gemm
	if ref, err := referenceSGEMM(out, c.python, c.sgemmScript, 2, c.sgemmN, c.quietWait); err != nil {
		fmt.Fprintf(out, "# reference SGEMM skipped: %v\n", err)
	} else if ref > best {
		best = ref
	}
	bound := best * 1e9 / perQuery
	fmt.Fprintf(out, "SGEMM bound at %.1f GFLOP/s (the best of the above): %.0f queries/s; search reaches %.1f%% of it\n",
		best, bound, 100*med/bound)
}

// searchRun is one timed search: the cleanest of its tries.
type searchRun struct {
	sec, foreign float64
	st           search.Stats
	dist         []float32
	ids          []int64
}

// timeSearch times one search of every query. It waits for a quiet machine and retries (keeping
// the cleanest) while other processes use more than 5% of the CPUs: the machine is shared.
func timeSearch(cmd *cobra.Command, idx *search.Flat, q []float32, c benchSearchConfig) (searchRun, error) {
	best := searchRun{foreign: 2}
	for range max(c.tries, 1) {
		waitQuiet(c.quietWait)
		var run searchRun
		opt := c.opt
		opt.Stats = &run.st
		idx.SetOptions(opt)
		b0, a0 := procStat()
		own0 := ownCPU()
		t0 := time.Now()
		var err error
		if run.dist, run.ids, err = idx.Search(cmd.Context(), q, c.k); err != nil {
			return run, err
		}
		run.sec = time.Since(t0).Seconds()
		b1, a1 := procStat()
		if a1 > a0 {
			run.foreign = max(0, (float64(b1-b0)-(ownCPU()-own0)*clkTck)/float64(a1-a0))
		}
		if run.foreign < best.foreign {
			best = run
		}
		if run.foreign <= 0.05 {
			break
		}
	}
	return best, nil
}

func randomNormals(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
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

// sgemmRate is the machine's SGEMM rate now, in GFLOP/s: the best of libtorch's addmm and GemmNT
// on n×n matrices in this process and, when the script is there, numpy's and PyTorch's (sgemm.py).
func sgemmRate(out io.Writer, n int, python, script string, quietWait time.Duration) (float64, error) {
	gf, err := sgemmGFLOPs(n)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "SGEMM %d×%d in this process (the faster of libtorch addmm and %s): %.1f GFLOP/s\n", n, n, torch.GemmEngine(), gf)
	if ref, err := referenceSGEMM(out, python, script, 2, n, quietWait); err != nil {
		fmt.Fprintf(out, "# reference SGEMM skipped: %v\n", err)
	} else {
		gf = max(gf, ref)
	}
	return gf, nil
}

// sgemmGFLOPs times C = A·B for n×n float32 matrices through libtorch's addmm and through GemmNT
// (the call the search makes): the median of 3 after a warm-up of the faster, in GFLOP/s.
func sgemmGFLOPs(n int) (float64, error) {
	t, err := newSGEMMTimer(n)
	if err != nil {
		return 0, err
	}
	defer t.close()
	var gs []float64
	for range 3 {
		addmm, direct, err := t.rates()
		if err != nil {
			return 0, err
		}
		gs = append(gs, max(addmm, direct))
	}
	return median(gs), nil
}

// sgemmTimer holds n×n float32 matrices for timing libtorch's addmm and GemmNT, warmed up once.
type sgemmTimer struct {
	n       int
	s       *torch.Scope
	a, b, c *torch.Tensor
}

func newSGEMMTimer(n int) (*sgemmTimer, error) {
	s := torch.NewScope()
	t := &sgemmTimer{n: n, s: s,
		a: torch.Randn(s, torch.Float32, torch.CPU, int64(n), int64(n)),
		b: torch.Randn(s, torch.Float32, torch.CPU, int64(n), int64(n)),
		c: torch.Zeros(s, torch.Float32, torch.CPU, int64(n), int64(n))}
	if _, _, err := t.rates(); err != nil {
		s.Close()
		return nil, err
	}
	return t, nil
}

// rates times one product through libtorch's addmm (the system BLAS) and one through GemmNT (oneDNN
// where libtorch loads it), in GFLOP/s.
func (t *sgemmTimer) rates() (addmm, direct float64, err error) {
	n := float64(t.n)
	flop := 2 * n * n * n / 1e9
	t0 := time.Now()
	if err := torch.AddmmOut(t.c, t.c, t.a, t.b, 0, 1); err != nil {
		return 0, 0, fmt.Errorf("sgemm: %w", err)
	}
	t1 := time.Now()
	if err := torch.GemmNT(t.c, t.a, t.b, 1); err != nil {
		return 0, 0, fmt.Errorf("sgemm: %w", err)
	}
	return flop / t1.Sub(t0).Seconds(), flop / time.Since(t1).Seconds(), nil
}

func (t *sgemmTimer) close() { t.s.Close() }

// referenceSGEMM runs shared/bench/sgemm.py (numpy's and PyTorch's SGEMM, OPENBLAS threads) and
// returns the best GFLOP/s it prints.
func referenceSGEMM(out io.Writer, python, script string, threads, n int, quietWait time.Duration) (float64, error) {
	if python == "" || script == "" {
		return 0, fmt.Errorf("no --python or --sgemm-script")
	}
	if _, err := os.Stat(script); err != nil {
		return 0, fmt.Errorf("%s not found", script)
	}
	c := exec.Command(python, script, "openblas", strconv.Itoa(threads), strconv.Itoa(n))
	c.Env = append(os.Environ(), "TRIES=1", fmt.Sprintf("QUIET_MAX_WAIT=%d", int(quietWait.Seconds())))
	b, err := c.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", script, err, strings.TrimSpace(string(b)))
	}
	best := 0.0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fmt.Fprintf(out, "#   %s\n", l)
		if _, rest, ok := strings.Cut(l, " = "); ok {
			if v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64); err == nil {
				best = max(best, v)
			}
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("%s printed no GFLOP/s figure", script)
	}
	return best, nil
}
