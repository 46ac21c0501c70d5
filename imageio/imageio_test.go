package imageio

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/dataset"
	"protoherb/internal/testenv"
)

func encJPEG(t testing.TB, m image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encPNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// flat returns a w x h image of one colour.
func flat(w, h int, c color.RGBA) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return m
}

func near(a, b uint8, tol int) bool { return math.Abs(float64(a)-float64(b)) <= float64(tol) }

func TestDecodeJPEGAndPNG(t *testing.T) {
	red := color.RGBA{200, 30, 40, 255}
	m, err := DecodeBytes(encJPEG(t, flat(40, 30, red), 95), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.W != 40 || m.H != 30 || m.C != 3 || !near(m.At(20, 15, 0), 200, 3) || !near(m.At(20, 15, 1), 30, 3) || !near(m.At(20, 15, 2), 40, 3) {
		t.Errorf("jpeg: %dx%dx%d %v", m.W, m.H, m.C, m.Pix[:3])
	}
	g := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range g.Pix {
		g.Pix[i] = 77
	}
	for name, b := range map[string][]byte{"gray jpeg": encJPEG(t, g, 95), "gray png": encPNG(t, g)} {
		m, err = DecodeBytes(b, 0)
		if err != nil {
			t.Fatal(name, err)
		}
		if m.C != 1 || m.W != 16 || m.H != 8 || !near(m.Pix[5], 77, 2) {
			t.Errorf("%s: %dx%dx%d %v", name, m.W, m.H, m.C, m.Pix[5])
		}
	}
	half := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(half.Pix); i += 4 {
		half.Pix[i], half.Pix[i+1], half.Pix[i+2], half.Pix[i+3] = 0, 0, 0, 128 // half-transparent black
	}
	m, err = DecodeBytes(encPNG(t, half), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.C != 3 || !near(m.Pix[0], 127, 2) {
		t.Errorf("RGBA png over white: %v", m.Pix[:3])
	}
}

func TestDCTScaling(t *testing.T) {
	b := encJPEG(t, SpecimenImage(1024, 1536, 1), 90)
	m, err := DecodeBytesScaled(b, DecodeOptions{MinW: 256, MinH: 256})
	if err != nil {
		t.Fatal(err)
	}
	if m.W != 256 || m.H != 384 || m.SrcW != 1024 || m.SrcH != 1536 {
		t.Errorf("decoded %dx%d from %dx%d, want 256x384 (scale 1/4)", m.W, m.H, m.SrcW, m.SrcH)
	}
	if s := pickScale(1000, 667, 300, 200); s.apply(1000) < 300 || s.apply(667) < 200 || s.apply(1000) > 400 {
		t.Errorf("scale %v gives %dx%d", s, s.apply(1000), s.apply(667))
	}
	if s := pickScale(100, 100, 500, 500); s != (scale{1, 1}) {
		t.Errorf("never upscale: %v", s)
	}
}

func TestDecodeBytesRefusals(t *testing.T) {
	big := encJPEG(t, image.NewGray(image.Rect(0, 0, 3000, 2000)), 50)
	var tl *TooLargeError
	if _, err := DecodeBytes(big, 1_000_000); !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) || tl.W != 3000 || tl.H != 2000 {
		t.Errorf("bomb: %v", err)
	}
	// Only the header of a huge image: refused for its size, proving the check precedes decoding.
	head := big[:600]
	if _, err := DecodeBytes(head, 1_000_000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("header-only bomb: %v", err)
	}
	if _, err := DecodeBytes(head, 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated jpeg: %v", err)
	}
	pngBomb := encPNG(t, image.NewGray(image.Rect(0, 0, 5000, 5000)))
	if _, err := DecodeBytes(pngBomb, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("png bomb: %v", err)
	}
	for name, b := range map[string][]byte{"gif": []byte("GIF89a\x01\x00\x01\x00"), "text": []byte("hello"), "empty": nil} {
		if _, err := DecodeBytes(b, 0); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := DecodeBytes(encPNG(t, flat(8, 8, color.RGBA{1, 2, 3, 255}))[:40], 0); !errors.Is(err, ErrCorrupt) {
		t.Error("truncated png not corrupt")
	}
}

func TestResample(t *testing.T) {
	src := &Image{W: 4, H: 2, C: 1, Pix: []uint8{0, 100, 200, 50, 10, 20, 30, 40}}
	var r Resampler
	out := make([]uint8, 8)
	r.Resample(src, Box{0, 0, 4, 2}, 4, 2, out)
	if !slices.Equal(out, src.Pix) {
		t.Errorf("identity resample changed pixels: %v", out)
	}
	// Halving averages pairs (triangle filter of support 2 over a 2x box).
	flatIm := &Image{W: 64, H: 64, C: 3, Pix: bytes.Repeat([]uint8{10, 128, 250}, 64*64)}
	out = make([]uint8, 17*13*3)
	r.Resample(flatIm, Box{3.5, 1, 60, 50}, 17, 13, out)
	for i := 0; i < len(out); i += 3 {
		if out[i] != 10 || out[i+1] != 128 || out[i+2] != 250 {
			t.Fatalf("flat image not flat after resampling: %v", out[i:i+3])
		}
	}
	stripes := &Image{W: 8, H: 1, C: 1, Pix: []uint8{0, 200, 0, 200, 0, 200, 0, 200}}
	out = make([]uint8, 4)
	r.Resample(stripes, Box{0, 0, 8, 1}, 4, 1, out)
	for _, v := range out[1:3] {
		if !near(v, 100, 2) {
			t.Errorf("downscaled stripes %v, want ~100", out)
		}
	}
}

// quadrants: a 2s x 2s image whose quadrants are TL red, TR green, BL blue, BR white.
func quadrants(s int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, 2*s, 2*s))
	cols := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}
	for y := 0; y < 2*s; y++ {
		for x := 0; x < 2*s; x++ {
			m.SetRGBA(x, y, cols[(y/s)*2+x/s])
		}
	}
	return m
}

