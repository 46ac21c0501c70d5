// Package search finds the exact k nearest prototypes of query vectors (squared L2 or cosine, float32)
// with blocked matrix products, as FAISS's IndexFlat does, in memory bounded by the tiles.
//
// # How
//
// Queries and prototypes are cut into tiles. For each query tile and each prototype tile one matrix
// product (torch.GemmNT: oneDNN's sgemm where libtorch loads it, ~10 % faster than the system
// OpenBLAS at K of a few hundred, else libtorch's addmm; beta 0, so the buffer is written without
// being read) writes −2 q·p (L2) or −q̂·p̂ (cosine) into a preallocated tile buffer; the scan adds
// the prototype's bias (|p|², or 1) to get the ranking score:
//
//	L2:     s = |p|² − 2 q·p         (reported distance s + |q|², clamped at 0)
//	Cosine: s = 1 − q̂·p̂              (reported distance s; vectors normalised to unit length)
//
// Goroutines then scan the tile, each over its own query rows, against a running per-query top-k:
// blocks of 32 scores are compared with the current k-th best at once (vectorised C), and only a
// block holding a candidate is walked score by score, inserting those that pass. Memory is the
// prototypes, one or two tile buffers and the k results per query; no N_queries × N_prototypes
// matrix is ever formed.
//
// Results are ordered by increasing distance; equal distances are ordered by increasing id. When k
// exceeds the number of prototypes the missing slots have id -1 and distance +Inf (as in FAISS).
package search

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"protoherb/torch"
)

// Metric is the distance the index ranks by.
type Metric int

const (
	// L2 is the squared Euclidean distance.
	L2 Metric = iota
	// Cosine is the cosine distance 1 − cos(q, p). Vectors are normalised to unit length when added
	// or searched; an all-zero vector stays zero (cosine 0 with everything, distance 1).
	Cosine
)

func (m Metric) String() string {
	switch m {
	case L2:
		return "l2"
	case Cosine:
		return "cosine"
	}
	return fmt.Sprintf("metric(%d)", int(m))
}

// ParseMetric parses "l2" (also "euclidean", train's --distance name) or "cosine": one vocabulary
// for training and search.
func ParseMetric(s string) (Metric, error) {
	switch s {
	case "l2", "L2", "euclidean":
		return L2, nil
	case "cosine", "cos":
		return Cosine, nil
	}
	return L2, fmt.Errorf("metric %q: want l2 (euclidean) or cosine", s)
}

// Options tune a search. The zero value picks the defaults.
type Options struct {
	// QueryTile is the number of queries per matrix product (default 4096). With ProtoTile it sets
	// the tile buffer (4096 × 4096 floats, 64 MB, the default): at the Herbarium shape these tiles
	// ran predict's search 5–10 % faster than 1024 × 4096 in alternating runs, for ~50 MB more.
	QueryTile int
	// ProtoTile is the number of prototypes per matrix product (default 4096).
	ProtoTile int
	// Threads is the number of goroutines that scan a tile (default GOMAXPROCS). The matrix
	// products use libtorch's intra-op threads (oneDNN's OpenMP team; OpenBLAS's own threads,
	// OPENBLAS_NUM_THREADS, on the addmm path).
	Threads int
	// Pipeline overlaps the scan of one tile with the matrix product of the next (two tile buffers).
	Pipeline bool
	// Stats, when not nil, accumulates where a search spent its time (for benchmarks).
	Stats *Stats
}

// Stats is the time a search spent in matrix products and in scans (wall clock, on the goroutine that
// drives the search; with Pipeline the scans overlap the products and only the waits are counted).
type Stats struct {
	Product, Scan time.Duration
	Tiles         int
}

