package dataset

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// StratifiedSplit splits the labelled samples into train and validation positions, taking about
// valFrac of every class for validation but always leaving at least one image of each class in train
// (a class with one image goes to train only). Deterministic for a seed; both lists are sorted.
// Unlabelled samples (label -1) are in neither list.
func StratifiedSplit(d *Dataset, valFrac float64, seed uint64) (train, val []int) {
	r := rand.New(rand.NewPCG(seed, 0x5eed5917))
	for _, idx := range d.ByClass(nil) {
		n := len(idx)
		if n == 0 {
			continue
		}
		nv := int(math.Round(float64(n) * valFrac))
		nv = min(max(nv, 0), n-1)
		perm := slices.Clone(idx)
		r.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		val = append(val, perm[:nv]...)
		train = append(train, perm[nv:]...)
	}
	slices.Sort(train)
	slices.Sort(val)
	return train, val
}

// ClassSplit holds out about heldOutFrac of the classes that have images (for few-shot evaluation on
// classes never seen in training). It returns class indices, sorted; SamplesOfClasses turns them
// into sample positions. Deterministic for a seed.
func ClassSplit(d *Dataset, heldOutFrac float64, seed uint64) (trainClasses, heldOutClasses []int) {
	r := rand.New(rand.NewPCG(seed, 0xc1a55))
	counts := d.ClassCounts()
	var present []int
	for c, n := range counts {
		if n > 0 {
			present = append(present, c)
		}
	}
	r.Shuffle(len(present), func(i, j int) { present[i], present[j] = present[j], present[i] })
	nh := int(math.Round(float64(len(present)) * heldOutFrac))
	nh = min(max(nh, 0), len(present))
	heldOutClasses = slices.Clone(present[:nh])
	trainClasses = slices.Clone(present[nh:])
	slices.Sort(heldOutClasses)
	slices.Sort(trainClasses)
	return trainClasses, heldOutClasses
}

// TopClasses returns the n most populated classes (ties broken by class index), most populated first.
func TopClasses(d *Dataset, n int) []int {
	counts := d.ClassCounts()
	order := make([]int, 0, len(counts))
	for c, k := range counts {
		if k > 0 {
			order = append(order, c)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(counts[b], counts[a]) })
	if n < len(order) {
		order = order[:n]
	}
	return order
}

// Episode is one few-shot task: Classes are class indices; Support[i] and Query[i] are sample
// positions of class Classes[i].
type Episode struct {
	Classes        []int
	Support, Query [][]int
}

// EpisodeSampler draws N-way K-shot Q-query episodes from the classes that have at least Shot+Query
// samples (classes with fewer are still used for prototypes and prediction, just not in episodes).
// Build it with NewEpisodeSampler (which checks it), or as a literal with Data (and optionally
// Subset) set; it is prepared on first use.
type EpisodeSampler struct {
	Way, Shot, Query int
	// Data is the dataset episodes come from; Subset restricts them to these sample positions
	// (nil = all samples).
	Data   *Dataset
	Subset []int

	ready    bool
	byClass  [][]int
	eligible []int
}

// NewEpisodeSampler prepares episodes over subset (sample positions; nil = all samples).
func NewEpisodeSampler(d *Dataset, subset []int, way, shot, query int) (*EpisodeSampler, error) {
	s := &EpisodeSampler{Way: way, Shot: shot, Query: query, Data: d, Subset: subset}
	if err := s.Init(); err != nil {
		return nil, err
	}
	return s, nil
}

