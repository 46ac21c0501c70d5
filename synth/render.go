package synth

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"strings"
)

// worker renders and writes images; it keeps its buffers between images.
type worker struct {
	canvas
	jpg bytes.Buffer
}

func newWorker() *worker { return &worker{} }

// writeImage renders one image and writes it as a JPEG through a temporary file, so a cancelled run
// never leaves a truncated image under its final name.
func (w *worker) writeImage(p *plan, split, id int, path string) error {
	img := w.render(p, split, id)
	w.jpg.Reset()
	if err := jpeg.Encode(&w.jpg, img, &jpeg.Options{Quality: p.cfg.Quality}); err != nil {
		return fmt.Errorf("synth: encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, w.jpg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

// render draws one specimen sheet. Everything random comes from the image's own generator.
func (w *worker) render(p *plan, split, id int) *image.RGBA {
	class := p.class(split, id)
	r := imageRand(p.cfg.Seed, split, id)
	h := p.header(r, class)
	w.reset(h.width, h.height)
	s := &specimen{canvas: &w.canvas, r: r, t: p.tax.traits[class],
		u: float64(h.height) / 1000, W: float64(h.width), H: float64(h.height)}
	s.draw(regions[h.region])
	return w.img
}

// specimen is the state of one sheet being drawn. Trait lengths are in sheet units (1000 to the long
// side); u converts them to pixels.
type specimen struct {
	*canvas
	r    *rand.Rand
	t    traits
	u    float64
	W, H float64

	// Per-specimen variation.
	scale     float64 // plant size
	missing   float64 // probability that a leaf has fallen off
	damage    float64 // probability that a leaf is torn or eaten
	brown     float64 // discoloration of the dried plant
	flowering bool

	paper, stemCol, veinCol, flowerCol, centreCol color.NRGBA

	ol []vec // leaf outline scratch
}

func (s *specimen) draw(region string) {
	r := s.r
	// Paper from new white to old yellowed sheets.
	age := r.Float64()
	s.paper = color.NRGBA{uint8(247 - 10*age + 3*r.Float64()), uint8(245 - 18*age + 3*r.Float64()),
		uint8(236 - 40*age + 3*r.Float64()), 255}
	s.fillAll(s.paper)

	t := s.t
	s.scale = 0.88 + 0.24*r.Float64()
	s.missing = 0.12 * r.Float64()
	s.damage = 0.15 * r.Float64()
	s.brown = 0.3 * r.Float64()
	if r.Float64() < 0.25 {
		s.brown += 0.3 * r.Float64()
	}
	s.flowering = t.Flowers && r.Float64() < 0.85
	lh, ls, lv := s.leafHSV()
	s.stemCol = hsv(lh+(0.08-lh)*0.4, ls*0.8, lv*0.78)
	s.veinCol = hsv(lh, ls*0.9, lv*0.72)
	fade := s.brown * 0.8
	s.flowerCol = hsv(t.FlowerH+0.02*r.NormFloat64(), t.FlowerS*(1-fade), t.FlowerV*(1-0.3*fade))
	s.centreCol = hsv(0.13+0.3*(t.FlowerH-0.5)*0.2, 0.75, 0.8*(1-0.4*fade))

	labelRight := r.Float64() < 0.8
	s.plant(labelRight)
	s.label(region, labelRight)
	if r.Float64() < 0.55 {
		s.colourChecker()
	} else {
		s.ruler()
	}
	s.stamp()
	s.lighting()
}

// leafHSV is the specimen's leaf colour: the species colour, jittered and browned by drying.
func (s *specimen) leafHSV() (h, sat, v float64) {
	r, t := s.r, s.t
	h = t.LeafH + 0.012*r.NormFloat64()
	sat = t.LeafS * (1 + 0.08*r.NormFloat64())
	v = t.LeafV * (1 + 0.08*r.NormFloat64())
	return brownish(h, sat, v, s.brown)
}

// brownish mixes a colour toward the dull brown of old dried plants by b in [0,1].
func brownish(h, s, v, b float64) (float64, float64, float64) {
	if h > 0.6 {
		h-- // reds and purples mix toward brown through red, not through blue
	}
	return h + (0.085-h)*b, s + (0.5-s)*b, v + (0.4-v)*b*0.7
}

func sign(r *rand.Rand) float64 {
	if r.IntN(2) == 0 {
		return -1
	}
	return 1
}

// plant draws the pressed plant: roots, a main axis with side branches, leaves and flowers.
func (s *specimen) plant(labelRight bool) {
	r, t, u := s.r, s.t, s.u
	angle := -math.Pi/2 + 0.1*r.NormFloat64()
	if r.Float64() < 0.15 { // laid diagonally to fit the sheet
		angle += sign(r) * (0.25 + 0.3*r.Float64())
	}
	length := (560 + 140*r.Float64()) * s.scale * u
	// Centre the stem's horizontal run on the sheet, a little away from the label's side.
	x := s.W*(0.4+0.15*r.Float64()) - math.Cos(angle)*length*0.5
	if !labelRight {
		x += s.W * 0.1
	}
	x = clamp(x, 0.15*s.W, 0.85*s.W)
	base := vec{x, s.H - (40+60*r.Float64())*u}
	if r.Float64() < 0.45 {
		s.roots(base)
	}
	nodes := max(3, t.Nodes+int(math.Round(0.8*r.NormFloat64())))
	s.branch(base, angle, length, nodes, t.StemWidth*s.scale*u, 0, 1)
}

func (s *specimen) roots(base vec) {
	r, u := s.r, s.u
	n := 3 + r.IntN(5)
	col := hsv(0.08, 0.45, 0.35+0.15*r.Float64())
	for range n {
		a := math.Pi/2 + 0.9*r.NormFloat64()
		l := (20 + 60*r.Float64()) * u
		line := []vec{base}
		p := base
		for range 5 {
			a += 0.35 * r.NormFloat64()
			p = p.add(polar(l/5, a))
			line = append(line, p)
		}
		s.stroke(line, max(0.8, 2.2*u), max(0.4, 0.5*u))
	}
	s.paint(col)
}

// branch draws one axis from base and recurses into side branches.
func (s *specimen) branch(base vec, angle, length float64, nodes int, width float64, depth int, leafScale float64) {
	r, t := s.r, s.t
	pts := make([]vec, nodes+1)
	angs := make([]float64, nodes+1)
	pts[0], angs[0] = base, angle
	seg := length / float64(nodes)
	a := angle
	for i := 1; i <= nodes; i++ {
		a += t.Curvature/float64(nodes) + 0.06*r.NormFloat64()
		pts[i] = pts[i-1].add(polar(seg*(0.85+0.3*r.Float64()), a))
		angs[i] = a
	}
	s.stroke(pts, math.Max(width, 0.8), math.Max(width*0.35, 0.6))
	s.paint(s.stemCol)

	for i := 1; i < nodes-1; i++ {
		if depth < 2 && r.Float64() < t.Branchiness*(1-0.4*float64(depth)) {
			frac := float64(i) / float64(nodes)
			s.branch(pts[i], angs[i]+sign(r)*(0.45+0.4*r.Float64()),
				length*(0.3+0.2*r.Float64())*(1-0.5*frac), max(2, nodes/2), width*0.6, depth+1, leafScale*0.75)
		}
	}

	side := sign(r)
	for i := 1; i <= nodes; i++ {
		pos := float64(i) / float64(nodes)
		size := leafScale * (1 - 0.5*pos*pos) * (0.75 + 0.25*math.Min(1, pos*4))
		switch t.Arrangement {
		case arrangeAlternate:
			s.leaf(pts[i], angs[i]+side*t.LeafAngle, size)
			side = -side
		case arrangeOpposite:
			s.leaf(pts[i], angs[i]+t.LeafAngle, size)
			s.leaf(pts[i], angs[i]-t.LeafAngle, size)
		default: // whorled: the pressed whorl shows two leaves flat and one or two folded forward
			s.leaf(pts[i], angs[i]+t.LeafAngle*1.2, size)
			s.leaf(pts[i], angs[i]-t.LeafAngle*1.2, size)
			s.leaf(pts[i], angs[i]+side*t.LeafAngle*0.4, size*0.85)
			if r.Float64() < 0.5 {
				s.leaf(pts[i], angs[i]-side*t.LeafAngle*0.4, size*0.8)
			}
			side = -side
		}
	}

	if !s.flowering {
		return
	}
	tip := pts[nodes]
	switch t.Inflorescence {
	case 0: // solitary terminal
		s.flower(tip, 1.0)
	case 1: // axillary, in the upper two thirds
		for i := nodes / 3; i <= nodes; i++ {
			if r.Float64() < 0.55 {
				side := sign(r)
				q := pts[i].add(polar(t.FlowerSize*0.9*s.u*s.scale, angs[i]+side*0.5*t.LeafAngle))
				s.pedicel(pts[i], q)
				s.flower(q, 0.75)
			}
		}
	default: // terminal cluster
		n := 3 + r.IntN(5)
		for k := range n {
			a := angs[nodes] + (float64(k)-float64(n-1)/2)*0.45 + 0.1*r.NormFloat64()
			q := tip.add(polar(t.FlowerSize*(1+0.6*r.Float64())*s.u*s.scale, a))
			s.pedicel(tip, q)
			s.flower(q, 0.65)
		}
	}
}

func (s *specimen) pedicel(a, b vec) {
	w := math.Max(0.6, s.t.StemWidth*0.25*s.u)
	s.stroke([]vec{a, a.lerp(b, 0.5), b}, w, w*0.8)
	s.paint(s.stemCol)
}

// flower draws an open pressed flower of relative size k at c.
func (s *specimen) flower(c vec, k float64) {
	r, t := s.r, s.t
	R := t.FlowerSize * k * s.u * s.scale * (0.85 + 0.3*r.Float64()) / 2
	rot := 2 * math.Pi * r.Float64()
	squash := 1.0
	if r.Float64() < 0.3 { // pressed side-on
		squash = 0.45
	}
	for i := range t.Petals {
		th := rot + 2*math.Pi*float64(i)/float64(t.Petals)
		d := polar(R*0.55, th)
		d.y *= squash
		s.ellipse(c.add(d), R*0.55, R*0.26, math.Atan2(math.Sin(th)*squash, math.Cos(th)), false)
	}
	col := s.flowerCol
	col.R = uint8(clamp(float64(col.R)+6*r.NormFloat64(), 0, 255))
	s.paint(col)
	s.ellipse(c, R*0.22, R*0.22*squash, 0, false)
	s.paint(s.centreCol)
}

// leaf draws a leaf whose petiole starts at node, pointing along angle, of relative size size.
func (s *specimen) leaf(node vec, angle, size float64) {
	r, t, u := s.r, s.t, s.u
	angle += 0.12 * r.NormFloat64()
	dir := polar(1, angle)
	petW := math.Max(0.7, t.StemWidth*0.35*u*s.scale)
	if r.Float64() < s.missing { // fallen off: a stub remains
		s.stroke([]vec{node, node.add(dir.mul(6 * u))}, petW, petW)
		s.paint(s.stemCol)
		return
	}
	L := t.LeafLen * size * s.scale * u * (0.88 + 0.24*r.Float64())
	if L < 2 {
		return
	}
	nrm := vec{-dir.y, dir.x}
	bladeBase := node.add(dir.mul(L * t.Petiole))
	if L*t.Petiole > 0.5 {
		s.stroke([]vec{node, node.lerp(bladeBase, 0.5), bladeBase}, petW, petW*0.8)
		s.paint(s.stemCol)
	}
	bend := 0.15 * r.NormFloat64()
	if r.Float64() < 0.5 {
		nrm = nrm.mul(-1) // leaves lie on either face
	}
	toSheet := func(q vec) vec {
		y := q.y + bend*q.x*q.x/L
		return bladeBase.add(dir.mul(q.x)).add(nrm.mul(y))
	}

	ol := s.outline(L)
	s.ring()
	for _, q := range ol {
		s.pt(toSheet(q))
	}
	h, sat, v := s.leafHSV()
	if r.Float64() < s.brown*0.5 { // a leaf browner than the rest
		h, sat, v = brownish(h, sat, v, 0.5)
	}
	s.paint(hsv(h, sat, v))
	s.veins(ol, L, toSheet)
	s.paint(s.veinCol)
}

// shapeBeta gives the (a, b) of the blade profile x^a (1-x)^b of the elongated shapes.
var shapeBeta = [numShapes][2]float64{
	shapeLanceolate: {0.6, 1.1},
	shapeElliptic:   {0.8, 0.8},
	shapeOvate:      {0.45, 0.9},
	shapeObovate:    {1.0, 0.45},
	shapeLinear:     {0.12, 0.3},
}

// outline returns the closed outline of a blade of length L along +x from the origin, with the
// species' shape and margin and this leaf's damage, in pixels.
func (s *specimen) outline(L float64) []vec {
	t := s.t
	halfW := L * t.Aspect * (0.9 + 0.2*s.r.Float64()) / 2
	var ol []vec
	if t.Shape == shapeCordate || t.Shape == shapeOrbicular {
		ol = s.roundOutline(s.ol[:0], L, halfW)
	} else {
		ol = s.betaOutline(s.ol[:0], L, halfW)
	}
	if s.r.Float64() < s.damage {
		s.damageOutline(ol, L)
	}
	s.ol = ol
	return ol
}

// roundOutline appends a cordate or orbicular blade, traced by angle, with its margin.
func (s *specimen) roundOutline(ol []vec, L, halfW float64) []vec {
	t := s.t
	teeth := float64(t.Teeth)
	lobes := float64(max(2, t.Teeth/2))
	n := 64 + 8*t.Teeth
	centre := vec{}
	if t.Shape == shapeOrbicular {
		centre = vec{L / 2, 0}
	}
	k := float64(2*(int(lobes)/2) + 1) // odd: one lobe at the tip
	for i := range n {
		phi := -math.Pi + 2*math.Pi*(float64(i)+0.5)/float64(n)
		var q vec
		if t.Shape == shapeCordate {
			rad := L * (1 + math.Cos(phi)) / 2
			q = polar(rad, phi)
			q.y *= t.Aspect / 0.65
		} else {
			q = vec{L/2 + L/2*math.Cos(phi+math.Pi), halfW * math.Sin(phi+math.Pi)}
		}
		m := 1.0
		switch t.Margin {
		case marginSerrate:
			f := teeth * 2 * (phi + math.Pi) / math.Pi
			m = 1 + 0.07*(f-math.Floor(f))
		case marginLobed:
			m = 0.5 + 0.5*math.Pow(math.Abs(math.Cos(k*phi/2)), 0.6)
		}
		ol = append(ol, centre.add(q.sub(centre).mul(m)))
	}
	return ol
}

// betaOutline appends an elongated blade: a beta-curve half-width profile along x (shapeBeta) with
// its margin, down one side and back the other, slightly asymmetric.
func (s *specimen) betaOutline(ol []vec, L, halfW float64) []vec {
	t := s.t
	teeth := float64(t.Teeth)
	lobes := float64(max(2, t.Teeth/2))
	ab := shapeBeta[t.Shape]
	a, b := ab[0], ab[1]
	norm := math.Pow(a/(a+b), a) * math.Pow(b/(a+b), b)
	n := 24 + 8*t.Teeth
	asym := 1 + 0.06*s.r.NormFloat64()
	prof := func(x float64) float64 {
		y := halfW * math.Pow(x, a) * math.Pow(1-x, b) / norm
		switch t.Margin {
		case marginSerrate:
			f := teeth * x
			y *= 1 + 0.16*(f-math.Floor(f))*math.Min(1, 6*x)
		case marginLobed:
			y *= 0.35 + 0.65*math.Sqrt(math.Abs(math.Sin(math.Pi*lobes*x)))
		}
		return y
	}
	for i := 0; i <= n; i++ {
		x := float64(i) / float64(n)
		ol = append(ol, vec{x * L, prof(x)})
	}
	for i := n - 1; i > 0; i-- {
		x := float64(i) / float64(n)
		ol = append(ol, vec{x * L, -prof(x) * asym})
	}
	return ol
}

// damageOutline takes a bite out of the margin of ol or breaks its tip off, in place.
func (s *specimen) damageOutline(ol []vec, L float64) {
	r := s.r
	if r.Float64() < 0.6 { // a bite out of the margin
		span := len(ol)/6 + 1
		i0 := r.IntN(len(ol))
		f := 0.15 + 0.45*r.Float64()
		for j := range span {
			q := &ol[(i0+j)%len(ol)]
			d := math.Sin(math.Pi * float64(j) / float64(span))
			q.y *= 1 - (1-f)*d*(0.85+0.3*r.Float64())
		}
		return
	}
	// the tip broken off
	cut := L * (0.55 + 0.3*r.Float64())
	for i := range ol {
		if ol[i].x > cut {
			ol[i].x = cut + L*0.02*r.Float64()
		}
	}
}

// veins adds the leaf's venation, read off its outline ol, mapped to the sheet by toSheet.
func (s *specimen) veins(ol []vec, L float64, toSheet func(vec) vec) {
	t := s.t
	const bins = 16
	var up, down [bins]float64
	xmax := 0.0
	for _, q := range ol {
		xmax = math.Max(xmax, q.x)
	}
	if xmax <= 0 {
		return
	}
	bin := func(x float64) int { return max(0, min(bins-1, int(x/xmax*bins))) }
	for _, q := range ol {
		b := bin(q.x)
		up[b] = math.Max(up[b], q.y)
		down[b] = math.Min(down[b], q.y)
	}
	var line [9]vec
	poly := func(f func(x float64) vec, n int, w0, w1 float64) {
		for i := 0; i < n; i++ {
			line[i] = toSheet(f(float64(i) / float64(n-1)))
		}
		s.stroke(line[:n], w0, w1)
	}
	mid := math.Max(0.7, L*0.022)
	thin := math.Max(0.5, L*0.009)
	poly(func(x float64) vec { return vec{x * xmax * 0.96, 0} }, 9, mid, mid*0.3)
	switch t.Venation {
	case veinPinnate:
		k := max(3, min(9, int(L/(12*s.u))))
		for j := 1; j <= k; j++ {
			xs := xmax * float64(j) / float64(k+1)
			xe := math.Min(xmax*0.97, xs+0.18*xmax)
			for _, hw := range []float64{up[bin(xe)], down[bin(xe)]} {
				end := vec{xe, 0.8 * hw}
				start := vec{xs, 0}
				poly(func(x float64) vec {
					q := start.lerp(end, x)
					q.y -= 0.15 * hw * x * (1 - x)
					return q
				}, 3, thin, thin*0.6)
			}
		}
	case veinParallel:
		for _, f := range []float64{-0.65, -0.3, 0.3, 0.65} {
			poly(func(x float64) vec {
				px := x * xmax * 0.95
				hw := up[bin(px)]
				if f < 0 {
					hw = -down[bin(px)]
				}
				return vec{px, f * hw}
			}, 9, thin, thin*0.5)
		}
	default: // palmate: rays from the base to the lobes
		for _, phi := range []float64{-1.1, -0.55, 0.55, 1.1} {
			best, bestD := vec{}, math.Inf(1)
			for _, q := range ol {
				if q.len() == 0 {
					continue
				}
				if d := math.Abs(math.Atan2(q.y, q.x) - phi); d < bestD {
					best, bestD = q, d
				}
			}
			end := best.mul(0.85)
			poly(func(x float64) vec { return vec{}.lerp(end, x) }, 3, mid*0.7, thin*0.6)
		}
	}
}

var (
	institutions = []string{"PROTOHERB HERBARIUM", "HERBARIUM SYNTHETICUM", "FLORA DIGITALIS", "HERB. ACAD. PROTO.", "MUSÉE DES PLANTES"}
	collectors   = []string{"Gray", "Torrey", "Müller", "Nuñez", "Janssen", "Bodé", "Wright", "Castañeda", "Løvås", "Beaupré", "Smith", "Okafor", "Tanaka", "Silva"}
	months       = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	compass      = []string{"N", "NE", "E", "SE", "S", "SW", "W", "NW"}
	// Colour checker patches (sRGB of the classic 24-patch chart's first two rows).
	checkerColours = []color.NRGBA{
		{115, 82, 68, 255}, {194, 150, 130, 255}, {98, 122, 157, 255}, {87, 108, 67, 255}, {133, 128, 177, 255}, {103, 189, 170, 255},
		{214, 126, 44, 255}, {80, 91, 166, 255}, {193, 90, 99, 255}, {94, 60, 108, 255}, {157, 188, 64, 255}, {224, 163, 46, 255},
	}
)

func town(r *rand.Rand) string {
	s := syllables(r, 2+r.IntN(2)) + []string{"ville", "ton", "o", "a", "burg", "polis", "ia"}[r.IntN(7)]
	return strings.ToUpper(s[:1]) + s[1:]
}

// label draws the collection label with its barcode sticker at the bottom of the sheet.
func (s *specimen) label(region string, right bool) {
	r, u := s.r, s.u
	const lw, lh = 300, 112
	w, h := lw*u, lh*u
	x := (20 + 25*r.Float64()) * u
	if right {
		x = s.W - w - (20+25*r.Float64())*u
	}
	y := s.H - h - (20+30*r.Float64())*u
	lines := []string{
		institutions[r.IntN(len(institutions))],
		"Plants of " + region,
		fmt.Sprintf("%d km %s of %s", 2+r.IntN(80), compass[r.IntN(8)], town(r)),
		fmt.Sprintf("Alt. %d m  %.3f° %.3f°", 50+r.IntN(3500), 90*r.Float64()-45, 360*r.Float64()-180),
		fmt.Sprintf("Coll. %c. %s %d", 'A'+rune(r.IntN(26)), collectors[r.IntN(len(collectors))], 1+r.IntN(9999)),
		fmt.Sprintf("%d %s %d", 1+r.IntN(28), months[r.IntN(12)], 1850+r.IntN(171)),
	}
	bg := color.NRGBA{uint8(246 + r.IntN(9)), uint8(244 + r.IntN(9)), uint8(232 + r.IntN(16)), 255}
	ink := color.NRGBA{uint8(20 + r.IntN(40)), uint8(20 + r.IntN(30)), uint8(30 + r.IntN(40)), 255}
	s.textBox(x, y, lw, lh, u, bg, ink, lines, true)
	// Frame.
	b := math.Max(1, 1.5*u)
	s.rect(x, y, x+w, y+h, false)
	s.rect(x+b, y+b, x+w-b, y+h-b, true)
	s.paint(color.NRGBA{60, 60, 60, 255})

	// Barcode sticker above the label.
	bw, bh := 130*u, 44*u
	bx, by := x+w-bw, y-bh-(8+10*r.Float64())*u
	s.rect(bx, by, bx+bw, by+bh, false)
	s.paint(color.NRGBA{252, 252, 250, 255})
	for px := bx + 8*u; px < bx+bw-10*u; {
		bar := float64(1+r.IntN(3)) * 1.3 * u
		s.rect(px, by+5*u, px+bar, by+bh-17*u, false)
		px += bar + float64(1+r.IntN(3))*1.3*u
	}
	s.paint(color.NRGBA{15, 15, 15, 255})
	s.textBox(bx+14*u, by+bh-19*u, 100, 18, u, color.NRGBA{}, color.NRGBA{15, 15, 15, 255},
		[]string{fmt.Sprintf("PH%08d", r.IntN(100000000))}, false)
}

// colourChecker draws a two-row colour chart along the top edge.
func (s *specimen) colourChecker() {
	r, u := s.r, s.u
	p, gap := 22*u, 3*u
	cw, ch := 6*p+7*gap, 2*p+3*gap
	x := s.W - cw - (20+20*r.Float64())*u
	if r.Float64() < 0.5 {
		x = (20 + 20*r.Float64()) * u
	}
	y := (15 + 25*r.Float64()) * u
	s.rect(x, y, x+cw, y+ch, false)
	s.paint(color.NRGBA{25, 25, 25, 255})
	for i, c := range checkerColours {
		px := x + gap + float64(i%6)*(p+gap)
		py := y + gap + float64(i/6)*(p+gap)
		s.rect(px, py, px+p, py+p, false)
		s.paint(c)
	}
}

// ruler draws a black and white scale bar in centimetres (about 24 units each) along the top.
func (s *specimen) ruler() {
	r, u := s.r, s.u
	cm := 23.8 * u
	n := 10
	rw, rh := float64(n)*cm+8*u, 18*u
	x := (20 + 20*r.Float64()) * u
	if r.Float64() < 0.5 {
		x = s.W - rw - (20+20*r.Float64())*u
	}
	y := (15 + 25*r.Float64()) * u
	s.rect(x, y, x+rw, y+rh, false)
	s.paint(color.NRGBA{245, 245, 240, 255})
	for i := 0; i < n; i += 2 {
		px := x + 4*u + float64(i)*cm
		s.rect(px, y+4*u, px+cm, y+rh-4*u, false)
	}
	b := math.Max(1, u)
	s.rect(x, y, x+rw, y+rh, false)
	s.rect(x+b, y+b, x+rw-b, y+rh-b, true)
	s.paint(color.NRGBA{20, 20, 20, 255})
}

// stamp draws a round institutional ink stamp, half transparent, somewhere in the upper half.
func (s *specimen) stamp() {
	r, u := s.r, s.u
	if r.Float64() < 0.2 {
		return
	}
	inks := []float64{0.0, 0.62, 0.78}
	ink := hsva(inks[r.IntN(len(inks))], 0.7, 0.55+0.2*r.Float64(), 0.55+0.3*r.Float64())
	c := vec{s.W * (0.55 + 0.35*r.Float64()), s.H * (0.12 + 0.35*r.Float64())}
	R := (34 + 10*r.Float64()) * u
	s.ellipse(c, R, R, 0, false)
	s.ellipse(c, R-3*u, R-3*u, 0, true)
	s.paint(ink)
	s.textBox(c.x-28*u, c.y-10*u, 56, 20, u, color.NRGBA{}, ink,
		[]string{fmt.Sprintf("H.%04d", 1+r.IntN(9999))}, false)
}

// lighting applies the scanner: overall gain and colour cast, a gentle light gradient, and a
// little sensor noise.
func (s *specimen) lighting() {
	r := s.r
	gain := 0.93 + 0.1*r.Float64()
	gx, gy := 0.06*r.NormFloat64(), 0.06*r.NormFloat64()
	var tint [3]int32
	for c := range tint {
		tint[c] = int32(256 * (gain + 0.008*r.NormFloat64()))
	}
	img := s.img
	w, h := img.Rect.Dx(), img.Rect.Dy()
	colF := make([]int32, w)
	for x := range colF {
		colF[x] = int32(256 * gx * (float64(x)/float64(w) - 0.5))
	}
	noise := uint32(r.Uint64()) | 1
	for y := 0; y < h; y++ {
		rowF := int32(256 * (1 + gy*(float64(y)/float64(h)-0.5)))
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := 0; x < w; x++ {
			f := rowF + colF[x]
			noise ^= noise << 13
			noise ^= noise >> 17
			noise ^= noise << 5
			n := int32(noise&7) - 3
			p := row[4*x : 4*x+3 : 4*x+3]
			for c := 0; c < 3; c++ {
				v := (int32(p[c])*f*tint[c])>>16 + n
				p[c] = uint8(max(0, min(255, v)))
			}
		}
	}
}