func (o Options) withDefaults() Options {
	if o.QueryTile <= 0 {
		o.QueryTile = 4096
	}
	if o.ProtoTile <= 0 {
		o.ProtoTile = 4096
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	return o
}

// Flat is an exact index: it stores every prototype and compares every query with all of them.
// Add must not run concurrently with other methods; Search may run concurrently with Search.
type Flat struct {
	dim    int
	metric Metric
	opt    Options
	vecs   []float32 // n × dim, normalised for Cosine
	ids    []int64
	sorted bool // ids ascend with position, so position order is id order

	mu     sync.Mutex
	protos *torch.Tensor // [n, dim], built on first Search after an Add
	bias   []float32     // per prototype, added by the scan: |p|² for L2, 1 for Cosine
}

// NewFlat returns an empty index of dim-dimensional vectors.
func NewFlat(dim int, metric Metric) *Flat {
	return &Flat{dim: dim, metric: metric, sorted: true}
}

// SetOptions sets the tile sizes and threads used by later searches.
func (f *Flat) SetOptions(o Options) { f.opt = o }

// Dim returns the vector dimension.
func (f *Flat) Dim() int { return f.dim }

// Metric returns the metric the index ranks by.
func (f *Flat) Metric() Metric { return f.metric }

// Len returns the number of prototypes.
func (f *Flat) Len() int { return len(f.ids) }

// IDs returns the prototype ids in insertion order (not a copy: do not modify).
func (f *Flat) IDs() []int64 { return f.ids }

// Add appends prototypes: vectors holds len(ids) rows of Dim values. Non-finite values are an error
// naming the row and id, and nothing is added.
func (f *Flat) Add(vectors []float32, ids []int64) error {
	if f.dim <= 0 {
		return fmt.Errorf("search: index dimension %d must be positive", f.dim)
	}
	if len(vectors) != len(ids)*f.dim {
		return fmt.Errorf("search: add: %d values for %d ids of dimension %d (want %d values)",
			len(vectors), len(ids), f.dim, len(ids)*f.dim)
	}
	if r, j := firstNonFinite(vectors, f.dim); r >= 0 {
		return fmt.Errorf("search: add: prototype row %d (id %d) has a non-finite value at column %d", r, ids[r], j)
	}
	start := len(f.vecs)
	f.vecs = append(f.vecs, vectors...)
	if f.metric == Cosine {
		normalizeRows(f.vecs[start:], f.dim)
	}
	for _, id := range ids {
		if n := len(f.ids); n > 0 && f.ids[n-1] >= id {
			f.sorted = false
		}
		f.ids = append(f.ids, id)
	}
	f.mu.Lock()
	f.dropTensors()
	f.mu.Unlock()
	return nil
}

// Close frees the libtorch copy of the prototypes (rebuilt by the next Search). It is idempotent.
func (f *Flat) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropTensors()
}

func (f *Flat) dropTensors() {
	f.protos.Free()
	f.protos, f.bias = nil, nil
}

// tensors returns the prototypes as a libtorch tensor and the bias of each, building them once.
func (f *Flat) tensors() (*torch.Tensor, []float32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.protos != nil {
		return f.protos, f.bias, nil
	}
	n := len(f.ids)
	b := make([]float32, n)
	for i := range n {
		if f.metric == Cosine {
			b[i] = 1
			continue
		}
		var s float32
		for _, v := range f.vecs[i*f.dim : (i+1)*f.dim] {
			s += v * v
		}
		b[i] = s
	}
	p := torch.FromFloat32(nil, f.vecs, int64(n), int64(f.dim))
	if err := p.Err(); err != nil {
		return nil, nil, fmt.Errorf("search: copy prototypes to libtorch: %w", err)
	}
	f.protos, f.bias = p, b
	return p, b, nil
}

// Search returns the k nearest prototypes of each query (queries holds nq rows of Dim values):
// dist and ids have nq·k entries, row-major, nearest first.
func (f *Flat) Search(ctx context.Context, queries []float32, k int) (dist []float32, ids []int64, err error) {
	if k <= 0 {
		return nil, nil, fmt.Errorf("search: k = %d, want at least 1", k)
	}
	if f.dim <= 0 || len(queries)%f.dim != 0 {
		return nil, nil, fmt.Errorf("search: %d query values are not whole vectors of the index dimension %d", len(queries), f.dim)
	}
	if r, j := firstNonFinite(queries, f.dim); r >= 0 {
		return nil, nil, fmt.Errorf("search: query row %d has a non-finite value at column %d", r, j)
	}
	nq := len(queries) / f.dim
	dist = make([]float32, nq*k)
	ids = make([]int64, nq*k)
	for i := range dist {
		dist[i] = float32(math.Inf(1))
		ids[i] = -1
	}
	if nq == 0 || len(f.ids) == 0 {
		return dist, ids, nil
	}
	protos, bias, err := f.tensors()
	if err != nil {
		return nil, nil, err
	}
	s := &searcher{f: f, opt: f.opt.withDefaults(), k: k, nq: nq, dist: dist, idx: make([]int32, nq*k), cnt: make([]int32, nq), bias: bias}
	if err := s.run(ctx, queries, protos); err != nil {
		return nil, nil, err
	}
	s.finish(queries, ids)
	return dist, ids, nil
}

// firstNonFinite returns the row and column of the first NaN or Inf, or -1, -1.
func firstNonFinite(x []float32, dim int) (int, int) {
	for i, v := range x {
		if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
			return i / dim, i % dim
		}
	}
	return -1, -1
}

// normalizeRows scales each row to unit L2 norm (in float64); zero rows stay zero.
func normalizeRows(x []float32, dim int) {
	for r := 0; r+dim <= len(x); r += dim {
		row := x[r : r+dim]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		if s == 0 {
			continue
		}
		inv := 1 / math.Sqrt(s)
		for j, v := range row {
			row[j] = float32(float64(v) * inv)
		}
	}
}
