package imageio

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// ImageNet channel statistics, the usual normalisation for pretrained backbones.
var (
	ImageNetMean = []float32{0.485, 0.456, 0.406}
	ImageNetStd  = []float32{0.229, 0.224, 0.225}
)

// ColorJitter perturbs brightness, contrast and saturation by factors drawn uniformly from
// [1-x, 1+x] (0 disables that one), applied in that order.
type ColorJitter struct {
	Brightness, Contrast, Saturation float32
}

// Transform turns a decoded image into a Size x Size float32 CHW tensor.
type Transform struct {
	// Size is the side of the square output.
	Size int
	// Resize: the shorter side is resized to Resize and the centre Size x Size cropped (0 = Size,
	// i.e. the largest centred square). Used when RandomCrop is false.
	Resize int
	// RandomCrop takes a random area fraction in Scale and aspect ratio in Ratio (random resized crop,
	// defaults [0.08, 1] and [3/4, 4/3]) instead of the centre crop.
	RandomCrop   bool
	Scale, Ratio [2]float64
	// Fit keeps the whole image and its aspect: the longer side is resized to Size and the image
	// centred on a square padded with the mean colour of its border (a letterbox), instead of the
	// centre crop that cuts the ends off long leaves and sheets. With RandomCrop the square is
	// zoomed by a log-uniform factor in Zoom (default [0.8, 1.25]) and shifted by up to Shift of
	// its side (default 0.1) each way, instead of the random resized crop.
	Fit   bool
	Zoom  [2]float64
	Shift float64
	// Squash resizes the whole image to the square, its aspect not kept (nothing cut off, no pixel
	// spent on padding); with RandomCrop, the random resized crop is drawn in the squashed frame.
	Squash bool
	// HFlip flips horizontally with probability 1/2; Rot90 rotates by a random multiple of 90 degrees.
	HFlip, Rot90 bool
	Jitter       ColorJitter
	// Channels of the output: 3 (RGB; gray images are replicated) or 1 (luma). 0 = 3.
	Channels int
	// Invert maps v to 1-v before normalising (Omniglot strokes as ones).
	Invert bool
	// Mean and Std per output channel; nil = ImageNet for 3 channels, none (0, 1) for 1 channel.
	Mean, Std []float32
}

// withDefaults checks the transform and fills defaults.
func (t Transform) withDefaults() (Transform, error) {
	if t.Size <= 0 {
		return t, fmt.Errorf("transform: size must be positive, got %d", t.Size)
	}
	if t.Resize == 0 {
		t.Resize = t.Size
	}
	if t.Resize < t.Size {
		return t, fmt.Errorf("transform: resize %d is smaller than the crop size %d", t.Resize, t.Size)
	}
	if t.Channels == 0 {
		t.Channels = 3
	}
	if t.Channels != 1 && t.Channels != 3 {
		return t, fmt.Errorf("transform: channels must be 1 or 3, got %d", t.Channels)
	}
	if t.Scale == [2]float64{} {
		t.Scale = [2]float64{0.08, 1}
	}
	if t.Ratio == [2]float64{} {
		t.Ratio = [2]float64{3.0 / 4, 4.0 / 3}
	}
	if t.Zoom == [2]float64{} {
		t.Zoom = [2]float64{0.8, 1.25}
	}
	if t.Shift == 0 {
		t.Shift = 0.1
	}
	if t.Fit && t.Squash {
		return t, fmt.Errorf("transform: fit and squash are exclusive")
	}
	if t.Zoom[0] <= 0 || t.Zoom[1] < t.Zoom[0] || t.Shift < 0 {
		return t, fmt.Errorf("transform: zoom %v or shift %g out of range", t.Zoom, t.Shift)
	}
	if t.Mean == nil {
		if t.Channels == 3 {
			t.Mean, t.Std = ImageNetMean, ImageNetStd
		} else {
			t.Mean, t.Std = []float32{0}, []float32{1}
		}
	}
	if len(t.Mean) != t.Channels || len(t.Std) != t.Channels {
		return t, fmt.Errorf("transform: mean/std need %d values, got %d/%d", t.Channels, len(t.Mean), len(t.Std))
	}
	for _, s := range t.Std {
		if s == 0 {
			return t, fmt.Errorf("transform: std of zero")
		}
	}
	return t, nil
}

