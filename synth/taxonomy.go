package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// Leaf shapes, margins, venation and arrangement: the discrete traits a species inherits from its
// genus and family (and that sometimes mutate on the way down).
const (
	shapeLanceolate = iota
	shapeElliptic
	shapeOvate
	shapeObovate
	shapeLinear
	shapeCordate
	shapeOrbicular
	numShapes
)

const (
	marginEntire = iota
	marginSerrate
	marginLobed
	numMargins
)

const (
	veinPinnate = iota
	veinParallel
	veinPalmate
	numVenations
)

const (
	arrangeAlternate = iota
	arrangeOpposite
	arrangeWhorled
	numArrangements
)

// traits describe how a taxon's specimens look. Lengths are in sheet units (the sheet's long side is
// 1000 units), angles in radians, colours in HSV with components in [0,1].
type traits struct {
	Shape, Margin, Venation, Arrangement int
	Teeth                                int     // teeth or lobes per side of a leaf
	LeafLen                              float64 // leaf blade length
	Aspect                               float64 // blade width / length
	Petiole                              float64 // petiole length as a fraction of the blade
	LeafAngle                            float64 // angle between leaf and stem
	LeafH, LeafS, LeafV                  float64
	Nodes                                int     // nodes on the main stem
	Branchiness                          float64 // probability of a side branch at a node
	Curvature                            float64 // total bend of the main stem
	StemWidth                            float64
	Flowers                              bool
	Inflorescence                        int // 0 terminal, 1 axillary, 2 terminal cluster
	FlowerH, FlowerS, FlowerV            float64
	Petals                               int
	FlowerSize                           float64
}

// randomTraits draws a family's traits from scratch.
func randomTraits(r *rand.Rand) traits {
	t := traits{
		Shape:       r.IntN(numShapes),
		Margin:      r.IntN(numMargins),
		Venation:    r.IntN(numVenations),
		Arrangement: pickWeighted(r, []float64{0.55, 0.3, 0.15}),
		Teeth:       3 + r.IntN(8),
		LeafLen:     60 + 120*r.Float64(),
		Aspect:      0.2 + 0.45*r.Float64(),
		Petiole:     0.05 + 0.3*r.Float64(),
		LeafAngle:   0.5 + 0.6*r.Float64(),
		LeafH:       0.17 + 0.26*r.Float64(),
		LeafS:       0.3 + 0.45*r.Float64(),
		LeafV:       0.25 + 0.35*r.Float64(),
		Nodes:       6 + r.IntN(10),
		Branchiness: 0.1 + 0.45*r.Float64(),
		Curvature:   0.3 * r.NormFloat64(),
		StemWidth:   2.5 + 4*r.Float64(),
		Flowers:     r.Float64() < 0.65,
		// Flowers.
		Inflorescence: r.IntN(3),
		FlowerH:       r.Float64(),
		FlowerS:       0.45 + 0.5*r.Float64(),
		FlowerV:       0.6 + 0.35*r.Float64(),
		Petals:        4 + r.IntN(4),
		FlowerSize:    10 + 18*r.Float64(),
	}
	switch {
	case r.Float64() < 0.08: // reddish or purple foliage
		t.LeafH = 0.9 + 0.1*r.Float64()
	case r.Float64() < 0.08: // grey, hairy foliage
		t.LeafS = 0.1 + 0.15*r.Float64()
	}
	if r.Float64() < 0.2 { // white flowers
		t.FlowerS = 0.05 + 0.1*r.Float64()
		t.FlowerV = 0.9 + 0.08*r.Float64()
	}
	switch t.Shape {
	case shapeLinear:
		t.Aspect = 0.06 + 0.08*r.Float64()
		t.Venation = veinParallel
		t.Margin = marginEntire
	case shapeOrbicular:
		t.Aspect = 0.7 + 0.25*r.Float64()
	}
	if t.Venation == veinPalmate && t.Shape != shapeCordate && t.Shape != shapeOrbicular && r.Float64() < 0.6 {
		t.Shape = shapeCordate
	}
	return t
}

