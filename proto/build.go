package proto

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Build chooses how prototypes are made from the per-class sums. The zero value gives plain class
// means (Snell et al.'s prototypes).
type Build struct {
	// Center subtracts the global mean embedding (over all images) from prototypes and queries.
	Center bool
	// ShrinkGenus (λ) and ShrinkFamily (μ) pull a class with n images toward the mean of the other
	// classes of its genus, then of its family: p = (n·mean + λ·genus)/(n + λ), then
	// p = (n·p + μ·family)/(n + μ). Classes alone in their genus (family) skip that step.
	ShrinkGenus, ShrinkFamily float64
	// AutoShrink estimates λ and μ from the data (empirical Bayes: the within-class variance over the
	// variance of class means around their genus or family), overriding ShrinkGenus/ShrinkFamily.
	AutoShrink bool
	// Normalize scales prototypes and queries to unit length after everything else, so the squared
	// L2 search ranks by cosine similarity.
	Normalize bool
}

// BuildEdit changes the Build recorded in a prototype file, e.g. with the options a user set on
// the command line (a nil BuildEdit keeps the recorded Build). Every user of a prototype file
// starts from the recorded Build, so `prototypes --shrink ...` once is enough for predict and serve.
type BuildEdit func(recorded Build) (Build, error)

// Apply returns the Build to use for a file that records b.
func (e BuildEdit) Apply(b Build) (Build, error) {
	if e == nil {
		return b, nil
	}
	return e(b)
}

// Prototypes are the vectors a search runs against, with the transform queries need to live in the
// same space.
type Prototypes struct {
	Dim     int
	Model   string
	Classes []Class   // one per prototype
	Counts  []int64   // training images of each class
	Vectors []float32 // len(Classes) × Dim
	// Query transform, in order: unit length (NormalizeEmbeddings), minus Mean (when not nil), unit
	// length (Normalize).
	NormalizeEmbeddings bool
	Mean                []float32
	Normalize           bool
	// Excluded lists the classes of the store that have no images and so no prototype.
	Excluded []int64
	// Lambda and Mu are the shrinkage used (estimated when Build.AutoShrink).
	Lambda, Mu float64
}

// IDs returns the class ids of the prototypes in order.
func (p *Prototypes) IDs() []int64 {
	ids := make([]int64, len(p.Classes))
	for i, c := range p.Classes {
		ids[i] = c.ID
	}
	return ids
}

// Transform maps query embeddings (rows of Dim values) in place into the prototypes' space. A
// query of another dimension (another model) is an error.
func (p *Prototypes) Transform(queries []float32) error {
	if p.Dim <= 0 || len(queries)%p.Dim != 0 {
		return fmt.Errorf("proto: %d query values are not whole embeddings of the prototypes' dimension %d (another model?)", len(queries), p.Dim)
	}
	for r := 0; r < len(queries); r += p.Dim {
		q := queries[r : r+p.Dim]
		if p.NormalizeEmbeddings {
			unit32(q)
		}
		for j, m := range p.Mean {
			q[j] -= m
		}
		if p.Normalize {
			unit32(q)
		}
	}
	return nil
}

func unit32(x []float32) {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	if s == 0 {
		return
	}
	inv := 1 / math.Sqrt(s)
	for i, v := range x {
		x[i] = float32(float64(v) * inv)
	}
}

func unit64(x []float64) {
	var s float64
	for _, v := range x {
		s += v * v
	}
	if s == 0 {
		return
	}
	inv := 1 / math.Sqrt(s)
	for i := range x {
		x[i] *= inv
	}
}

// group is the classes (with images) sharing a genus or a family: the sum of their (centred) means.
type group struct {
	sum  []float64
	n    int     // classes
	invN float64 // Σ 1/n_c over its classes (for the variance estimate)
}

