package proto

import (
	"log/slog"
	"math"
)

// estimateShrink returns λ = σ²/τ²_genus and μ = σ²/τ²_family, the weights of the genus and family
// means in an empirical-Bayes (normal–normal) posterior mean of each class: σ² is the within-class
// variance per dimension (pooled over classes with two or more images), τ² the variance per
// dimension of class means around the mean of the other classes of their genus (family), with the
// sampling noise of both means subtracted (method of moments).
func (s *Store) estimateShrink(rows []int, mu [][]float64, genus, family map[string]*group) (lambda, muF float64) {
	d := float64(s.dim)
	var within float64
	var dof int64
	for _, r := range rows {
		n := s.counts[r]
		if n < 2 {
			continue
		}
		var ss float64
		for _, v := range s.sums[r*s.dim : (r+1)*s.dim] {
			ss += v * v
		}
		// Σ|x − x̄|² = Σ|x|² − |Σx|²/n (sums are invariant to the centering, so use the raw sums).
		within += s.sqnorms[r] - ss/float64(n)
		dof += n - 1
	}
	if dof == 0 {
		slog.Warn("automatic shrinkage: no class has two images, so no within-class variance: not shrinking")
		return 0, 0
	}
	sigma2 := max(within, 0) / (float64(dof) * d)
	tau2 := func(groups map[string]*group, key func(Class) string) float64 {
		var acc float64
		var m int
		loo := make([]float64, s.dim)
		for i, r := range rows {
			g := groups[key(s.classes[r])]
			if g == nil || g.n < 2 {
				continue
			}
			leaveOneOut(loo, g, mu[i])
			var dist float64
			for j, v := range mu[i] {
				dist += (v - loo[j]) * (v - loo[j])
			}
			n := float64(s.counts[r])
			k := float64(g.n - 1)
			// E|mean_c − loo|²/d = τ²(1 + 1/k) + σ²/n_c + σ²·mean_{c'≠c}(1/n_c')/k
			others := (g.invN - 1/n) / k
			acc += (dist/d - sigma2/n - sigma2*others/k) / (1 + 1/k)
			m++
		}
		if m == 0 {
			return math.Inf(1)
		}
		return acc / float64(m)
	}
	weight := func(t2 float64) float64 {
		switch {
		case math.IsInf(t2, 1):
			return 0 // no group with two classes: nothing to shrink toward
		case t2 <= 0:
			return 1e6 // class means spread no more than noise: use the group mean
		}
		return sigma2 / t2
	}
	lambda = weight(tau2(genus, genusKey))
	muF = weight(tau2(family, func(c Class) string { return c.Family }))
	slog.Debug("automatic shrinkage", "within_variance", sigma2, "lambda_genus", lambda, "mu_family", muF)
	return lambda, muF
}
