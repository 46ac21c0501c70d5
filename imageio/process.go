package imageio

import (
	"fmt"
	"math/rand/v2"
)

// Processor decodes and transforms images one at a time, reusing its buffers and its libjpeg-turbo
// handle. Use one per goroutine; Close it when done.
type Processor struct {
	dec  *Decoder
	rs   Resampler
	pix  []uint8
	crop []uint8
}

// NewProcessor allocates a processor.
func NewProcessor() (*Processor, error) {
	d, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	return &Processor{dec: d}, nil
}

// Close frees the decoder.
func (p *Processor) Close() { p.dec.Close() }

// Crop decodes b and returns the transform's Size x Size crop as 8-bit HWC pixels with C channels
// (the file's: 1 or 3), before flips, rotation, jitter and normalisation. JPEGs are decoded at the
// smallest DCT scale that keeps the crop at least Size pixels per side. The slice is reused by the
// next call. r may be nil when the transform has no random part.
func (p *Processor) Crop(b []byte, t *Transform, r *rand.Rand, maxPixels int) ([]uint8, int, error) {
	tt, err := t.withDefaults()
	if err != nil {
		return nil, 0, err
	}
	crop, c, _, err := p.crop1(b, nil, &tt, r, maxPixels)
	return crop, c, err
}

// crop1 is Crop for bytes b or an already decoded image m; it also returns the plan.
func (p *Processor) crop1(b []byte, m *Image, t *Transform, r *rand.Rand, maxPixels int) ([]uint8, int, plan, error) {
	if r == nil {
		r = rand.New(rand.NewPCG(0, 0))
	}
	var w, h int
	if m == nil {
		_, fw, fh, err := p.dec.Config(b)
		if err != nil {
			return nil, 0, plan{}, err
		}
		if err := checkSize(fw, fh, maxPixels); err != nil {
			return nil, 0, plan{}, err
		}
		w, h = fw, fh
	} else {
		w, h = m.W, m.H
	}
	pl := t.makePlan(w, h, r)
	if m == nil {
		mw, mh := pl.minDecodeSize(w, h, t.Size)
		var err error
		m, err = p.dec.Decode(b, DecodeOptions{MaxPixels: maxPixels, MinW: mw, MinH: mh}, p.pix)
		if err != nil {
			return nil, 0, plan{}, err
		}
		p.pix = m.Pix
	}
	if m.W <= 0 || m.H <= 0 {
		return nil, 0, plan{}, fmt.Errorf("%w: zero size", ErrCorrupt)
	}
	box := pl.box.Scaled(float64(m.W)/float64(w), float64(m.H)/float64(h))
	n := t.Size * t.Size * m.C
	p.crop = grow(p.crop, n)
	p.rs.Resample(m, box, t.Size, t.Size, p.crop)
	return p.crop, m.C, pl, nil
}

// Tensor decodes b and writes the transformed image as float32 CHW (Channels x Size x Size) into
// out. rotate adds a fixed rotation in degrees (a multiple of 90, counter-clockwise).
func (p *Processor) Tensor(b []byte, t *Transform, r *rand.Rand, rotate, maxPixels int, out []float32) error {
	return p.tensor(b, nil, t, r, rotate, maxPixels, out)
}

// TensorFromImage is Tensor for an image already decoded (or read from a cache).
func (p *Processor) TensorFromImage(m *Image, t *Transform, r *rand.Rand, rotate int, out []float32) error {
	return p.tensor(nil, m, t, r, rotate, 0, out)
}

func (p *Processor) tensor(b []byte, m *Image, t *Transform, r *rand.Rand, rotate, maxPixels int, out []float32) error {
	tt, err := t.withDefaults()
	if err != nil {
		return err
	}
	if rotate%90 != 0 {
		return fmt.Errorf("rotation %d is not a multiple of 90 degrees", rotate)
	}
	if need := tt.Channels * tt.Size * tt.Size; len(out) < need {
		return fmt.Errorf("output holds %d values, need %d", len(out), need)
	}
	crop, c, pl, err := p.crop1(b, m, &tt, r, maxPixels)
	if err != nil {
		return err
	}
	tt.toTensor(crop, c, pl, rotate/90, out)
	return nil
}

// Preprocess decodes one image held in memory (an upload) and returns its tensor for the transform,
// refusing images with more than maxPixels before decoding.
func Preprocess(b []byte, t Transform, maxPixels int) ([]float32, error) {
	tt, err := t.withDefaults()
	if err != nil {
		return nil, err
	}
	p, err := NewProcessor()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	out := make([]float32, tt.Channels*tt.Size*tt.Size)
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	if err := p.Tensor(b, &tt, nil, 0, maxPixels, out); err != nil {
		return nil, err
	}
	return out, nil
}