// inherit returns a child taxon's traits: discrete traits kept with probability 1-pMut each, and
// continuous traits perturbed by a relative spread sd. Families use it for genera, genera for species.
func inherit(r *rand.Rand, p traits, pMut, sd float64) traits {
	t := p
	fresh := randomTraits(r)
	if r.Float64() < pMut {
		t.Shape = fresh.Shape
	}
	if r.Float64() < pMut {
		t.Margin = fresh.Margin
	}
	if r.Float64() < pMut/2 {
		t.Venation = fresh.Venation
	}
	if r.Float64() < pMut {
		t.Arrangement = fresh.Arrangement
	}
	if r.Float64() < pMut {
		t.Flowers = !t.Flowers
	}
	if r.Float64() < pMut {
		t.Inflorescence = fresh.Inflorescence
	}
	if r.Float64() < pMut {
		t.Petals = fresh.Petals
	}
	mul := func(v float64, s float64) float64 { return v * math.Exp(s*r.NormFloat64()) }
	t.Teeth = max(2, t.Teeth+int(math.Round(2*sd*r.NormFloat64()*3)))
	t.LeafLen = clamp(mul(t.LeafLen, sd*1.4), 30, 240)
	t.Aspect = clamp(mul(t.Aspect, sd), 0.04, 1.0)
	t.Petiole = clamp(mul(t.Petiole, sd), 0.0, 0.6)
	t.LeafAngle = clamp(t.LeafAngle+sd*r.NormFloat64(), 0.25, 1.4)
	t.LeafH = math.Mod(t.LeafH+0.15*sd*r.NormFloat64()+1, 1)
	t.LeafS = clamp(t.LeafS+0.5*sd*r.NormFloat64(), 0.05, 0.9)
	t.LeafV = clamp(t.LeafV+0.4*sd*r.NormFloat64(), 0.15, 0.7)
	t.Nodes = max(3, min(18, t.Nodes+int(math.Round(8*sd*r.NormFloat64()))))
	t.Branchiness = clamp(t.Branchiness+sd*0.5*r.NormFloat64(), 0.05, 0.7)
	t.Curvature = clamp(t.Curvature+sd*0.3*r.NormFloat64(), -0.7, 0.7)
	t.StemWidth = clamp(mul(t.StemWidth, sd), 1.5, 9)
	t.FlowerH = math.Mod(t.FlowerH+0.5*sd*r.NormFloat64()+1, 1)
	t.FlowerS = clamp(t.FlowerS+sd*r.NormFloat64(), 0.03, 0.95)
	t.FlowerV = clamp(t.FlowerV+0.5*sd*r.NormFloat64(), 0.45, 0.98)
	t.FlowerSize = clamp(mul(t.FlowerSize, sd), 6, 40)
	if t.Shape == shapeLinear {
		t.Aspect = min(t.Aspect, 0.15)
		t.Margin = marginEntire
	}
	return t
}

func pickWeighted(r *rand.Rand, w []float64) int {
	x := r.Float64()
	for i, p := range w {
		if x < p {
			return i
		}
		x -= p
	}
	return len(w) - 1
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// Category is one species as written to the metadata. Names are UTF-8 here; the metadata holds them
// as Latin-1 bytes.
type Category struct {
	ID     int
	Name   string // "Genus epithet", or "Genus × epithet" for a hybrid
	Genus  string
	Family string
}

// taxonomy holds the generated families, genera and species. Species are indexed by category id.
type taxonomy struct {
	categories []Category
	traits     []traits // per category
	region     []int    // home region per category
}

// Regions are the collection regions, by region id.
var regions = []string{
	"Amazônia", "Andes", "Appalachia", "Atlantic Forest", "Boreal Canada", "Caribbean",
	"Cerrado", "Great Plains", "Mesoamérica", "Pacific Northwest", "Patagonia", "Sonoran Desert",
}

var (
	onsets      = []string{"b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ph", "th", "ch", "cr", "pl", "tr", "gl", "br", "st", "sc", "pr", "fl", "h", "z", "qu", "x", "gr", "sp", "ly"}
	vowels      = []string{"a", "e", "i", "o", "u", "a", "i", "o", "ae", "y", "io", "eu", "ia", "oe"}
	genusEnds   = []string{"us", "a", "um", "is", "ia", "anthus", "opsis", "ella", "odon", "ium", "aria", "ago", "ops", "ina", "ocarpus"}
	epithetEnds = []string{"ensis", "ifolia", "oides", "ii", "ata", "iana", "escens", "ifera", "alis", "ica", "osa", "ina", "ulata", "atum", "ella", "ior", "ophylla", "iflora"}
	// Collectors honoured in epithets; several carry Latin-1 letters.
	eponyms = []string{"müller", "nuñez", "bodé", "løvås", "andré", "janssen", "hooker", "gray", "torrey", "schött", "beaupré", "castañeda", "wright", "grisebach", "lindén", "ståhl"}
)

func syllables(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 || r.Float64() < 0.7 {
			b.WriteString(onsets[r.IntN(len(onsets))])
		}
		b.WriteString(vowels[r.IntN(len(vowels))])
	}
	return b.String()
}

func genusName(r *rand.Rand) string {
	s := syllables(r, 1+r.IntN(3)) + onsets[r.IntN(len(onsets))] + genusEnds[r.IntN(len(genusEnds))]
	return strings.ToUpper(s[:1]) + s[1:]
}

// familyStem is the stem a family name is built on from its type genus (Rosa → Ros-aceae).
func familyStem(genus string) string {
	for _, end := range genusEnds {
		if strings.HasSuffix(genus, end) && len(genus) > len(end)+1 {
			return strings.TrimSuffix(genus, end)
		}
	}
	return genus
}

