package proto

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// A simulated long-tailed herbarium in embedding space, to measure the robust prototype options:
// families, genera and species as nested Gaussian clusters around a shared offset (as post-ReLU
// CNN embeddings share a large mean), each image's embedding scaled by a random factor (exposure,
// specimen size), 15% head species with 30–150 training images, 35% medium with 4–29, 50% tail with
// 1–3, and 5 test images per species. Run with -v for the table (docs/prototypes.md).

type simulation struct {
	dim                    int
	classes                []Class
	trainX                 []float32
	trainY                 []int64
	testX                  []float32
	testY                  []int64
	counts                 map[int64]int
	offset, family, genus  float64 // spreads
	species, within, scale float64
}

func simulate(seed uint64, dim int) *simulation {
	rng := rand.New(rand.NewPCG(seed, 7))
	s := &simulation{dim: dim, counts: map[int64]int{}, offset: 3, family: 1, genus: 0.7, species: 0.55, within: 1, scale: 0.25}
	gauss := func(center []float64, sd float64) []float64 {
		v := make([]float64, dim)
		for j := range v {
			v[j] = sd * rng.NormFloat64()
			if center != nil {
				v[j] += center[j]
			}
		}
		return v
	}
	offset := gauss(nil, s.offset)
	var id int64
	sample := func(center []float64, label int64, x *[]float32, y *[]int64) {
		sc := math.Exp(s.scale * rng.NormFloat64())
		for _, v := range gauss(center, s.within) {
			*x = append(*x, float32(sc*v))
		}
		*y = append(*y, label)
	}
	for f := range 25 {
		fc := gauss(offset, s.family)
		for g := range 1 + rng.IntN(6) {
			gc := gauss(fc, s.genus)
			for range 1 + rng.IntN(10) {
				id++
				c := Class{ID: id, Name: fmt.Sprintf("species %d", id), Genus: fmt.Sprintf("G%d.%d", f, g), Family: fmt.Sprintf("F%d", f)}
				s.classes = append(s.classes, c)
				sc := gauss(gc, s.species)
				var n int
				switch u := rng.Float64(); {
				case u < 0.15:
					n = 30 + rng.IntN(121)
				case u < 0.5:
					n = 4 + rng.IntN(26)
				default:
					n = 1 + rng.IntN(3)
				}
				s.counts[id] = n
				for range n {
					sample(sc, id, &s.trainX, &s.trainY)
				}
				for range 5 {
					sample(sc, id, &s.testX, &s.testY)
				}
			}
		}
	}
	return s
}

// tier names a class's training count: tail ≤ 3, medium 4–29, head ≥ 30.
func tier(n int) string {
	switch {
	case n <= 3:
		return "tail"
	case n < 30:
		return "medium"
	}
	return "head"
}

// nearest returns the id of the prototype nearest to each query (squared L2, ties to the smaller id).
func nearest(p *Prototypes, queries []float32) []int64 {
	d := p.Dim
	out := make([]int64, len(queries)/d)
	for q := range out {
		x := queries[q*d : (q+1)*d]
		best, bestID := math.Inf(1), int64(-1)
		for i, c := range p.Classes {
			v := p.Vectors[i*d : (i+1)*d]
			var s float64
			for j := range x {
				t := float64(x[j] - v[j])
				s += t * t
			}
			if s < best || (s == best && c.ID < bestID) {
				best, bestID = s, c.ID
			}
		}
		out[q] = bestID
	}
	return out
}

// macroF1 is scikit-learn's f1_score(average="macro") over the union of true and predicted labels,
// and the mean F1 of the classes of each tier (by the true class's training count).
func macroF1(truth, pred []int64, counts map[int64]int) (all float64, byTier map[string]float64) {
	tp, fp, fn := map[int64]int{}, map[int64]int{}, map[int64]int{}
	labels := map[int64]bool{}
	for i, t := range truth {
		labels[t], labels[pred[i]] = true, true
		if t == pred[i] {
			tp[t]++
		} else {
			fn[t]++
			fp[pred[i]]++
		}
	}
	sum, n := map[string]float64{}, map[string]int{}
	var total float64
	for l := range labels {
		f := 0.0
		if den := 2*tp[l] + fp[l] + fn[l]; den > 0 {
			f = 2 * float64(tp[l]) / float64(den)
		}
		total += f
		if c, ok := counts[l]; ok {
			sum[tier(c)] += f
			n[tier(c)]++
		}
	}
	byTier = map[string]float64{}
	for k, v := range sum {
		byTier[k] = v / float64(n[k])
	}
	return total / float64(len(labels)), byTier
}

type variant struct {
	name      string
	normEmb   bool
	build     Build
	lambdaOut *float64
}

func evaluate(t *testing.T, sim *simulation, v variant) (float64, map[string]float64, *Prototypes) {
	t.Helper()
	s, err := New(sim.dim, "sim", sim.classes, Options{NormalizeEmbeddings: v.normEmb})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Accumulate(sim.trainX, sim.trainY, nil); err != nil {
		t.Fatal(err)
	}
	p, err := s.Build(v.build)
	if err != nil {
		t.Fatal(err)
	}
	q := append([]float32(nil), sim.testX...)
	if err := p.Transform(q); err != nil {
		t.Fatal(err)
	}
	f1, tiers := macroF1(sim.testY, nearest(p, q), sim.counts)
	return f1, tiers, p
}

