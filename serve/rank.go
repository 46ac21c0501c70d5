package serve

import (
	"context"
	"math"
	"slices"
)

// Match is one ranked species.
type Match struct {
	Species
	Distance    float64 `json:"distance"`
	Probability float64 `json:"probability"`
}

// softmaxK is the least number of nearest prototypes the probabilities are normalised over.
const softmaxK = 64

// searchBatch finds the nearest prototypes of n embeddings in one search (one matrix product for
// the whole batch): kk = min(C, max(k, softmaxK)) per query, row-major.
func (s *Server) searchBatch(q []float32, n, k int) (dist []float32, ids []int64, kk int, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.flat.Len()
	if c == 0 {
		return nil, nil, 0, nil
	}
	kk = min(c, max(k, softmaxK))
	q = slices.Clone(q) // the raw embeddings stay for the specimen index
	if err := s.cfg.Store.Transform(q); err != nil {
		return nil, nil, 0, err
	}
	dist, ids, err = s.flat.Search(context.Background(), q, kk)
	return dist, ids, kk, err
}

// matches turns one query's nearest prototypes into the top-k species with probabilities, and
// returns the temperature used.
func (s *Server) matches(dist []float32, ids []int64, k int) ([]Match, float64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := softmax(dist, s.temp)
	out := make([]Match, 0, min(k, len(ids)))
	for i := range min(k, len(ids)) {
		if ids[i] < 0 {
			break
		}
		out = append(out, Match{Species: s.species[ids[i]], Distance: float64(dist[i]), Probability: p[i]})
	}
	return out, s.temp
}

// softmax returns softmax(−d/T) (+Inf entries get 0).
func softmax(d []float32, t float64) []float64 {
	p := make([]float64, len(d))
	if len(d) == 0 {
		return p
	}
	lo := math.Inf(1)
	for _, x := range d {
		lo = min(lo, float64(x))
	}
	var z float64
	for i, x := range d {
		if math.IsInf(float64(x), 1) {
			continue
		}
		p[i] = math.Exp(-(float64(x) - lo) / t)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

// calibrate chooses the temperature (see the package comment).
func (s *Server) calibrate() (float64, string) {
	x := s.cfg.Index
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.flat.Len()
	if n < 2 {
		return 1, "default (fewer than two species)"
	}
	if x != nil && x.Len() > 0 {
		if t, ok := s.fitTemperature(x); ok {
			return t, "fitted on the specimen index"
		}
	}
	// Median distance from each prototype to its nearest other prototype, over ln 20.
	vec, ids := s.cfg.Store.Prototypes()
	d := s.cfg.Store.Dim()
	m := min(len(ids), 4096)
	nn := make([]float64, 0, m)
	for i := range m {
		row := i * len(ids) / m
		dist, got, err := s.flat.Search(context.Background(), vec[row*d:(row+1)*d], 2)
		if err != nil {
			continue
		}
		for j := range 2 {
			if got[j] != ids[row] && got[j] >= 0 {
				nn = append(nn, float64(dist[j]))
				break
			}
		}
	}
	if len(nn) == 0 {
		return 1, "default"
	}
	slices.Sort(nn)
	med := nn[len(nn)/2]
	if med <= 0 {
		return 1, "default (prototypes coincide)"
	}
	return med / math.Log(20), "median nearest-prototype distance / ln 20"
}

// fitTemperature minimises the negative log-likelihood of the index's labels over log T. The
// index holds the specimens the prototypes were made from, so each specimen is scored against its
// class's leave-one-out prototype ((n·p − x)/(n − 1)); otherwise the fit would see every specimen
// inside its own prototype and choose an overconfident T. Classes with one specimen are skipped.
// The leave-one-out prototype is taken in the prototypes' space: exact for plain class means,
// an approximation with centering or shrinkage.
func (s *Server) fitTemperature(x *Index) (float64, bool) {
	n := s.flat.Len()
	kk := min(n, softmaxK)
	m := min(x.Len(), 4096)
	vec, ids := s.cfg.Store.Prototypes()
	rowOf := make(map[int64]int, len(ids))
	for i, id := range ids {
		rowOf[id] = i
	}
	type row struct {
		d    []float32
		true int // position of the true class
	}
	var rows []row
	var scale []float64
	loo := make([]float32, x.dim)
	for i := range m {
		r := i * x.Len() / m
		c := x.labels[r]
		sp, ok := s.species[c]
		if !ok || sp.Count < 2 {
			continue
		}
		q := slices.Clone(x.emb[r*x.dim : (r+1)*x.dim])
		if s.cfg.Store.Transform(q) != nil {
			continue
		}
		dist, got, err := s.flat.Search(context.Background(), q, kk)
		if err != nil {
			continue
		}
		p := vec[rowOf[c]*x.dim : (rowOf[c]+1)*x.dim]
		nc := float32(sp.Count)
		for j := range loo {
			loo[j] = (nc*p[j] - q[j]) / (nc - 1)
		}
		own := float32(sqDist(q, loo))
		pos := slices.Index(got, c)
		if pos < 0 {
			dist = append(dist, own)
			pos = len(dist) - 1
		} else {
			dist[pos] = own
		}
		rows = append(rows, row{d: dist, true: pos})
		sorted := slices.Clone(dist)
		slices.Sort(sorted)
		if len(sorted) > 1 {
			scale = append(scale, float64(sorted[1]-sorted[0]))
		}
	}
	if len(rows) < 2 || len(scale) == 0 {
		return 0, false
	}
	slices.Sort(scale)
	base := scale[len(scale)/2]
	if base <= 0 {
		base = 1
	}
	nll := func(t float64) float64 {
		var sum float64
		for _, r := range rows {
			p := softmax(r.d, t)
			sum -= math.Log(max(p[r.true], 1e-300))
		}
		return sum
	}
	// Grid over log T from base/1000 to base·1000, then golden-section refinement.
	bestI, bestV := 0, math.Inf(1)
	const steps = 61
	at := func(i float64) float64 { return base * math.Pow(10, -3+6*i/(steps-1)) }
	for i := range steps {
		if v := nll(at(float64(i))); v < bestV {
			bestI, bestV = i, v
		}
	}
	a, b := math.Log(at(float64(max(bestI-1, 0)))), math.Log(at(float64(min(bestI+1, steps-1))))
	g := (math.Sqrt(5) - 1) / 2
	for range 40 {
		c, d := b-g*(b-a), a+g*(b-a)
		if nll(math.Exp(c)) < nll(math.Exp(d)) {
			b = d
		} else {
			a = c
		}
	}
	return math.Exp((a + b) / 2), true
}

// sqDist is the squared L2 distance.
func sqDist(a, b []float32) float64 {
	var d float64
	for i := range a {
		e := float64(a[i] - b[i])
		d += e * e
	}
	return d
}