func epithet(r *rand.Rand) string {
	if r.Float64() < 0.05 {
		return eponyms[r.IntN(len(eponyms))] + "i"
	}
	return syllables(r, 1+r.IntN(2)) + onsets[r.IntN(len(onsets))] + epithetEnds[r.IntN(len(epithetEnds))]
}

// diaeresis writes a vowel pair with a diaeresis (Aloë, Isoëtes), or appends an -oëdes ending when
// there is no pair to mark.
func diaeresis(s string) string {
	for _, p := range []string{"oe", "ae"} {
		if i := strings.Index(s, p); i >= 0 {
			return s[:i+1] + "ë" + s[i+2:]
		}
	}
	return s + "oëdes"
}

// newTaxonomy builds families, genera and species with inherited traits. Every family has at least
// one genus and every genus at least one species; the rest are spread with a long tail. Categories
// are numbered in name order, as in the real data. Family 0 is spelt with "æ", and one species each
// carries "×" (a hybrid) and "ë", so the Latin-1 quirk of the metadata is always exercised.
func newTaxonomy(r *rand.Rand, nSpecies, nGenera, nFamilies int) (*taxonomy, error) {
	if nFamilies < 1 || nGenera < nFamilies || nSpecies < nGenera {
		return nil, fmt.Errorf("synth: need species >= genera >= families >= 1, have %d species, %d genera, %d families", nSpecies, nGenera, nFamilies)
	}
	g := drawGenera(r, nGenera, nFamilies)
	spp := drawSpecies(r, g.names, nSpecies)
	sort.Slice(spp, func(i, j int) bool { return spp[i].name < spp[j].name })
	t := &taxonomy{
		categories: make([]Category, nSpecies),
		traits:     make([]traits, nSpecies),
		region:     make([]int, nSpecies),
	}
	for id, s := range spp {
		t.categories[id] = Category{ID: id, Name: s.name, Genus: g.names[s.genus], Family: g.famNames[g.family[s.genus]]}
		t.traits[id] = inherit(r, g.traits[s.genus], 0.12, 0.16)
		t.region[id] = r.IntN(len(regions))
	}
	return t, nil
}

// genera are the drawn families and genera: genus i is names[i], in family family[i].
type genera struct {
	famNames []string
	names    []string
	family   []int
	traits   []traits
}

// drawGenera draws the families, each named after its type genus (genera 0..nFamilies−1), then the
// other genera, each in a family picked with a long tail, and the traits each genus inherits from
// its family.
func drawGenera(r *rand.Rand, nGenera, nFamilies int) genera {
	used := make(map[string]bool, nFamilies+nGenera)
	famTraits := make([]traits, nFamilies)
	g := genera{famNames: make([]string, nFamilies), names: make([]string, nGenera),
		family: make([]int, nGenera), traits: make([]traits, nGenera)}
	for f := 0; f < nFamilies; f++ {
		// The family's type genus gives it its name.
		for {
			name := genusName(r)
			fam := familyStem(name) + "aceae"
			if f == 0 || r.Float64() < 0.05 {
				fam = familyStem(name) + "aceæ"
			}
			if !used[name] && !used[fam] {
				used[name], used[fam] = true, true
				g.famNames[f], g.names[f], g.family[f] = fam, name, f
				break
			}
		}
		famTraits[f] = randomTraits(r)
	}
	for i := nFamilies; i < nGenera; i++ {
		for {
			name := genusName(r)
			if r.Float64() < 0.04 {
				name = diaeresis(name)
			}
			if !used[name] {
				used[name] = true
				g.names[i] = name
				break
			}
		}
		g.family[i] = longTailPick(r, nFamilies)
	}
	for i := range g.traits {
		g.traits[i] = inherit(r, famTraits[g.family[i]], 0.25, 0.22)
	}
	return g
}

// species is a drawn species name and the index of its genus.
type species struct {
	name  string
	genus int
}

// drawSpecies draws nSpecies distinct names: species i < len(genera) is in genus i (every genus has
// one), the rest in genera picked with a long tail. Species 0 is a hybrid ("×") and species 1 has
// a diaeresis.
func drawSpecies(r *rand.Rand, genNames []string, nSpecies int) []species {
	spp := make([]species, nSpecies)
	seen := make(map[string]bool, nSpecies)
	for s := 0; s < nSpecies; s++ {
		g := s
		if s >= len(genNames) {
			g = longTailPick(r, len(genNames))
		}
		for {
			ep := epithet(r)
			if s == 1 || r.Float64() < 0.03 {
				ep = diaeresis(ep)
			}
			name := genNames[g] + " " + ep
			if s == 0 || r.Float64() < 0.03 {
				name = genNames[g] + " × " + ep
			}
			if !seen[name] {
				seen[name] = true
				spp[s] = species{name, g}
				break
			}
		}
	}
	return spp
}

// longTailPick picks an index in [0,n) with a skewed distribution, so some families hold many genera
// and some genera many species, as in real floras.
func longTailPick(r *rand.Rand, n int) int {
	u := r.Float64()
	return min(n-1, int(float64(n)*u*u))
}