// Build makes one prototype per class that has images.
func (s *Store) Build(b Build) (*Prototypes, error) {
	d := s.dim
	p := &Prototypes{Dim: d, Model: s.model, NormalizeEmbeddings: s.opt.NormalizeEmbeddings, Normalize: b.Normalize}
	var rows []int
	for r, c := range s.classes {
		if s.counts[r] == 0 {
			p.Excluded = append(p.Excluded, c.ID)
			continue
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("proto: none of the %d classes has an image", len(s.classes))
	}
	// Class means, centred on the global mean when asked.
	mean := make([]float64, d)
	if b.Center {
		mean, p.Mean = s.globalMean(rows)
	}
	lambda, muF := b.ShrinkGenus, b.ShrinkFamily
	if lambda < 0 || muF < 0 {
		return nil, fmt.Errorf("proto: shrinkage genus=%g family=%g: must not be negative", lambda, muF)
	}
	// The class means (centred) are kept for all classes only when shrinkage needs the group
	// means; plain builds make each prototype from its own sum (an enrolment rebuilds them all).
	shrinks := b.AutoShrink || lambda > 0 || muF > 0
	classMean := func(dst []float64, r int) []float64 {
		n := float64(s.counts[r])
		for j, v := range s.sums[r*d : (r+1)*d] {
			dst[j] = v/n - mean[j]
		}
		return dst
	}
	var mu [][]float64
	var genus, family map[string]*group
	if shrinks {
		mu = make([][]float64, len(rows))
		for i, r := range rows {
			mu[i] = classMean(make([]float64, d), r)
		}
		genus, family = s.groups(rows, mu)
		if b.AutoShrink {
			lambda, muF = s.estimateShrink(rows, mu, genus, family)
		}
	}
	p.Lambda, p.Mu = lambda, muF
	p.Vectors = make([]float32, len(rows)*d)
	p.Classes = make([]Class, len(rows))
	p.Counts = make([]int64, len(rows))
	loo := make([]float64, d)
	v := make([]float64, d)
	for i, r := range rows {
		c := s.classes[r]
		p.Classes[i], p.Counts[i] = c, s.counts[r]
		classMean(v, r)
		n := float64(s.counts[r])
		if g := genus[genusKey(c)]; lambda > 0 && g != nil && g.n >= 2 {
			leaveOneOut(loo, g, mu[i])
			shrink(v, n, loo, lambda)
		}
		if f := family[c.Family]; muF > 0 && c.Family != "" && f.n >= 2 {
			leaveOneOut(loo, f, mu[i])
			shrink(v, n, loo, muF)
		}
		if b.Normalize {
			unit64(v)
		}
		out := p.Vectors[i*d : (i+1)*d]
		for j, x := range v {
			out[j] = float32(x)
		}
	}
	return p, nil
}

// globalMean is the mean embedding over all images of the rows (float64, and as float32 for the
// query transform).
func (s *Store) globalMean(rows []int) ([]float64, []float32) {
	d := s.dim
	mean := make([]float64, d)
	var n int64
	for _, r := range rows {
		for j, v := range s.sums[r*d : (r+1)*d] {
			mean[j] += v
		}
		n += s.counts[r]
	}
	m32 := make([]float32, d)
	for j := range mean {
		mean[j] /= float64(n)
		m32[j] = float32(mean[j])
	}
	return mean, m32
}

func genusKey(c Class) string {
	if c.Genus == "" {
		return ""
	}
	return c.Family + "\x00" + c.Genus
}

// groups sums the class means per genus and per family (before any shrinkage).
func (s *Store) groups(rows []int, mu [][]float64) (genus, family map[string]*group) {
	genus, family = map[string]*group{}, map[string]*group{}
	add := func(m map[string]*group, key string, v []float64, n int64) {
		if key == "" {
			return
		}
		g := m[key]
		if g == nil {
			g = &group{sum: make([]float64, len(v))}
			m[key] = g
		}
		for j, x := range v {
			g.sum[j] += x
		}
		g.n++
		g.invN += 1 / float64(n)
	}
	for i, r := range rows {
		c := s.classes[r]
		add(genus, genusKey(c), mu[i], s.counts[r])
		add(family, c.Family, mu[i], s.counts[r])
	}
	return genus, family
}

// leaveOneOut writes the mean of the group's other classes (their unshrunk means) into dst; own is
// the class's unshrunk mean.
func leaveOneOut(dst []float64, g *group, own []float64) {
	k := float64(g.n - 1)
	for j := range dst {
		dst[j] = (g.sum[j] - own[j]) / k
	}
}

// shrink sets v = (n·v + w·target)/(n + w).
func shrink(v []float64, n float64, target []float64, w float64) {
	for j := range v {
		v[j] = (n*v[j] + w*target[j]) / (n + w)
	}
}

// SetShrink sets the shrinkage from a flag value: "" or "none" (no shrinkage), "auto" (AutoShrink),
// or "genus=λ,family=μ" (either part may be left out).
func (b *Build) SetShrink(s string) error {
	b.ShrinkGenus, b.ShrinkFamily, b.AutoShrink = 0, 0, false
	switch s {
	case "", "none":
		return nil
	case "auto":
		b.AutoShrink = true
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || x < 0 || math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("--shrink %q: want auto, none or genus=λ,family=μ with λ, μ ≥ 0", s)
		}
		switch k {
		case "genus":
			b.ShrinkGenus = x
		case "family":
			b.ShrinkFamily = x
		default:
			return fmt.Errorf("--shrink %q: unknown part %q (want genus or family)", s, k)
		}
	}
	return nil
}

// String describes the build in flag syntax.
func (b Build) String() string {
	var parts []string
	if b.Center {
		parts = append(parts, "center")
	}
	switch {
	case b.AutoShrink:
		parts = append(parts, "shrink=auto")
	case b.ShrinkGenus > 0 || b.ShrinkFamily > 0:
		parts = append(parts, fmt.Sprintf("shrink=genus=%g,family=%g", b.ShrinkGenus, b.ShrinkFamily))
	}
	if b.Normalize {
		parts = append(parts, "normalize")
	}
	if len(parts) == 0 {
		return "plain means"
	}
	return strings.Join(parts, " ")
}
