package synth

import (
	"math"
	"math/rand/v2"
)

// specimenCounts returns how many specimens (train and test together) each of n species has: a
// truncated power law (Pareto with tail index alpha) on [lo, hi]. The counts are the distribution's
// quantiles at (i+0.5)/n, shuffled over the species, so every run has the same shape: many species
// near lo, a few near hi.
func specimenCounts(r *rand.Rand, n, lo, hi int, alpha float64) []int {
	counts := make([]int, n)
	L, H := float64(lo), float64(hi)+1 // +1: floor maps [hi, hi+1) to hi
	ratio := math.Pow(L/H, alpha)
	for i := range counts {
		u := (float64(i) + 0.5) / float64(n)
		x := L / math.Pow(1-u*(1-ratio), 1/alpha)
		counts[i] = max(lo, min(hi, int(x)))
	}
	r.Shuffle(n, func(i, j int) { counts[i], counts[j] = counts[j], counts[i] })
	return counts
}

// testCount splits a species' n specimens: about frac of them go to test, at least one when there
// are two or more specimens, at most limit, and at least one always stays in train. Small species
// therefore sometimes keep a single train image, as in Herbarium 2020.
func testCount(r *rand.Rand, n, limit int, frac float64) int {
	if limit <= 0 || n < 2 {
		return 0
	}
	k := 1
	for i := 1; i < n; i++ {
		if r.Float64() < frac {
			k++
		}
	}
	return min(k, limit, n-1)
}