func TestTensorGeometryAndNormalisation(t *testing.T) {
	b := encPNG(t, quadrants(16))
	p, err := NewProcessor()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	none := []float32{0, 0, 0}
	one := []float32{1, 1, 1}
	tr := Transform{Size: 8, Mean: none, Std: one}
	out := make([]float32, 3*8*8)
	// pix returns the RGB of output (x, y).
	pix := func(x, y int) [3]float32 { return [3]float32{out[y*8+x], out[64+y*8+x], out[128+y*8+x]} }
	if err := p.Tensor(b, &tr, nil, 0, 0, out); err != nil {
		t.Fatal(err)
	}
	if pix(1, 1) != [3]float32{1, 0, 0} || pix(6, 1) != [3]float32{0, 1, 0} || pix(1, 6) != [3]float32{0, 0, 1} {
		t.Errorf("centre crop: TL %v TR %v BL %v", pix(1, 1), pix(6, 1), pix(1, 6))
	}
	// Rotating by 90 degrees counter-clockwise moves the top-right (green) quadrant to the top-left.
	if err := p.Tensor(b, &tr, nil, 90, 0, out); err != nil {
		t.Fatal(err)
	}
	if pix(1, 1) != [3]float32{0, 1, 0} || pix(1, 6) != [3]float32{1, 0, 0} {
		t.Errorf("rot90: TL %v BL %v", pix(1, 1), pix(1, 6))
	}
	// ImageNet normalisation of pure red.
	tr = Transform{Size: 8}
	if err := p.Tensor(b, &tr, nil, 0, 0, out); err != nil {
		t.Fatal(err)
	}
	if want := (1 - 0.485) / 0.229; math.Abs(float64(out[0])-want) > 1e-4 || math.Abs(float64(out[64])+0.456/0.224) > 1e-4 {
		t.Errorf("normalised red: %v %v", out[0], out[64])
	}
	// One channel, inverted: white becomes 0, red becomes 1-0.299.
	tr = Transform{Size: 8, Channels: 1, Invert: true}
	if err := p.Tensor(b, &tr, nil, 0, 0, out); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(out[7*8+7])) > 1e-6 || math.Abs(float64(out[0])-(1-0.299)) > 1e-3 {
		t.Errorf("gray inverted: BR %v TL %v", out[63], out[0])
	}
	if err := p.Tensor(b, &Transform{Size: 8, Resize: 4}, nil, 0, 0, out); err == nil {
		t.Error("resize smaller than size accepted")
	}
}