var variants = []variant{
	{name: "plain means"},
	{name: "L2-normalised embeddings", normEmb: true},
	{name: "centred", build: Build{Center: true}},
	{name: "centred + normalised prototypes (cosine)", build: Build{Center: true, Normalize: true}},
	{name: "normalised embeddings + centred + normalised", normEmb: true, build: Build{Center: true, Normalize: true}},
	{name: "shrink genus=1", build: Build{ShrinkGenus: 1}},
	{name: "shrink genus=2 family=1", build: Build{ShrinkGenus: 2, ShrinkFamily: 1}},
	{name: "shrink genus=4 family=2", build: Build{ShrinkGenus: 4, ShrinkFamily: 2}},
	{name: "shrink genus=8 family=4", build: Build{ShrinkGenus: 8, ShrinkFamily: 4}},
	{name: "shrink auto (empirical Bayes)", build: Build{AutoShrink: true}},
	{name: "normalised embeddings + shrink auto", normEmb: true, build: Build{AutoShrink: true}},
	{name: "norm. emb. + centred + normalised + shrink auto", normEmb: true, build: Build{Center: true, Normalize: true, AutoShrink: true}},
	{name: "norm. emb. + centred + normalised + shrink genus=0.5 family=0.25", normEmb: true, build: Build{Center: true, Normalize: true, ShrinkGenus: 0.5, ShrinkFamily: 0.25}},
	{name: "norm. emb. + centred + normalised + shrink genus=1 family=0.5", normEmb: true, build: Build{Center: true, Normalize: true, ShrinkGenus: 1, ShrinkFamily: 0.5}},
	{name: "norm. emb. + centred + normalised + shrink genus=2 family=1", normEmb: true, build: Build{Center: true, Normalize: true, ShrinkGenus: 2, ShrinkFamily: 1}},
}

func TestRobustPrototypesOnSimulatedLongTail(t *testing.T) {
	type row struct {
		f1   float64
		tier map[string]float64
	}
	results := map[string][]row{}
	seeds := []uint64{1, 2, 3}
	var b strings.Builder
	for _, seed := range seeds {
		sim := simulate(seed, 64)
		tiers := map[string]int{}
		for _, n := range sim.counts {
			tiers[tier(n)]++
		}
		fmt.Fprintf(&b, "seed %d: %d classes (head %d, medium %d, tail %d), %d train and %d test images, dim %d\n",
			seed, len(sim.classes), tiers["head"], tiers["medium"], tiers["tail"], len(sim.trainY), len(sim.testY), sim.dim)
		for _, v := range variants {
			f1, tf, p := evaluate(t, sim, v)
			results[v.name] = append(results[v.name], row{f1, tf})
			if v.build.AutoShrink {
				fmt.Fprintf(&b, "  %s: estimated λ=%.2f μ=%.2f\n", v.name, p.Lambda, p.Mu)
			}
		}
	}
	fmt.Fprintf(&b, "\n| option | macro-F1 | head | medium | tail |\n|---|---|---|---|---|\n")
	mean := func(rs []row, f func(row) float64) float64 {
		var s float64
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	avg := map[string]row{}
	for _, v := range variants {
		rs := results[v.name]
		r := row{f1: mean(rs, func(r row) float64 { return r.f1 }), tier: map[string]float64{}}
		for _, k := range []string{"head", "medium", "tail"} {
			r.tier[k] = mean(rs, func(r row) float64 { return r.tier[k] })
		}
		avg[v.name] = r
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f |\n", v.name, r.f1, r.tier["head"], r.tier["medium"], r.tier["tail"])
	}
	t.Logf("mean over seeds %v:\n%s", seeds, b.String())

	// What the table must keep showing (deterministic seeds): normalising the embeddings, centring
	// and normalising the prototypes beats plain means on macro-F1 and on the tail; moderate shrinkage
	// on top helps the tail further; the empirical-Bayes weight helps the head.
	plain := avg["plain means"]
	cos := avg["normalised embeddings + centred + normalised"]
	shr := avg["norm. emb. + centred + normalised + shrink genus=1 family=0.5"]
	auto := avg["norm. emb. + centred + normalised + shrink auto"]
	if cos.f1 <= plain.f1 || cos.tier["tail"] <= plain.tier["tail"] {
		t.Errorf("normalised + centred: macro-F1 %.3f tail %.3f, plain %.3f and %.3f", cos.f1, cos.tier["tail"], plain.f1, plain.tier["tail"])
	}
	if shr.tier["tail"] <= cos.tier["tail"] || shr.f1 <= cos.f1 {
		t.Errorf("shrink genus=1 family=0.5: macro-F1 %.3f tail %.3f, without %.3f and %.3f", shr.f1, shr.tier["tail"], cos.f1, cos.tier["tail"])
	}
	if auto.tier["head"] <= cos.tier["head"] {
		t.Errorf("automatic shrinkage head F1 %.3f, without %.3f", auto.tier["head"], cos.tier["head"])
	}
}