// plan is what a transform does to one image, drawn before decoding so that the decoder can pick
// its DCT scale from the crop box.
type plan struct {
	box           Box // in the image's full-size coordinates
	flip          bool
	rot           int // quarter turns, counter-clockwise
	bri, con, sat float32
}

// makePlan draws the random parts in a fixed order: crop, flip, rotation, jitter.
func (t *Transform) makePlan(w, h int, r *rand.Rand) plan {
	var p plan
	fw, fh := float64(w), float64(h)
	switch {
	case t.Fit:
		p.box = t.fitBox(fw, fh, r)
	case t.Squash:
		p.box = Box{0, 0, fw, fh}
		if t.RandomCrop { // drawn on a square frame, then stretched back to the image
			const side = 1 << 12
			b := randomCrop(side, side, t.Scale, t.Ratio, r)
			p.box = Box{b.X0 * fw / side, b.Y0 * fh / side, b.X1 * fw / side, b.Y1 * fh / side}
		}
	case t.RandomCrop:
		p.box = randomCrop(fw, fh, t.Scale, t.Ratio, r)
	default:
		side := math.Min(fw, fh) * float64(t.Size) / float64(t.Resize)
		x0, y0 := (fw-side)/2, (fh-side)/2
		p.box = Box{x0, y0, x0 + side, y0 + side}
	}
	if t.HFlip {
		p.flip = r.IntN(2) == 1
	}
	if t.Rot90 {
		p.rot = r.IntN(4)
	}
	p.bri, p.con, p.sat = 1, 1, 1
	draw := func(x float32) float32 {
		if x <= 0 {
			return 1
		}
		return max(0, 1-x+2*x*r.Float32())
	}
	p.bri = draw(t.Jitter.Brightness)
	p.con = draw(t.Jitter.Contrast)
	p.sat = draw(t.Jitter.Saturation)
	return p
}

// fitBox is the letterbox square of a w x h image (centred, side the longer side), zoomed and
// shifted at random when the transform augments. Parts of it lie outside the image: they are padded.
func (t *Transform) fitBox(w, h float64, r *rand.Rand) Box {
	side, cx, cy := math.Max(w, h), w/2, h/2
	if t.RandomCrop {
		lz0, lz1 := math.Log(t.Zoom[0]), math.Log(t.Zoom[1])
		side *= math.Exp(lz0 + (lz1-lz0)*r.Float64())
		cx += side * t.Shift * (2*r.Float64() - 1)
		cy += side * t.Shift * (2*r.Float64() - 1)
	}
	return Box{cx - side/2, cy - side/2, cx + side/2, cy + side/2}
}

// randomCrop follows torchvision's RandomResizedCrop: ten tries at a random area and log-uniform
// aspect ratio, then the centre crop clamped to the ratio range.
func randomCrop(w, h float64, scale, ratio [2]float64, r *rand.Rand) Box {
	area := w * h
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		a := area * (scale[0] + (scale[1]-scale[0])*r.Float64())
		ar := math.Exp(lr0 + (lr1-lr0)*r.Float64())
		cw := math.Round(math.Sqrt(a * ar))
		ch := math.Round(math.Sqrt(a / ar))
		if cw > 0 && ch > 0 && cw <= w && ch <= h {
			x0 := math.Floor(r.Float64() * (w - cw + 1))
			y0 := math.Floor(r.Float64() * (h - ch + 1))
			return Box{x0, y0, x0 + cw, y0 + ch}
		}
	}
	cw, ch := w, h
	if w/h < ratio[0] {
		ch = math.Round(w / ratio[0])
	} else if w/h > ratio[1] {
		cw = math.Round(h * ratio[1])
	}
	x0, y0 := math.Floor((w-cw)/2), math.Floor((h-ch)/2)
	return Box{x0, y0, x0 + cw, y0 + ch}
}

