package imageio

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Processor decodes and transforms images one at a time, reusing its buffers and its libjpeg-turbo
// handle. Use one per goroutine; Close it when done.
type Processor struct {
	dec  *Decoder
	reg  *regionDecoder
	rs   Resampler
	pix  []uint8
	crop []uint8
	sub  []uint8 // the inside part of a padded crop
	// DecodeWhole decodes whole images at the chosen DCT scale instead of only the rows and
	// columns the crop reads (the same pixels, slower; for comparisons).
	DecodeWhole bool
}

// NewProcessor allocates a processor.
func NewProcessor() (*Processor, error) {
	d, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	r, err := newRegionDecoder()
	if err != nil {
		d.Close()
		return nil, err
	}
	return &Processor{dec: d, reg: r}, nil
}

// Close frees the decoders.
func (p *Processor) Close() {
	p.dec.Close()
	p.reg.close()
}

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
	var box Box
	if m == nil {
		var err error
		if m, box, err = p.decodeFor(b, w, h, &pl, t.Size, maxPixels); err != nil {
			return nil, 0, plan{}, err
		}
	} else {
		box = pl.box
	}
	if m.W <= 0 || m.H <= 0 {
		return nil, 0, plan{}, fmt.Errorf("%w: zero size", ErrCorrupt)
	}
	n := t.Size * t.Size * m.C
	p.crop = grow(p.crop, n)
	p.resampleBox(m, box, t.Size)
	return p.crop, m.C, pl, nil
}

// resampleBox writes the box of m as size x size pixels into p.crop, padding what lies outside m.
func (p *Processor) resampleBox(m *Image, box Box, size int) {
	if box.X0 >= 0 && box.Y0 >= 0 && box.X1 <= float64(m.W) && box.Y1 <= float64(m.H) {
		p.rs.Resample(m, box, size, size, p.crop)
		return
	}
	p.resamplePadded(m, box, size)
}

// resamplePadded writes the box of m, which reaches outside it (a letterbox), as size x size pixels
// into p.crop: the part inside m resampled into its place, the rest the mean colour of the edges it overhangs.
func (p *Processor) resamplePadded(m *Image, box Box, size int) {
	c := m.C
	fill := borderColour(m, box)
	for i := 0; i < size*size; i++ {
		copy(p.crop[i*c:(i+1)*c], fill[:c])
	}
	sx, sy := float64(size)/(box.X1-box.X0), float64(size)/(box.Y1-box.Y0)
	ox0, ox1 := insideSpan(box.X0, box.X1, float64(m.W), sx, size)
	oy0, oy1 := insideSpan(box.Y0, box.Y1, float64(m.H), sy, size)
	ow, oh := ox1-ox0, oy1-oy0
	if ow <= 0 || oh <= 0 {
		return
	}
	// The source box of exactly those output pixels (it may overhang m by under half a pixel,
	// which the filter clamps).
	in := Box{box.X0 + float64(ox0)/sx, box.Y0 + float64(oy0)/sy, box.X0 + float64(ox1)/sx, box.Y0 + float64(oy1)/sy}
	p.sub = grow(p.sub, ow*oh*c)
	p.rs.Resample(m, in, ow, oh, p.sub)
	for y := 0; y < oh; y++ {
		copy(p.crop[((oy0+y)*size+ox0)*c:], p.sub[y*ow*c:(y+1)*ow*c])
	}
}

// insideSpan is the range of output pixels [o0, o1) whose centres fall inside [0, limit) of the
// source axis, for a box [b0, b1) drawn at scale s output pixels per source pixel.
func insideSpan(b0, b1, limit, s float64, size int) (int, int) {
	o0 := int(math.Round(max(0-b0, 0) * s))
	o1 := int(math.Round((min(b1, limit) - b0) * s))
	return min(max(o0, 0), size), min(max(o1, 0), size)
}

// borderColour is the mean colour of the stretches of m's edges beside the parts of the box that
// overhang it (the image's own edges, in a region decode too): the background a letterbox continues (paper for a sheet, black for a scan).
func borderColour(m *Image, box Box) [3]uint8 {
	c := m.C
	var sum [3]int
	n := 0
	add := func(x0, y0, x1, y1 int) {
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				i := (y*m.W + x) * c
				for k := 0; k < c; k++ {
					sum[k] += int(m.Pix[i+k])
				}
				n++
			}
		}
	}
	// The stretch of each edge beside the box (the same pixels in a region decode as in the whole).
	x0, x1 := int(math.Floor(max(box.X0, 0))), int(math.Ceil(min(box.X1, float64(m.W))))
	y0, y1 := int(math.Floor(max(box.Y0, 0))), int(math.Ceil(min(box.Y1, float64(m.H))))
	if x1 <= x0 || y1 <= y0 { // the box misses the image: its whole border
		x0, x1, y0, y1 = 0, m.W, 0, m.H
	}
	if box.X0 < 0 {
		add(0, y0, 1, y1)
	}
	if box.X1 > float64(m.W) {
		add(m.W-1, y0, m.W, y1)
	}
	if box.Y0 < 0 {
		add(x0, 0, x1, 1)
	}
	if box.Y1 > float64(m.H) {
		add(x0, m.H-1, x1, m.H)
	}
	var out [3]uint8
	for k := 0; k < c && n > 0; k++ {
		out[k] = uint8((sum[k] + n/2) / n)
	}
	return out
}

// decodeFor decodes what the plan's crop box needs of the w x h image b: for a whole baseline or
// progressive RGB/gray JPEG, only the rows and (to the iMCU) columns the resampler reads, at the
// smallest DCT scale that keeps Size pixels per side; otherwise the whole image (PNG, CMYK, a file
// without its end marker, or one libjpeg's scanline API refuses, which the full decoder then
// reports). It returns the decoded pixels and the crop box in their coordinates.
func (p *Processor) decodeFor(b []byte, w, h int, pl *plan, size, maxPixels int) (*Image, Box, error) {
	mw, mh := pl.minDecodeSize(w, h, size)
	if !p.DecodeWhole && Sniff(b) == FormatJPEG && hasEOI(b) {
		if hdr, err := p.dec.tj.header(b); err == nil && !hdr.cmyk && hdr.w == w && hdr.h == h {
			s := pickScale(w, h, mw, mh)
			sw, sh := s.apply(w), s.apply(h)
			box := pl.box.Scaled(float64(sw)/float64(w), float64(sh)/float64(h))
			win := window(box, sw, sh, size)
			c := 3
			if hdr.gray {
				c = 1
			}
			m, x0, err := p.reg.decode(b, s, sw, win, c, p.pix)
			if err == nil {
				p.pix = m.Pix
				m.SrcW, m.SrcH = w, h
				return m, Box{box.X0 - float64(x0), box.Y0 - float64(win.y0), box.X1 - float64(x0), box.Y1 - float64(win.y0)}, nil
			}
		}
	}
	m, err := p.dec.Decode(b, DecodeOptions{MaxPixels: maxPixels, MinW: mw, MinH: mh}, p.pix)
	if err != nil {
		return nil, Box{}, err
	}
	p.pix = m.Pix
	return m, pl.box.Scaled(float64(m.W)/float64(w), float64(m.H)/float64(h)), nil
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
