package imageio

import (
	"image"
	"image/color"
	"math/rand/v2"
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
	out := make([]uint8, tt.Size*tt.Size*m.C)
	p.rs.Resample(m, pl.box.Scaled(float64(m.W)/float64(w), float64(m.H)/float64(h)), tt.Size, tt.Size, out)
	return out
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
	tfs := []Transform{
		{Size: 224, Resize: 256},
		{Size: 84},
		{Size: 56, RandomCrop: true},
		{Size: 32, RandomCrop: true, Scale: [2]float64{0.01, 0.05}},
	}
	for i, sz := range sizes {
		src := SpecimenImage(sz[0], sz[1], uint64(i))
		for _, gray := range []bool{false, true} {
			var b []byte
			if gray {
				b = encJPEG(t, grayOf(src), 90)
			} else {
				b = encJPEG(t, src, 90)
			}
			p, err := NewProcessor()
			if err != nil {
				t.Fatal(err)
			}
			for j := range tfs {
				tf := tfs[j]
				for seed := uint64(0); seed < 3; seed++ {
					got, _, err := p.Crop(b, &tf, rand.New(rand.NewPCG(seed, 0)), 0)
					if err != nil {
						t.Fatalf("%v gray=%v %+v: %v", sz, gray, tf, err)
					}
					want := fullCrop(t, b, &tf, seed)
					if len(got) != len(want) {
						t.Fatalf("%v gray=%v: crop has %d bytes, want %d", sz, gray, len(got), len(want))
					}
					diff := 0
					for k := range got {
						if !near(got[k], want[k], 0) {
							diff++
						}
					}
					if diff > 0 {
						t.Errorf("%v gray=%v size %d random=%v seed %d: %d of %d values differ from the full decode",
							sz, gray, tf.Size, tf.RandomCrop, seed, diff, len(got))
					}
				}
			}
			p.Close()
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