// Init indexes the data and checks that Way classes have Shot+Query samples.
func (s *EpisodeSampler) Init() error {
	way, shot, query := s.Way, s.Shot, s.Query
	if way < 1 || shot < 1 || query < 0 {
		return fmt.Errorf("episode sampler: need way >= 1, shot >= 1, query >= 0, got %d-way %d-shot %d-query", way, shot, query)
	}
	if s.Data == nil {
		return fmt.Errorf("episode sampler: no dataset")
	}
	s.byClass = s.Data.ByClass(s.Subset)
	s.eligible = nil
	for c, idx := range s.byClass {
		if len(idx) >= shot+query {
			s.eligible = append(s.eligible, c)
		}
	}
	if len(s.eligible) < way {
		return fmt.Errorf("episode sampler: %d-way needs %d classes with at least %d images, only %d have that many",
			way, way, shot+query, len(s.eligible))
	}
	s.ready = true
	return nil
}

// Eligible returns the classes episodes are drawn from.
func (s *EpisodeSampler) Eligible() []int { return s.eligible }

// Sample draws one episode: Way distinct classes, and for each Shot+Query distinct samples. A sampler
// that cannot be prepared (see Init) gives an empty episode.
func (s *EpisodeSampler) Sample(r *rand.Rand) Episode {
	if !s.ready && s.Init() != nil {
		return Episode{}
	}
	ep := Episode{
		Classes: make([]int, s.Way),
		Support: make([][]int, s.Way),
		Query:   make([][]int, s.Way),
	}
	for i, k := range sampleDistinct(r, len(s.eligible), s.Way) {
		c := s.eligible[k]
		ep.Classes[i] = c
		idx := s.byClass[c]
		pick := sampleDistinct(r, len(idx), s.Shot+s.Query)
		ep.Support[i] = make([]int, s.Shot)
		ep.Query[i] = make([]int, s.Query)
		for j, p := range pick {
			if j < s.Shot {
				ep.Support[i][j] = idx[p]
			} else {
				ep.Query[i][j-s.Shot] = idx[p]
			}
		}
	}
	return ep
}

// sampleDistinct draws k distinct integers from [0, n) in random order (Floyd's algorithm for small k,
// a partial shuffle otherwise).
func sampleDistinct(r *rand.Rand, n, k int) []int {
	if k > n {
		k = n
	}
	if k*4 < n {
		out := make([]int, 0, k)
		seen := make(map[int]bool, k)
		for len(out) < k {
			v := r.IntN(n)
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
		return out
	}
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := 0; i < k; i++ {
		j := i + r.IntN(n-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm[:k]
}

// BalancedSampler draws class-balanced batches: every draw picks a class uniformly, then one of its
// samples uniformly, so rare and common classes are seen equally often.
type BalancedSampler struct {
	classes []int
	byClass [][]int
}

// NewBalancedSampler draws from subset (nil = all samples) restricted to classes (nil = every class
// with samples in subset), e.g. TopClasses(d, 200) for pretraining.
func NewBalancedSampler(d *Dataset, subset, classes []int) (*BalancedSampler, error) {
	s := &BalancedSampler{byClass: d.ByClass(subset)}
	if classes == nil {
		for c, idx := range s.byClass {
			if len(idx) > 0 {
				s.classes = append(s.classes, c)
			}
		}
	} else {
		for _, c := range classes {
			if c < 0 || c >= len(s.byClass) {
				return nil, fmt.Errorf("balanced sampler: class %d out of range [0, %d)", c, len(s.byClass))
			}
			if len(s.byClass[c]) == 0 {
				return nil, fmt.Errorf("balanced sampler: class %d (%s) has no samples", c, d.Classes[c].Name)
			}
			s.classes = append(s.classes, c)
		}
	}
	if len(s.classes) == 0 {
		return nil, fmt.Errorf("balanced sampler: no class has samples")
	}
	return s, nil
}

// Classes returns the classes drawn from.
func (s *BalancedSampler) Classes() []int { return s.classes }

// Batch draws n sample positions.
func (s *BalancedSampler) Batch(r *rand.Rand, n int) []int {
	out := make([]int, n)
	for i := range out {
		idx := s.byClass[s.classes[r.IntN(len(s.classes))]]
		out[i] = idx[r.IntN(len(idx))]
	}
	return out
}