func TestRandomTransformsDeterministic(t *testing.T) {
	b := encJPEG(t, SpecimenImage(300, 200, 3), 90)
	p, _ := NewProcessor()
	defer p.Close()
	tr := Transform{Size: 32, RandomCrop: true, HFlip: true, Rot90: true, Jitter: ColorJitter{0.4, 0.4, 0.4}}
	a, c, d := make([]float32, 3*32*32), make([]float32, 3*32*32), make([]float32, 3*32*32)
	p.Tensor(b, &tr, ItemRand(5, 1), 0, 0, a)
	p.Tensor(b, &tr, ItemRand(5, 1), 0, 0, c)
	p.Tensor(b, &tr, ItemRand(6, 1), 0, 0, d)
	if !slices.Equal(a, c) {
		t.Error("same seed, different tensors")
	}
	if slices.Equal(a, d) {
		t.Error("different seeds, same tensors")
	}
	for _, v := range a {
		if math.IsNaN(float64(v)) || v < -3 || v > 3 {
			t.Fatalf("value %v out of the normalised range", v)
		}
	}
	for range 100 {
		bx := randomCrop(300, 200, [2]float64{0.08, 1}, [2]float64{0.75, 4.0 / 3}, ItemRand(1, 2))
		if bx.X0 < 0 || bx.Y0 < 0 || bx.X1 > 300 || bx.Y1 > 200 || bx.X1 <= bx.X0 || bx.Y1 <= bx.Y0 {
			t.Fatalf("crop box %+v outside the image", bx)
		}
	}
}

// fixture writes n small specimen JPEGs plus bad files, and returns items (good ones labelled i).
func fixture(t *testing.T, n int) (dir string, items []Item) {
	dir = t.TempDir()
	for i := range n {
		p := filepath.Join(dir, "img"+string(rune('a'+i))+".jpg")
		if err := os.WriteFile(p, encJPEG(t, SpecimenImage(120+i*7, 90+i*5, uint64(i)), 90), 0o644); err != nil {
			t.Fatal(err)
		}
		items = append(items, Item{Path: p, Label: int64(i)})
	}
	return dir, items
}

func collect(t *testing.T, l *Loader, items []Item, seed uint64) (x []float32, labels []int64, index []int, bad []BadImage) {
	t.Helper()
	s := l.Stream(context.Background(), items, seed)
	defer s.Close()
	for {
		b, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b.X) != b.N*b.C*b.H*b.W || len(b.Labels) != b.N || len(b.Index) != b.N {
			t.Fatalf("inconsistent batch N=%d X=%d labels=%d", b.N, len(b.X), len(b.Labels))
		}
		if b.N > 0 && b.Decode <= 0 {
			t.Fatalf("batch of %d decoded images reports no decoding time", b.N)
		}
		x = append(x, b.X...)
		labels = append(labels, b.Labels...)
		index = append(index, b.Index...)
	}
	return x, labels, index, s.Bad()
}

func TestLoaderDeterministicAcrossWorkers(t *testing.T) {
	_, items := fixture(t, 11)
	tr := Transform{Size: 24, RandomCrop: true, HFlip: true, Jitter: ColorJitter{Brightness: 0.3}}
	l1, err := NewLoader(LoaderOptions{Workers: 1, BatchSize: 4, Transform: tr})
	if err != nil {
		t.Fatal(err)
	}
	l3, _ := NewLoader(LoaderOptions{Workers: 3, BatchSize: 4, Prefetch: 1, Transform: tr})
	x1, lab1, idx1, _ := collect(t, l1, items, 42)
	x3, lab3, idx3, _ := collect(t, l3, items, 42)
	if !slices.Equal(x1, x3) || !slices.Equal(lab1, lab3) || !slices.Equal(idx1, idx3) {
		t.Error("1 and 3 workers disagree")
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(idx1, want) || lab1[10] != 10 {
		t.Errorf("order %v labels %v", idx1, lab1)
	}
	x2, _, _, _ := collect(t, l3, items, 43)
	if slices.Equal(x1, x2) {
		t.Error("seed ignored")
	}
	b, err := l3.Load(context.Background(), items[:5], 42)
	if err != nil || b.N != 5 || !slices.Equal(b.X, x1[:len(b.X)]) {
		t.Errorf("Load: %v, N=%d", err, b.N)
	}
}

func TestLoaderBadImages(t *testing.T) {
	dir, items := fixture(t, 3)
	trunc, _ := os.ReadFile(items[0].Path)
	bad := map[string][]byte{
		"truncated.jpg": trunc[:len(trunc)/2],
		"text.jpg":      []byte("not an image"),
		"empty.jpg":     nil,
	}
	for name, b := range bad {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	list := []Item{items[0], {Path: filepath.Join(dir, "truncated.jpg")}, items[1], {Path: filepath.Join(dir, "missing.jpg")},
		{Path: filepath.Join(dir, "text.jpg")}, {Path: filepath.Join(dir, "empty.jpg")}, items[2]}
	l, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 3, Transform: Transform{Size: 16}})
	_, labels, index, skipped := collect(t, l, list, 1)
	if !slices.Equal(index, []int{0, 2, 6}) || !slices.Equal(labels, []int64{0, 1, 2}) {
		t.Errorf("kept %v labels %v", index, labels)
	}
	if len(skipped) != 4 {
		t.Fatalf("skipped %v", skipped)
	}
	for _, s := range skipped {
		if !strings.Contains(s.Error(), list[s.Index].Path) {
			t.Errorf("%q does not name the file", s.Error())
		}
	}
	lf, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 3, OnBad: Fail, Transform: Transform{Size: 16}})
	s := lf.Stream(context.Background(), list, 1)
	defer s.Close()
	var err error
	for err == nil {
		_, err = s.Next()
	}
	if err == io.EOF || !strings.Contains(err.Error(), "truncated.jpg") {
		t.Errorf("fail policy: %v", err)
	}
}

