package search

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// bruteForce is the float64 reference: every distance, sorted by (distance, id).
func bruteForce(protos []float32, ids []int64, queries []float32, dim, k int, m Metric) ([]float64, []int64) {
	n, nq := len(ids), len(queries)/dim
	norm := func(x []float32) []float64 {
		out := make([]float64, len(x))
		var s float64
		for i, v := range x {
			out[i] = float64(v)
			s += float64(v) * float64(v)
		}
		if m == Cosine && s > 0 {
			for i := range out {
				out[i] /= math.Sqrt(s)
			}
		}
		return out
	}
	dist := make([]float64, nq*k)
	out := make([]int64, nq*k)
	type cand struct {
		d  float64
		id int64
	}
	for q := range nq {
		qv := norm(queries[q*dim : (q+1)*dim])
		cs := make([]cand, n)
		for p := range n {
			pv := norm(protos[p*dim : (p+1)*dim])
			var d float64
			for j := range dim {
				if m == L2 {
					d += (qv[j] - pv[j]) * (qv[j] - pv[j])
				} else {
					d -= qv[j] * pv[j]
				}
			}
			if m == Cosine {
				d += 1
			}
			cs[p] = cand{d, ids[p]}
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if a.d != b.d {
				if a.d < b.d {
					return -1
				}
				return 1
			}
			return int(a.id - b.id)
		})
		for i := range k {
			if i < n {
				dist[q*k+i], out[q*k+i] = cs[i].d, cs[i].id
			} else {
				dist[q*k+i], out[q*k+i] = math.Inf(1), -1
			}
		}
	}
	return dist, out
}

// smallInts returns values in {-2..2}: every product and sum is exact in float32, so the index must
// match the reference exactly, ties (plentiful here) included.
func smallInts(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.IntN(5) - 2)
	}
	return x
}

func normals(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

var tilings = []Options{
	{QueryTile: 7, ProtoTile: 5, Threads: 3},
	{QueryTile: 16, ProtoTile: 64, Threads: 2, Pipeline: true},
	{QueryTile: 1000, ProtoTile: 1000, Threads: 1},
	{},
}

func TestExactOnIntegerDataWithTies(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const dim, n, nq = 6, 97, 41
	protos := smallInts(rng, n*dim)
	// Duplicate prototypes under different ids: equal distances, so the smaller id must come first.
	copy(protos[10*dim:11*dim], protos[3*dim:4*dim])
	copy(protos[50*dim:51*dim], protos[3*dim:4*dim])
	queries := smallInts(rng, nq*dim)
	// Ids ascending with position (ties settled by position) and descending (settled by id lookup).
	for _, descending := range []bool{false, true} {
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = int64(1000 + i)
			if descending {
				ids[i] = int64(1000 + n - i)
			}
		}
		exactWithTies(t, protos, ids, queries, dim)
	}
}

func exactWithTies(t *testing.T, protos []float32, ids []int64, queries []float32, dim int) {
	n := len(ids)
	for _, m := range []Metric{L2} { // cosine involves square roots: compared with a tolerance below
		for _, k := range []int{1, 5, 20, n, n + 7} {
			wantD, wantI := bruteForce(protos, ids, queries, dim, k, m)
			for _, o := range tilings {
				idx := NewFlat(dim, m)
				idx.SetOptions(o)
				if err := idx.Add(protos, ids); err != nil {
					t.Fatal(err)
				}
				d, got, err := idx.Search(context.Background(), queries, k)
				idx.Close()
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					if got[i] != wantI[i] || float64(d[i]) != wantD[i] {
						t.Fatalf("%v k=%d %+v: query %d rank %d: got id %d dist %v, want id %d dist %v",
							m, k, o, i/k, i%k, got[i], d[i], wantI[i], wantD[i])
					}
				}
			}
		}
	}
}

// checkClose accepts a different id only where the reference distances are a near-tie.
func checkClose(t *testing.T, what string, k int, d []float32, got []int64, wantD []float64, wantI []int64) {
	t.Helper()
	for i := range got {
		if math.IsInf(wantD[i], 1) {
			if got[i] != -1 || !math.IsInf(float64(d[i]), 1) {
				t.Fatalf("%s: query %d rank %d: got id %d dist %v, want an empty slot", what, i/k, i%k, got[i], d[i])
			}
			continue
		}
		tol := 1e-4 * (1 + math.Abs(wantD[i]))
		if math.Abs(float64(d[i])-wantD[i]) > tol {
			t.Fatalf("%s: query %d rank %d: dist %v, want %v", what, i/k, i%k, d[i], wantD[i])
		}
		if got[i] != wantI[i] {
			// Must be a near-tie: the reference's distance at this rank and the neighbour's agree.
			q := i / k
			found := false
			for j := q * k; j < (q+1)*k; j++ {
				if wantI[j] == got[i] && math.Abs(wantD[j]-wantD[i]) <= tol {
					found = true
				}
			}
			if !found && i%k != k-1 {
				t.Fatalf("%s: query %d rank %d: got id %d, want %d (dist %v)", what, q, i%k, got[i], wantI[i], wantD[i])
			}
		}
	}
}

