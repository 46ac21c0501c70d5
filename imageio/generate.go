package imageio

import (
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"protoherb/atomicfile"
)

// SpecimenImage draws a synthetic herbarium-like sheet: beige paper with smooth low-frequency
// variation, dark random-walk stems with elliptical leaves, two labels with text-like marks, and
// Gaussian sensor noise (sigma 3), like the reference benchmark's generator. Deterministic for a seed.
func SpecimenImage(w, h int, seed uint64) *image.RGBA {
	r := rand.New(rand.NewPCG(seed, 0x5bec))
	return specimen(w, h, r)
}

func specimen(w, h int, r *rand.Rand) *image.RGBA {
	c := sheet{m: image.NewRGBA(image.Rect(0, 0, w, h)), w: w, h: h,
		sx: float64(w) / 1024, sy: float64(h) / 1536}
	c.paper(r)
	for range 6 + r.IntN(8) {
		c.stem(r)
	}
	for range 2 {
		c.label(r)
	}
	c.noise(r)
	return c.m
}

// sheet is a specimen image being drawn; sx and sy scale the 1024 × 1536 layout to its size.
type sheet struct {
	m      *image.RGBA
	w, h   int
	sx, sy float64
}

// paper fills the sheet with a low-frequency paper colour: bilinear interpolation of a 12 x 8 grid
// of offsets.
func (c sheet) paper(r *rand.Rand) {
	const gw, gh = 8, 12
	var grid [gh][gw][3]float64
	for y := range grid {
		for x := range grid[y] {
			for k := 0; k < 3; k++ {
				grid[y][x][k] = r.NormFloat64() * 12
			}
		}
	}
	base := [3]float64{222, 210, 180}
	for y := 0; y < c.h; y++ {
		gy := float64(y) / float64(c.h) * (gh - 1)
		y0 := int(gy)
		y1 := min(y0+1, gh-1)
		fy := gy - float64(y0)
		for x := 0; x < c.w; x++ {
			gx := float64(x) / float64(c.w) * (gw - 1)
			x0 := int(gx)
			x1 := min(x0+1, gw-1)
			fx := gx - float64(x0)
			o := c.m.PixOffset(x, y)
			for k := 0; k < 3; k++ {
				v := base[k] + (grid[y0][x0][k]*(1-fx)+grid[y0][x1][k]*fx)*(1-fy) + (grid[y1][x0][k]*(1-fx)+grid[y1][x1][k]*fx)*fy
				c.m.Pix[o+k] = uint8(v)
			}
			c.m.Pix[o+3] = 255
		}
	}
}

// disc fills the ellipse of radii rx, ry around (cx, cy).
func (c sheet) disc(cx, cy, rx, ry float64, col [3]uint8) {
	for y := max(0, int(cy-ry)); y <= min(c.h-1, int(cy+ry)); y++ {
		for x := max(0, int(cx-rx)); x <= min(c.w-1, int(cx+rx)); x++ {
			dx, dy := (float64(x)-cx)/rx, (float64(y)-cy)/ry
			if dx*dx+dy*dy <= 1 {
				o := c.m.PixOffset(x, y)
				c.m.Pix[o], c.m.Pix[o+1], c.m.Pix[o+2] = col[0], col[1], col[2]
			}
		}
	}
}

// rect fills the rectangle from (x0, y0) to (x1, y1), inclusive.
func (c sheet) rect(x0, y0, x1, y1 float64, col [3]uint8) {
	for y := max(0, int(y0)); y <= min(c.h-1, int(y1)); y++ {
		for x := max(0, int(x0)); x <= min(c.w-1, int(x1)); x++ {
			o := c.m.PixOffset(x, y)
			c.m.Pix[o], c.m.Pix[o+1], c.m.Pix[o+2] = col[0], col[1], col[2]
		}
	}
}

// stem draws a dark random-walk stem upward from near the bottom, with elliptical leaves.
func (c sheet) stem(r *rand.Rand) {
	sx, sy := c.sx, c.sy
	x, y := (200+600*r.Float64())*sx, (1300+150*r.Float64())*sy
	col := [3]uint8{uint8(30 + r.IntN(60)), uint8(50 + r.IntN(60)), uint8(20 + r.IntN(40))}
	for range 40 {
		nx, ny := x+r.NormFloat64()*25*sx, y-(10+25*r.Float64())*sy
		width := float64(2+r.IntN(5)) * sx / 2
		steps := int(math.Hypot(nx-x, ny-y)) + 1
		for s := 0; s <= steps; s++ {
			f := float64(s) / float64(steps)
			c.disc(x+(nx-x)*f, y+(ny-y)*f, width+0.5, width+0.5, col)
		}
		x, y = nx, ny
		if r.Float64() < 0.35 { // leaf
			rad, a := (15+45*r.Float64())*sx, 0.3+0.7*r.Float64()
			f := 0.7 + 0.6*r.Float64()
			leaf := [3]uint8{uint8(min(255, float64(col[0])*f)), uint8(min(255, float64(col[1])*f)), uint8(min(255, float64(col[2])*f))}
			c.disc(x, y, rad, rad*a, leaf)
		}
	}
}

// label draws a framed label with six rows of text-like marks.
func (c sheet) label(r *rand.Rand) {
	sx, sy := c.sx, c.sy
	x0, y0 := (500+300*r.Float64())*sx, (1200+220*r.Float64())*sy
	c.rect(x0, y0, x0+200*sx, y0+100*sy, [3]uint8{40, 40, 40})
	c.rect(x0+1, y0+1, x0+200*sx-1, y0+100*sy-1, [3]uint8{245, 245, 240})
	for row := range 6 {
		for i := range 8 + r.IntN(8) {
			bx, by := x0+float64(8+i*12)*sx, y0+float64(10+row*14)*sy
			c.rect(bx, by, bx+8*sx, by+8*sy, [3]uint8{30, 30, 30})
		}
	}
}

// noise adds Gaussian sensor noise (sigma 3) to every channel of every pixel.
func (c sheet) noise(r *rand.Rand) {
	for i := 0; i < len(c.m.Pix); i += 4 {
		for k := 0; k < 3; k++ {
			v := float64(c.m.Pix[i+k]) + r.NormFloat64()*3
			c.m.Pix[i+k] = uint8(min(255, max(0, math.Round(v))))
		}
	}
}

// GenerateJPEGs writes n synthetic specimen JPEGs of w x h at the given quality into dir
// (spec_000.jpg, ...) and returns their paths. Used by `protoherb bench decode --generate`.
func GenerateJPEGs(ctx context.Context, dir string, n, w, h, quality int, seed uint64) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for i := range n {
		if err := ctx.Err(); err != nil {
			return paths, err
		}
		m := SpecimenImage(w, h, seed+uint64(i))
		path := filepath.Join(dir, fmt.Sprintf("spec_%03d.jpg", i))
		f, err := atomicfile.Create(path)
		if err != nil {
			return paths, err
		}
		if err := jpeg.Encode(f, m, &jpeg.Options{Quality: quality}); err != nil {
			f.Abort()
			return paths, fmt.Errorf("%s: %w", path, err)
		}
		if err := f.Commit(); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}