func TestLoaderCancel(t *testing.T) {
	_, items := fixture(t, 4)
	many := slices.Repeat(items, 50)
	l, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 2, Transform: Transform{Size: 16}})
	ctx, cancel := context.WithCancel(context.Background())
	s := l.Stream(ctx, many, 1)
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	var err error
	for range 200 {
		if _, err = s.Next(); err != nil {
			break
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v", err)
	}
	s.Close()
}

func TestCache(t *testing.T) {
	dir, items := fixture(t, 5)
	os.WriteFile(filepath.Join(dir, "bad.jpg"), []byte("junk"), 0o644)
	paths := []string{}
	for _, it := range items {
		paths = append(paths, it.Path)
	}
	paths = append(paths, filepath.Join(dir, "bad.jpg"))
	out := filepath.Join(dir, "c.cache")
	rep, err := BuildCache(context.Background(), out, paths, CacheOptions{Size: 48, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images != 5 || rep.Bad != 1 {
		t.Errorf("report %+v", rep)
	}
	c, err := OpenCache(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, ok, err := c.Lookup(paths[0])
	if !ok || err != nil || min(m.W, m.H) != 48 || m.W != 64 || m.C != 3 {
		t.Fatalf("lookup: %v %v %+v", ok, err, m)
	}
	if _, ok, err := c.Lookup(paths[5]); !ok || !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad entry: %v %v", ok, err)
	}
	if _, ok, _ := c.Lookup("/nowhere.jpg"); ok {
		t.Error("found a path never cached")
	}
	// The loader reading the cache gives nearly what it gives decoding the files.
	tr := Transform{Size: 32, Resize: 48}
	lf, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 2, Transform: tr})
	lc, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 2, Transform: tr, Cache: c})
	list := append(slices.Clone(items), Item{Path: paths[5]})
	xf, _, _, _ := collect(t, lf, list, 1)
	xc, _, idx, bad := collect(t, lc, list, 1)
	if len(xf) != len(xc) || len(idx) != 5 || len(bad) != 1 {
		t.Fatalf("cache loader: %d vs %d values, %d bad", len(xf), len(xc), len(bad))
	}
	var diff float64
	for i := range xf {
		diff += math.Abs(float64(xf[i] - xc[i]))
	}
	if diff /= float64(len(xf)); diff > 0.1 {
		t.Errorf("cached and decoded tensors differ by %.3f on average", diff)
	}
	if _, err := BuildCache(context.Background(), filepath.Join(dir, "f.cache"), paths, CacheOptions{Size: 48, OnBad: Fail}); err == nil ||
		!strings.Contains(err.Error(), "bad.jpg") {
		t.Errorf("fail policy: %v", err)
	}
	rep, err = BuildCache(context.Background(), filepath.Join(dir, "sq.cache"), paths[:2], CacheOptions{Size: 20, Crop: true})
	c2, err2 := OpenCache(filepath.Join(dir, "sq.cache"))
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	defer c2.Close()
	if m, _, _ := c2.Lookup(paths[1]); m.W != 20 || m.H != 20 || !c2.Crop {
		t.Errorf("square cache %dx%d", m.W, m.H)
	}
	os.WriteFile(filepath.Join(dir, "trunc.cache"), []byte("PHCACHE1garbage"), 0o644)
	if _, err := OpenCache(filepath.Join(dir, "trunc.cache")); err == nil {
		t.Error("garbage cache opened")
	}
}

