package synth

import (
	"image"
	"image/color"
	"image/draw"
	"math"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/inconsolata"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

type vec struct{ x, y float64 }

func (a vec) add(b vec) vec             { return vec{a.x + b.x, a.y + b.y} }
func (a vec) sub(b vec) vec             { return vec{a.x - b.x, a.y - b.y} }
func (a vec) mul(k float64) vec         { return vec{a.x * k, a.y * k} }
func (a vec) len() float64              { return math.Hypot(a.x, a.y) }
func polar(r, angle float64) vec        { return vec{r * math.Cos(angle), r * math.Sin(angle)} }
func (a vec) lerp(b vec, t float64) vec { return a.add(b.sub(a).mul(t)) }

// canvas fills anti-aliased polygons on an RGBA image. A path is a set of closed rings filled
// together with the non-zero rule (a ring of opposite orientation cuts a hole); the rasteriser only
// covers the path's bounding box, so small shapes are cheap on a large sheet.
type canvas struct {
	img   *image.RGBA
	z     vector.Rasterizer
	src   image.Uniform
	pts   []vec
	rings []int // start of each ring in pts
	text  *image.RGBA
}

func (c *canvas) reset(w, h int) {
	n := 4 * w * h
	if c.img == nil || cap(c.img.Pix) < n {
		c.img = image.NewRGBA(image.Rect(0, 0, w, h))
	} else {
		c.img.Pix = c.img.Pix[:n]
		c.img.Stride = 4 * w
		c.img.Rect = image.Rect(0, 0, w, h)
	}
	c.begin()
}

// fillAll paints the whole image one colour.
func (c *canvas) fillAll(col color.NRGBA) {
	pix := c.img.Pix
	pix[0], pix[1], pix[2], pix[3] = col.R, col.G, col.B, 255
	for n := 4; n < len(pix); n *= 2 {
		copy(pix[n:], pix[:n])
	}
}

func (c *canvas) begin() {
	c.pts = c.pts[:0]
	c.rings = c.rings[:0]
}

// ring starts a new closed ring; following point calls add to it.
func (c *canvas) ring() { c.rings = append(c.rings, len(c.pts)) }

func (c *canvas) pt(p vec) { c.pts = append(c.pts, p) }

// paint fills the current path with col and starts a new path.
func (c *canvas) paint(col color.NRGBA) {
	defer c.begin()
	if len(c.pts) < 3 {
		return
	}
	minX, minY := math.Inf(1), math.Inf(1)
	maxX, maxY := math.Inf(-1), math.Inf(-1)
	for _, p := range c.pts {
		minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
		minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
	}
	r := image.Rect(int(math.Floor(minX)), int(math.Floor(minY)), int(math.Ceil(maxX))+1, int(math.Ceil(maxY))+1)
	r = r.Intersect(c.img.Rect)
	if r.Empty() {
		return
	}
	c.z.Reset(r.Dx(), r.Dy())
	ox, oy := float64(r.Min.X), float64(r.Min.Y)
	for i, start := range c.rings {
		end := len(c.pts)
		if i+1 < len(c.rings) {
			end = c.rings[i+1]
		}
		if end-start < 3 {
			continue
		}
		for j, p := range c.pts[start:end] {
			x, y := float32(p.x-ox), float32(p.y-oy)
			if j == 0 {
				c.z.MoveTo(x, y)
			} else {
				c.z.LineTo(x, y)
			}
		}
		c.z.ClosePath()
	}
	c.src.C = col
	c.z.Draw(c.img, r, &c.src, image.Point{})
}

// stroke adds the outline of a polyline whose width tapers from w0 to w1 as one ring.
func (c *canvas) stroke(line []vec, w0, w1 float64) {
	n := len(line)
	if n < 2 {
		return
	}
	c.ring()
	side := func(i int, sign float64) vec {
		a, b := line[max(0, i-1)], line[min(n-1, i+1)]
		d := b.sub(a)
		l := d.len()
		if l == 0 {
			return line[i]
		}
		w := (w0 + (w1-w0)*float64(i)/float64(n-1)) / 2
		return line[i].add(vec{-d.y, d.x}.mul(sign * w / l))
	}
	for i := 0; i < n; i++ {
		c.pt(side(i, 1))
	}
	for i := n - 1; i >= 0; i-- {
		c.pt(side(i, -1))
	}
}

// ellipse adds an ellipse with semi-axes a (along angle) and b as a ring; reverse turns it the other
// way, to cut a hole in a ring added before it.
func (c *canvas) ellipse(center vec, a, b, angle float64, reverse bool) {
	n := max(12, min(64, int(2*(a+b))))
	c.ring()
	ca, sa := math.Cos(angle), math.Sin(angle)
	for i := 0; i < n; i++ {
		t := 2 * math.Pi * float64(i) / float64(n)
		if reverse {
			t = -t
		}
		x, y := a*math.Cos(t), b*math.Sin(t)
		c.pt(vec{center.x + x*ca - y*sa, center.y + x*sa + y*ca})
	}
}

// rect adds an axis-aligned rectangle as a ring.
func (c *canvas) rect(x0, y0, x1, y1 float64, reverse bool) {
	c.ring()
	if reverse {
		c.pt(vec{x0, y0})
		c.pt(vec{x0, y1})
		c.pt(vec{x1, y1})
		c.pt(vec{x1, y0})
		return
	}
	c.pt(vec{x0, y0})
	c.pt(vec{x1, y0})
	c.pt(vec{x1, y1})
	c.pt(vec{x0, y1})
}

// textBox draws lines of text in a box whose top-left corner is at (x, y) pixels. The text is set
// at the font's own size in a box of nominal size (w×h font pixels) on bg (transparent allowed), then
// scaled by scale onto the sheet, so labels keep their proportions at every sheet size.
func (c *canvas) textBox(x, y float64, w, h int, scale float64, bg, ink color.NRGBA, lines []string, boldFirst bool) {
	if c.text == nil || c.text.Rect.Dx() != w || c.text.Rect.Dy() != h {
		c.text = image.NewRGBA(image.Rect(0, 0, w, h))
	}
	draw.Draw(c.text, c.text.Rect, image.NewUniform(bg), image.Point{}, draw.Src)
	d := font.Drawer{Dst: c.text, Src: image.NewUniform(ink)}
	for i, line := range lines {
		d.Face = inconsolata.Regular8x16
		if i == 0 && boldFirst {
			d.Face = inconsolata.Bold8x16
		}
		d.Dot = fixed.P(6, 16+17*i)
		d.DrawString(line)
	}
	dst := image.Rect(int(x), int(y), int(x+float64(w)*scale+0.5), int(y+float64(h)*scale+0.5))
	if math.Abs(scale-1) < 0.02 {
		draw.Draw(c.img, dst, c.text, image.Point{}, draw.Over)
		return
	}
	xdraw.ApproxBiLinear.Scale(c.img, dst, c.text, c.text.Rect, draw.Over, nil)
}

// hsv converts hue, saturation, value in [0,1] (hue wraps) to an opaque colour.
func hsv(h, s, v float64) color.NRGBA {
	return hsva(h, s, v, 1)
}

func hsva(h, s, v, a float64) color.NRGBA {
	h = math.Mod(h, 1)
	if h < 0 {
		h++
	}
	s, v = clamp(s, 0, 1), clamp(v, 0, 1)
	i := math.Floor(h * 6)
	f := h*6 - i
	p, q, t := v*(1-s), v*(1-f*s), v*(1-(1-f)*s)
	var r, g, b float64
	switch int(i) % 6 {
	case 0:
		r, g, b = v, t, p
	case 1:
		r, g, b = q, v, p
	case 2:
		r, g, b = p, v, t
	case 3:
		r, g, b = p, q, v
	case 4:
		r, g, b = t, p, v
	default:
		r, g, b = v, p, q
	}
	return color.NRGBA{uint8(r*255 + 0.5), uint8(g*255 + 0.5), uint8(b*255 + 0.5), uint8(clamp(a, 0, 1)*255 + 0.5)}
}
