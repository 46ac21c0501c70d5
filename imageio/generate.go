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
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	// Low-frequency paper colour: bilinear interpolation of a 12 x 8 grid of offsets.
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
	for y := 0; y < h; y++ {
		gy := float64(y) / float64(h) * (gh - 1)
		y0 := int(gy)
		y1 := min(y0+1, gh-1)
		fy := gy - float64(y0)
		for x := 0; x < w; x++ {
			gx := float64(x) / float64(w) * (gw - 1)
			x0 := int(gx)
			x1 := min(x0+1, gw-1)
			fx := gx - float64(x0)
			o := m.PixOffset(x, y)
			for k := 0; k < 3; k++ {
				v := base[k] + (grid[y0][x0][k]*(1-fx)+grid[y0][x1][k]*fx)*(1-fy) + (grid[y1][x0][k]*(1-fx)+grid[y1][x1][k]*fx)*fy
				m.Pix[o+k] = uint8(v)
			}
			m.Pix[o+3] = 255
		}
	}
	sx, sy := float64(w)/1024, float64(h)/1536
	disc := func(cx, cy, rx, ry float64, col [3]uint8) {
		for y := max(0, int(cy-ry)); y <= min(h-1, int(cy+ry)); y++ {
			for x := max(0, int(cx-rx)); x <= min(w-1, int(cx+rx)); x++ {
				dx, dy := (float64(x)-cx)/rx, (float64(y)-cy)/ry
				if dx*dx+dy*dy <= 1 {
					o := m.PixOffset(x, y)
					m.Pix[o], m.Pix[o+1], m.Pix[o+2] = col[0], col[1], col[2]
				}
			}
		}
	}
	rect := func(x0, y0, x1, y1 float64, col [3]uint8) {
		for y := max(0, int(y0)); y <= min(h-1, int(y1)); y++ {
			for x := max(0, int(x0)); x <= min(w-1, int(x1)); x++ {
				o := m.PixOffset(x, y)
				m.Pix[o], m.Pix[o+1], m.Pix[o+2] = col[0], col[1], col[2]
			}
		}
	}
	for range 6 + r.IntN(8) { // stems
		x, y := (200+600*r.Float64())*sx, (1300+150*r.Float64())*sy
		col := [3]uint8{uint8(30 + r.IntN(60)), uint8(50 + r.IntN(60)), uint8(20 + r.IntN(40))}
		for range 40 {
			nx, ny := x+r.NormFloat64()*25*sx, y-(10+25*r.Float64())*sy
			width := float64(2+r.IntN(5)) * sx / 2
			steps := int(math.Hypot(nx-x, ny-y)) + 1
			for s := 0; s <= steps; s++ {
				f := float64(s) / float64(steps)
				disc(x+(nx-x)*f, y+(ny-y)*f, width+0.5, width+0.5, col)
			}
			x, y = nx, ny
			if r.Float64() < 0.35 { // leaf
				rad, a := (15+45*r.Float64())*sx, 0.3+0.7*r.Float64()
				f := 0.7 + 0.6*r.Float64()
				leaf := [3]uint8{uint8(min(255, float64(col[0])*f)), uint8(min(255, float64(col[1])*f)), uint8(min(255, float64(col[2])*f))}
				disc(x, y, rad, rad*a, leaf)
			}
		}
	}
	for range 2 { // labels
		x0, y0 := (500+300*r.Float64())*sx, (1200+220*r.Float64())*sy
		rect(x0, y0, x0+200*sx, y0+100*sy, [3]uint8{40, 40, 40})
		rect(x0+1, y0+1, x0+200*sx-1, y0+100*sy-1, [3]uint8{245, 245, 240})
		for row := range 6 {
			for c := range 8 + r.IntN(8) {
				bx, by := x0+float64(8+c*12)*sx, y0+float64(10+row*14)*sy
				rect(bx, by, bx+8*sx, by+8*sy, [3]uint8{30, 30, 30})
			}
		}
	}
	for i := 0; i < len(m.Pix); i += 4 {
		for k := 0; k < 3; k++ {
			v := float64(m.Pix[i+k]) + r.NormFloat64()*3
			m.Pix[i+k] = uint8(min(255, max(0, math.Round(v))))
		}
	}
	return m
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
