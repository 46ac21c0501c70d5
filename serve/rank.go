package serve

import (
	"context"
	"math"
	"slices"

	"protoherb/proto"
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
// the whole batch): kk = min(C, max(k, softmaxK)) per query, row-major. The raw embeddings are
// not changed (they stay for the specimen index).
func (s *Server) searchBatch(q []float32, n, k int) (dist []float32, ids []int64, kk int, err error) {
	c := s.cfg.Store.Len()
	if c == 0 {
		return nil, nil, 0, nil
	}
	kk = min(c, max(k, softmaxK))
	dist, ids, err = s.cfg.Store.Search(context.Background(), q, kk)
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

// sourceIndexFit is the calibration source of a temperature fitted on the specimen index.
const sourceIndexFit = "fitted on the specimen index"

// calibrate chooses the temperature (see the package comment): the one recorded in the prototype
// file for the build in use, else a fit on the specimen index, else the prototype-spacing
// heuristic. The choice is recorded with the prototypes (written at the next enrolment), so a
// restart finds the same temperature.
func (s *Server) calibrate() (float64, string) {
	if c := s.cfg.Store.Calibration(); c.Temperature > 0 {
		return c.Temperature, c.Source + " (recorded with the prototypes)"
	}
	if s.cfg.Store.Len() < 2 {
		return 1, "default (fewer than two species)"
	}
	if x := s.cfg.Index; x != nil && x.Len() > 0 {
		if t, ok := s.fitTemperature(x); ok {
			if _, err := s.cfg.Store.SetCalibration(proto.Calibration{Temperature: t, Source: sourceIndexFit}); err != nil {
				s.log.Warn("serve: temperature not recorded", "err", err)
			}
			return t, sourceIndexFit
		}
	}
	c, err := s.cfg.Store.SetCalibration(proto.Calibration{Source: proto.SourceSpacing})
	if err != nil || c.Temperature <= 0 {
		return 1, "default"
	}
	return c.Temperature, c.Source
}

// fitTemperature minimises the negative log-likelihood of the index's labels over log T. The
// index holds the specimens the prototypes were made from, so each specimen is scored against its
// class's leave-one-out prototype ((n·p − x)/(n − 1)); otherwise the fit would see every specimen
// inside its own prototype and choose an overconfident T. Classes with one specimen are skipped.
// The leave-one-out prototype is taken in the prototypes' space: exact for plain class means,
// an approximation with centering or shrinkage.
func (s *Server) fitTemperature(x *Index) (float64, bool) {
	p := s.cfg.Store.Prototypes()
	if p == nil {
		return 0, false
	}
	kk := min(len(p.Classes), softmaxK)
	m := min(x.Len(), 4096)
	vec := p.Vectors
	rowOf := make(map[int64]int, len(p.Classes))
	for i, c := range p.Classes {
		rowOf[c.ID] = i
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
		dist, got, err := s.cfg.Store.Search(context.Background(), q, kk)
		if err != nil || p.Transform(q) != nil {
			continue
		}
		p := vec[rowOf[c]*x.dim : (rowOf[c]+1)*x.dim]
		nc := float32(sp.Count)
		for j := range loo {
			loo[j] = (nc*p[j] - q[j]) / (nc - 1)
		}
		own := float32(proto.SquaredL2(q, loo))
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
	return minimiseLogT(nll, base), true
}

// minimiseLogT minimises f over T on a grid of log T from base/1000 to base·1000, then refines the
// best cell by golden-section search.
func minimiseLogT(nll func(t float64) float64, base float64) float64 {
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
	return math.Exp((a + b) / 2)
}