// minDecodeSize is the scaled size that still gives the crop box at least Size pixels per side.
func (p *plan) minDecodeSize(w, h, size int) (int, int) {
	bw, bh := p.box.X1-p.box.X0, p.box.Y1-p.box.Y0
	f := math.Max(float64(size)/bw, float64(size)/bh)
	return int(math.Ceil(float64(w)*f - 1e-9)), int(math.Ceil(float64(h)*f - 1e-9))
}

// toTensor writes the Size x Size uint8 crop (HWC, c channels) as normalised float32 CHW into out,
// applying flip, quarter turns (plan's plus extraRot) and colour jitter.
func (t *Transform) toTensor(crop []uint8, c int, p plan, extraRot int, out []float32) {
	s := t.Size
	oc := t.Channels
	rot := ((p.rot+extraRot)%4 + 4) % 4
	// Per-channel affine: value = (v/255 - mean)/std, v after inversion.
	var scaleC, biasC [3]float32
	for k := 0; k < oc; k++ {
		scaleC[k] = 1 / (255 * t.Std[k])
		biasC[k] = -t.Mean[k] / t.Std[k]
	}
	jitter := p.bri != 1 || p.con != 1 || p.sat != 1
	var meanGray float32
	if jitter && p.con != 1 {
		var sum float32
		for i := 0; i < s*s; i++ {
			sum += luma(crop, i, c)
		}
		meanGray = sum / float32(s*s) * p.bri / 255
	}
	plane := s * s
	for y := 0; y < s; y++ {
		for x := 0; x < s; x++ {
			// Source pixel for output (x, y): undo rotation, then the flip.
			sx, sy := x, y
			switch rot {
			case 1: // 90 degrees counter-clockwise: out(x, y) = in(s-1-y, x)
				sx, sy = s-1-y, x
			case 2:
				sx, sy = s-1-x, s-1-y
			case 3:
				sx, sy = y, s-1-x
			}
			if p.flip {
				sx = s - 1 - sx
			}
			i := sy*s + sx
			var v [3]float32
			if c == 3 {
				v = [3]float32{float32(crop[i*3]), float32(crop[i*3+1]), float32(crop[i*3+2])}
			} else {
				g := float32(crop[i])
				v = [3]float32{g, g, g}
			}
			if jitter {
				v = applyJitter(v, p, meanGray*255)
			}
			o := y*s + x
			if oc == 1 {
				g := v[0]
				if c == 3 {
					g = 0.299*v[0] + 0.587*v[1] + 0.114*v[2]
				}
				if t.Invert {
					g = 255 - g
				}
				out[o] = g*scaleC[0] + biasC[0]
				continue
			}
			for k := 0; k < 3; k++ {
				vk := v[k]
				if t.Invert {
					vk = 255 - vk
				}
				out[k*plane+o] = vk*scaleC[k] + biasC[k]
			}
		}
	}
}

func luma(pix []uint8, i, c int) float32 {
	if c == 1 {
		return float32(pix[i])
	}
	return 0.299*float32(pix[i*3]) + 0.587*float32(pix[i*3+1]) + 0.114*float32(pix[i*3+2])
}

func clamp255(v float32) float32 { return min(max(v, 0), 255) }

// applyJitter: brightness (scale), contrast (blend with the image's mean gray), saturation (blend
// with the pixel's gray), each clamped, as torchvision does.
func applyJitter(v [3]float32, p plan, meanGray float32) [3]float32 {
	for k := range v {
		v[k] = clamp255(v[k] * p.bri)
	}
	if p.con != 1 {
		for k := range v {
			v[k] = clamp255(v[k]*p.con + meanGray*(1-p.con))
		}
	}
	if p.sat != 1 {
		g := 0.299*v[0] + 0.587*v[1] + 0.114*v[2]
		for k := range v {
			v[k] = clamp255(v[k]*p.sat + g*(1-p.sat))
		}
	}
	return v
}
