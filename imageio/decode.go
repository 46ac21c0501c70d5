// Package imageio turns image files into model input: decoding (libjpeg-turbo through cgo with
// DCT-domain scaling for JPEG, and for a crop only the rows and iMCU columns it reads; the standard
// library for PNG), transforms to float32 NCHW, a parallel
// deterministic batch loader, and a packed cache of preprocessed images.
package imageio

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
)

// DefaultMaxPixels bounds the pixels of an image read from disk (a header declaring more is refused
// before decoding). Uploads should use a far smaller limit.
const DefaultMaxPixels = 1 << 28

// Image is 8-bit pixels, interleaved (HWC), C = 1 (gray) or 3 (RGB).
type Image struct {
	Pix     []uint8
	W, H, C int
	// SrcW, SrcH are the file's dimensions before any DCT scaling.
	SrcW, SrcH int
}

// At returns channel c of pixel (x, y).
func (m *Image) At(x, y, c int) uint8 { return m.Pix[(y*m.W+x)*m.C+c] }

// Format is an image file type.
type Format int

const (
	FormatUnknown Format = iota
	FormatJPEG
	FormatPNG
)

// Sniff tells the type of an image file from its first bytes.
func Sniff(b []byte) Format {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return FormatJPEG
	case len(b) >= 8 && bytes.Equal(b[:8], []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	}
	return FormatUnknown
}

// sniffName names common types we do not decode, for error messages.
func sniffName(b []byte) string {
	switch {
	case len(b) >= 6 && (string(b[:6]) == "GIF87a" || string(b[:6]) == "GIF89a"):
		return "GIF"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "WebP"
	case len(b) >= 2 && string(b[:2]) == "BM":
		return "BMP"
	case len(b) >= 4 && (string(b[:4]) == "II*\x00" || string(b[:4]) == "MM\x00*"):
		return "TIFF"
	case len(b) == 0:
		return "empty file"
	}
	return "unknown type"
}

// DecodeOptions control one decode.
type DecodeOptions struct {
	// MaxPixels refuses images whose header declares more pixels (0 = DefaultMaxPixels).
	MaxPixels int
	// MinW, MinH: JPEGs are decoded at the smallest DCT scale (1/8 .. 1) whose size still covers
	// MinW x MinH; 0 decodes at full size. PNGs are always full size.
	MinW, MinH int
}

// Decoder decodes JPEG and PNG images. It holds a libjpeg-turbo handle: use one per goroutine and
// Close it. The zero value is not usable; call NewDecoder.
type Decoder struct {
	tj *turbo
}

// NewDecoder allocates a decoder.
func NewDecoder() (*Decoder, error) {
	tj, err := newTurbo()
	if err != nil {
		return nil, err
	}
	return &Decoder{tj: tj}, nil
}

// Close frees the decoder.
func (d *Decoder) Close() {
	if d != nil {
		d.tj.close()
	}
}

// Config reads the format and dimensions from the header without decoding pixels.
func (d *Decoder) Config(b []byte) (Format, int, int, error) {
	switch Sniff(b) {
	case FormatJPEG:
		h, err := d.tj.header(b)
		if err != nil {
			// libjpeg-turbo refuses some headers the standard library reads (e.g. arithmetic coding).
			cfg, jerr := jpeg.DecodeConfig(bytes.NewReader(b))
			if jerr != nil {
				return FormatJPEG, 0, 0, err
			}
			return FormatJPEG, cfg.Width, cfg.Height, nil
		}
		return FormatJPEG, h.w, h.h, nil
	case FormatPNG:
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			return FormatPNG, 0, 0, fmt.Errorf("%w: PNG header: %v", ErrCorrupt, err)
		}
		return FormatPNG, cfg.Width, cfg.Height, nil
	}
	return FormatUnknown, 0, 0, fmt.Errorf("%w: %s", ErrUnsupported, sniffName(b))
}

func checkSize(w, h, maxPixels int) error {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: zero size (%dx%d)", ErrCorrupt, w, h)
	}
	if w > maxPixels || h > maxPixels || w*h > maxPixels {
		return &TooLargeError{W: w, H: h, MaxPixels: maxPixels}
	}
	return nil
}

