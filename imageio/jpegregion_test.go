package imageio

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// fullCrop is the crop the whole-image path gives: decode every pixel at the same DCT scale, then
// resample the box.
func fullCrop(t *testing.T, b []byte, tf *Transform, seed uint64) []uint8 {
	t.Helper()
	p, err := NewProcessor()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tt, _ := tf.withDefaults()
	_, w, h, err := p.dec.Config(b)
	if err != nil {
		t.Fatal(err)
	}
	pl := tt.makePlan(w, h, rand.New(rand.NewPCG(seed, 0)))
	mw, mh := pl.minDecodeSize(w, h, tt.Size)
	m, err := p.dec.Decode(b, DecodeOptions{MinW: mw, MinH: mh}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.crop = grow(p.crop, tt.Size*tt.Size*m.C)
	p.resampleBox(m, pl.box.Scaled(float64(m.W)/float64(w), float64(m.H)/float64(h)), tt.Size)
	return append([]uint8(nil), p.crop...)
}

func grayOf(m *image.RGBA) *image.Gray {
	g := image.NewGray(m.Bounds())
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			g.Set(x, y, color.GrayModel.Convert(m.At(x, y)))
		}
	}
	return g
}

// TestRegionDecodeMatchesFullDecode checks that decoding only the window a crop reads (skipped rows
// above, rows below never decoded, columns cut to the iMCU) gives the same crop as decoding the
// whole image at the same DCT scale, for centre and random crops, colour and gray, several sizes.
func TestRegionDecodeMatchesFullDecode(t *testing.T) {
	sizes := [][2]int{{1024, 1536}, {1536, 1024}, {333, 517}, {97, 61}, {224, 224}}
	files := map[string][]byte{}
	for i, sz := range sizes {
		src := SpecimenImage(sz[0], sz[1], uint64(i))
		files[fmt.Sprintf("%dx%d colour", sz[0], sz[1])] = encJPEG(t, src, 90)
		files[fmt.Sprintf("%dx%d gray", sz[0], sz[1])] = encJPEG(t, grayOf(src), 90)
	}
	// Made by PIL: progressive scans and other chroma subsamplings than Go's encoder writes.
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.jpg"))
	if len(paths) < 4 {
		t.Fatalf("testdata: %d JPEGs, want 4", len(paths))
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[path] = b
	}
	p, err := NewProcessor()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, b := range files {
		// The centre crop of the resize-256 transform leaves out part of the long side: the region
		// path must have decoded fewer pixels than the whole scaled image (no silent fallback).
		_, w, h, err := p.dec.Config(b)
		if err != nil {
			t.Fatal(err)
		}
		tt, _ := Transform{Size: 224, Resize: 256}.withDefaults()
		pl := tt.makePlan(w, h, nil)
		m, _, err := p.decodeFor(b, w, h, &pl, tt.Size, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mw, mh := pl.minDecodeSize(w, h, tt.Size)
		s := pickScale(w, h, mw, mh)
		if m.W*m.H >= s.apply(w)*s.apply(h) {
			t.Errorf("%s: decoded %dx%d, the whole scaled image is %dx%d: the region path was not taken", name, m.W, m.H, s.apply(w), s.apply(h))
		}
		for _, tf := range []Transform{
			{Size: 224, Resize: 256},
			{Size: 84},
			{Size: 56, RandomCrop: true},
			{Size: 32, RandomCrop: true, Scale: [2]float64{0.01, 0.05}},
			{Size: 84, Fit: true},
			{Size: 56, Fit: true, RandomCrop: true},
			{Size: 40, Fit: true, RandomCrop: true, Zoom: [2]float64{0.3, 0.6}, Shift: 0.3},
			{Size: 84, Squash: true},
			{Size: 56, Squash: true, RandomCrop: true},
		} {
			for seed := uint64(0); seed < 3; seed++ {
				got, _, err := p.Crop(b, &tf, rand.New(rand.NewPCG(seed, 0)), 0)
				if err != nil {
					t.Fatalf("%s %+v: %v", name, tf, err)
				}
				if want := fullCrop(t, b, &tf, seed); !bytes.Equal(got, want) {
					t.Errorf("%s, size %d, random crop %v, seed %d: the crop differs from the full decode's", name, tf.Size, tf.RandomCrop, seed)
				}
			}
		}
	}
}

// TestRegionDecodeFallsBack: a JPEG without its end-of-image marker goes through the full decoder,
// which reports it as truncated, and a PNG still decodes.
func TestRegionDecodeFallsBack(t *testing.T) {
	b := encJPEG(t, SpecimenImage(300, 400, 1), 90)
	p, err := NewProcessor()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tf := Transform{Size: 64}
	if _, _, err := p.Crop(b[:len(b)*2/3], &tf, nil, 0); err == nil {
		t.Error("truncated JPEG decoded without error")
	}
	if _, _, err := p.Crop(encPNG(t, SpecimenImage(120, 90, 2)), &tf, nil, 0); err != nil {
		t.Errorf("PNG: %v", err)
	}
	if _, _, err := p.Crop(b, &tf, nil, 0); err != nil {
		t.Errorf("whole JPEG after a failed one: %v", err)
	}
}