func TestMatchesReferenceOnRandomData(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const dim, n, nq = 24, 300, 53
	protos := normals(rng, n*dim)
	queries := normals(rng, nq*dim)
	// Scrambled ids: ties and order must follow ids, not insertion positions.
	ids := make([]int64, n)
	for i, p := range rng.Perm(n) {
		ids[i] = int64(p * 3)
	}
	// Exact duplicates under different ids.
	copy(protos[7*dim:8*dim], protos[200*dim:201*dim])
	for _, m := range []Metric{L2, Cosine} {
		for _, k := range []int{1, 5, 32, n + 3} {
			wantD, wantI := bruteForce(protos, ids, queries, dim, k, m)
			for _, o := range tilings {
				idx := NewFlat(dim, m)
				idx.SetOptions(o)
				// Added in two batches to exercise Add appending.
				if err := idx.Add(protos[:100*dim], ids[:100]); err != nil {
					t.Fatal(err)
				}
				if err := idx.Add(protos[100*dim:], ids[100:]); err != nil {
					t.Fatal(err)
				}
				d, got, err := idx.Search(context.Background(), queries, k)
				idx.Close()
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, m.String(), k, d, got, wantD, wantI)
			}
		}
	}
	// The duplicate pair must come out smaller id first when a query sits on it.
	idx := NewFlat(dim, L2)
	defer idx.Close()
	if err := idx.Add(protos, ids); err != nil {
		t.Fatal(err)
	}
	_, got, err := idx.Search(context.Background(), protos[7*dim:8*dim], 2)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := min(ids[7], ids[200]), max(ids[7], ids[200])
	if got[0] != lo || got[1] != hi {
		t.Fatalf("duplicate prototypes: got %v, want [%d %d]", got, lo, hi)
	}
}

func TestCosineExactSelfMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const dim, n = 16, 50
	protos := normals(rng, n*dim)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
	}
	idx := NewFlat(dim, Cosine)
	defer idx.Close()
	if err := idx.Add(protos, ids); err != nil {
		t.Fatal(err)
	}
	// Scaled copies of the prototypes find themselves at distance ~0.
	q := make([]float32, len(protos))
	for i, v := range protos {
		q[i] = 3.5 * v
	}
	d, got, err := idx.Search(context.Background(), q, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got[i] != int64(i) || math.Abs(float64(d[i])) > 1e-5 {
			t.Fatalf("query %d: got id %d dist %v, want itself at 0", i, got[i], d[i])
		}
	}
}

func TestBadInput(t *testing.T) {
	idx := NewFlat(4, L2)
	defer idx.Close()
	if err := idx.Add(make([]float32, 7), []int64{1, 2}); err == nil {
		t.Error("Add with 7 values for 2 ids of dimension 4: no error")
	}
	bad := make([]float32, 8)
	bad[6] = float32(math.NaN())
	err := idx.Add(bad, []int64{10, 11})
	if err == nil || !strings.Contains(err.Error(), "row 1 (id 11)") {
		t.Errorf("Add with NaN in row 1: error %v, want one naming row 1 (id 11)", err)
	}
	if idx.Len() != 0 {
		t.Errorf("failed Add left %d prototypes", idx.Len())
	}
	if err := idx.Add(make([]float32, 8), []int64{10, 11}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := idx.Search(context.Background(), make([]float32, 6), 1); err == nil || !strings.Contains(err.Error(), "dimension 4") {
		t.Errorf("query of the wrong dimension: error %v", err)
	}
	q := make([]float32, 8)
	q[5] = float32(math.Inf(1))
	if _, _, err := idx.Search(context.Background(), q, 1); err == nil || !strings.Contains(err.Error(), "query row 1") {
		t.Errorf("Inf in query row 1: error %v", err)
	}
	if _, _, err := idx.Search(context.Background(), make([]float32, 4), 0); err == nil {
		t.Error("k = 0: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := idx.Search(ctx, make([]float32, 4), 1); err == nil {
		t.Error("cancelled context: no error")
	}
}

func TestEmptyIndex(t *testing.T) {
	idx := NewFlat(3, L2)
	d, ids, err := idx.Search(context.Background(), make([]float32, 6), 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if ids[i] != -1 || !math.IsInf(float64(d[i]), 1) {
			t.Fatalf("empty index: slot %d = (%d, %v), want (-1, +Inf)", i, ids[i], d[i])
		}
	}
}