func TestOmniglotThroughLoader(t *testing.T) {
	root := testenv.SharedData(t, "omniglot")
	d, err := dataset.Open(root, dataset.Options{Split: "val"})
	if err != nil {
		t.Fatal(err)
	}
	// Rotations of one character: sample 0 (rot000) and the same drawing at rot090 (20 samples on).
	idx := []int{0, 20}
	l, _ := NewLoader(LoaderOptions{Workers: 2, BatchSize: 2, Transform: Transform{Size: 28, Channels: 1, Invert: true}})
	b, err := l.Load(context.Background(), ItemsFromDataset(d, idx), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.N != 2 || b.C != 1 || d.Samples[20].Rotate != 90 || d.Samples[20].Path != d.Samples[0].Path {
		t.Fatalf("batch %d x %d, rotate %d", b.N, b.C, d.Samples[20].Rotate)
	}
	var ink float32
	for _, v := range b.X[:784] {
		if v < 0 || v > 1 {
			t.Fatalf("value %v outside [0, 1]", v)
		}
		ink += v
	}
	if ink < 10 || ink > 400 {
		t.Errorf("ink %v: strokes should be a minority of ones", ink)
	}
	// The second image is the first turned 90 degrees: out(x, y) = in(27-y, x).
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			if b.X[784+y*28+x] != b.X[x*28+27-y] {
				t.Fatalf("rot090 mismatch at (%d,%d)", x, y)
			}
		}
	}
}

// TestFitLetterbox: Fit keeps the whole image and its aspect (Squash stretches it). A 100×40 image of grey 200 with a
// dark 20×20 square in its middle, fitted to 50 px, fills rows 15–34 (40 × 0.5 = 20 rows, centred),
// the rows above and below padded with the border's 200, and the square lands in the middle at
// 10×10; the centre crop instead fills every row with the image.
func TestFitLetterbox(t *testing.T) {
	m := image.NewGray(image.Rect(0, 0, 100, 40))
	for i := range m.Pix {
		m.Pix[i] = 200
	}
	for y := 10; y < 30; y++ {
		for x := 40; x < 60; x++ {
			m.Pix[y*100+x] = 20
		}
	}
	b := encPNG(t, m)
	p, err := NewProcessor()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	crop, c, err := p.Crop(b, &Transform{Size: 50, Fit: true}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c != 1 {
		t.Fatalf("channels %d, want 1", c)
	}
	at := func(x, y int) uint8 { return crop[y*50+x] }
	for _, y := range []int{0, 14, 35, 49} {
		for x := 0; x < 50; x++ {
			if at(x, y) != 200 {
				t.Fatalf("pad row %d, column %d: %d, want the border's 200", y, x, at(x, y))
			}
		}
	}
	if at(25, 25) != 20 || at(21, 21) != 20 || at(28, 28) != 20 || at(18, 25) != 200 || at(32, 25) != 200 {
		t.Errorf("square: centre %d, corners %d %d, outside %d %d", at(25, 25), at(21, 21), at(28, 28), at(18, 25), at(32, 25))
	}
	// Augmented fits stay deterministic for a seed and keep the image inside the zoom range.
	tf := Transform{Size: 50, Fit: true, RandomCrop: true}
	a1, _, _ := p.Crop(b, &tf, rand.New(rand.NewPCG(3, 0)), 0)
	a1 = append([]uint8(nil), a1...)
	a2, _, _ := p.Crop(b, &tf, rand.New(rand.NewPCG(3, 0)), 0)
	if !bytes.Equal(a1, a2) {
		t.Error("augmented fit differs for the same seed")
	}
	if _, _, err := p.Crop(b, &Transform{Size: 50, Fit: true, Zoom: [2]float64{2, 1}}, nil, 0); err == nil {
		t.Error("zoom range [2, 1] accepted")
	}
	// Squash stretches the whole 100×40 image to 50×50: the square (x 40–60, y 10–30) becomes
	// x 20–30, y 12.5–37.5, and no pixel is padding.
	crop, _, err = p.Crop(b, &Transform{Size: 50, Squash: true}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if at(25, 14) != 20 || at(25, 35) != 20 || at(21, 25) != 20 || at(25, 11) != 200 || at(25, 39) != 200 || at(18, 25) != 200 || at(0, 0) != 200 {
		t.Errorf("squash: inside %d %d %d, outside %d %d %d %d", at(25, 14), at(25, 35), at(21, 25), at(25, 11), at(25, 39), at(18, 25), at(0, 0))
	}
	if _, _, err := p.Crop(b, &Transform{Size: 50, Fit: true, Squash: true}, nil, 0); err == nil {
		t.Error("fit and squash together accepted")
	}
}
