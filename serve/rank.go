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

// rank returns the k nearest species of one embedding with calibrated probabilities.
func (s *Server) rank(ctx context.Context, q []float32, k int) ([]Match, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.flat.Len()
	if n == 0 {
		return []Match{}, nil
	}
	kk := min(n, max(k, softmaxK))
	dist, ids, err := s.flat.Search(ctx, q, kk)
	if err != nil {
		return nil, err
	}
	p := softmax(dist, s.temp)
	out := make([]Match, 0, min(k, kk))
	for i := range min(k, kk) {
		if ids[i] < 0 {
			break
		}
		out = append(out, Match{Species: s.species[ids[i]], Distance: float64(dist[i]), Probability: p[i]})
	}
	return out, nil
}

// softmax returns softmax(−d/T) (d ascending; +Inf entries get 0).
func softmax(d []float32, t float64) []float64 {
	p := make([]float64, len(d))
	if len(d) == 0 {
		return p
	}
	lo := float64(d[0])
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

// fitTemperature minimises the negative log-likelihood of the index's labels over log T.
func (s *Server) fitTemperature(x *Index) (float64, bool) {
	n := s.flat.Len()
	kk := min(n, softmaxK)
	m := min(x.Len(), 4096)
	type row struct {
		d    []float32
		true int // position of the true class among the kk nearest, -1 when absent
	}
	var rows []row
	var scale []float64
	for i := range m {
		r := i * x.Len() / m
		if _, ok := s.species[x.labels[r]]; !ok {
			continue
		}
		dist, ids, err := s.flat.Search(context.Background(), x.emb[r*x.dim:(r+1)*x.dim], kk)
		if err != nil {
			continue
		}
		pos := slices.Index(ids, x.labels[r])
		rows = append(rows, row{d: dist, true: pos})
		if len(dist) > 1 {
			scale = append(scale, float64(dist[1]-dist[0]))
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
			pt := 1e-12
			if r.true >= 0 {
				pt = max(p[r.true], 1e-12)
			}
			sum -= math.Log(pt)
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