// Decode decodes b. dst, when large enough, is reused for the pixels.
func (d *Decoder) Decode(b []byte, opt DecodeOptions, dst []uint8) (*Image, error) {
	f, w, h, err := d.Config(b)
	if err != nil {
		return nil, err
	}
	if err := checkSize(w, h, opt.MaxPixels); err != nil {
		return nil, err
	}
	if f == FormatPNG {
		return decodeStd(b, png.Decode, w, h, dst)
	}
	hdr, err := d.tj.header(b)
	if err != nil || hdr.cmyk {
		// CMYK/YCCK and exotic JPEGs: the standard library converts them.
		return decodeStd(b, jpeg.Decode, w, h, dst)
	}
	s := scale{1, 1}
	if opt.MinW > 0 || opt.MinH > 0 {
		s = pickScale(w, h, opt.MinW, opt.MinH)
	}
	sw, sh := s.apply(w), s.apply(h)
	c := 3
	if hdr.gray {
		c = 1
	}
	n := sw * sh * c
	if cap(dst) < n {
		dst = make([]uint8, n)
	}
	dst = dst[:n]
	if err := d.tj.decode(b, sw, sh, c, dst); err != nil {
		return nil, err
	}
	return &Image{Pix: dst, W: sw, H: sh, C: c, SrcW: w, SrcH: h}, nil
}

// decodeStd decodes through the standard library into 8-bit gray or RGB (alpha composited on white).
func decodeStd(b []byte, dec func(io.Reader) (image.Image, error), w, h int, dst []uint8) (*Image, error) {
	m, err := dec(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	r := m.Bounds()
	if r.Dx() != w || r.Dy() != h {
		return nil, fmt.Errorf("%w: decoded %dx%d, header says %dx%d", ErrCorrupt, r.Dx(), r.Dy(), w, h)
	}
	c := 3
	switch m.ColorModel() {
	case color.GrayModel, color.Gray16Model:
		c = 1
	}
	n := w * h * c
	if cap(dst) < n {
		dst = make([]uint8, n)
	}
	out := &Image{Pix: dst[:n], W: w, H: h, C: c, SrcW: w, SrcH: h}
	switch src := m.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			copy(out.Pix[y*w:(y+1)*w], src.Pix[y*src.Stride:])
		}
		return out, nil
	case *image.YCbCr:
		if c == 3 {
			i := 0
			for y := r.Min.Y; y < r.Max.Y; y++ {
				for x := r.Min.X; x < r.Max.X; x++ {
					yi, ci := src.YOffset(x, y), src.COffset(x, y)
					out.Pix[i], out.Pix[i+1], out.Pix[i+2] = color.YCbCrToRGB(src.Y[yi], src.Cb[ci], src.Cr[ci])
					i += 3
				}
			}
			return out, nil
		}
	}
	i := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c == 1 {
				out.Pix[i] = color.GrayModel.Convert(m.At(x, y)).(color.Gray).Y
				i++
				continue
			}
			cr, cg, cb, ca := m.At(x, y).RGBA()
			// Composite on white: out = c + (1 - a) * white, all premultiplied 16-bit.
			white := 0xFFFF - ca
			out.Pix[i] = uint8((cr + white) >> 8)
			out.Pix[i+1] = uint8((cg + white) >> 8)
			out.Pix[i+2] = uint8((cb + white) >> 8)
			i += 3
		}
	}
	return out, nil
}

// DecodeBytes decodes one JPEG or PNG held in memory at full size (e.g. an upload). The header's
// dimensions are checked against maxPixels before any decoding: a larger image gives a
// *TooLargeError (errors.Is ErrTooLarge); a type other than JPEG/PNG gives ErrUnsupported; a broken
// file ErrCorrupt.
func DecodeBytes(b []byte, maxPixels int) (*Image, error) {
	return DecodeBytesScaled(b, DecodeOptions{MaxPixels: maxPixels})
}

// DecodeBytesScaled is DecodeBytes with DCT scaling (see DecodeOptions).
func DecodeBytesScaled(b []byte, opt DecodeOptions) (*Image, error) {
	d, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Decode(b, opt, nil)
}

// DecodeFile reads and decodes a file; errors name it.
func DecodeFile(path string, opt DecodeOptions) (*Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := DecodeBytesScaled(b, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
