package imageio

// #cgo LDFLAGS: -lturbojpeg
// #include <stdlib.h>
// #include <turbojpeg.h>
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// turbo wraps one libjpeg-turbo decompressor handle. A handle is not safe for concurrent use: each
// loader worker owns one.
type turbo struct {
	h C.tjhandle
}

func newTurbo() (*turbo, error) {
	h := C.tjInitDecompress()
	if h == nil {
		return nil, errors.New("libjpeg-turbo: tjInitDecompress failed")
	}
	return &turbo{h: h}, nil
}

func (t *turbo) close() {
	if t != nil && t.h != nil {
		C.tjDestroy(t.h)
		t.h = nil
	}
}

func (t *turbo) errorString() string {
	return C.GoString(C.tjGetErrorStr2(t.h))
}

// jpegHeader is what the JPEG header says.
type jpegHeader struct {
	w, h int
	gray bool
	cmyk bool
}

func (t *turbo) header(b []byte) (jpegHeader, error) {
	var w, h, subsamp, cs C.int
	if len(b) == 0 {
		return jpegHeader{}, ErrCorrupt
	}
	if C.tjDecompressHeader3(t.h, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), &w, &h, &subsamp, &cs) != 0 {
		return jpegHeader{}, fmt.Errorf("%w: JPEG header: %s", ErrCorrupt, t.errorString())
	}
	return jpegHeader{w: int(w), h: int(h), gray: cs == C.TJCS_GRAY, cmyk: cs == C.TJCS_CMYK || cs == C.TJCS_YCCK}, nil
}

// decode decompresses into dst, which holds w*h*channels bytes, where (w, h) is a size given by one
// of the scaling factors. Warnings are tolerated except a truncated file.
func (t *turbo) decode(b []byte, w, h, channels int, dst []byte) error {
	pf := C.int(C.TJPF_RGB)
	if channels == 1 {
		pf = C.TJPF_GRAY
	}
	if len(dst) < w*h*channels {
		return errors.New("libjpeg-turbo: output buffer too small")
	}
	rc := C.tjDecompress2(t.h, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.int(w), C.int(w*channels), C.int(h), pf, 0)
	if rc != 0 {
		if C.tjGetErrorCode(t.h) != C.TJERR_WARNING {
			return fmt.Errorf("%w: %s", ErrCorrupt, t.errorString())
		}
		// A warning. Its text is not kept reliably (libjpeg-turbo 2.1 formats only fatal errors), so
		// tell a truncated file (the one warning that means missing pixels) by its missing
		// end-of-image marker; others, such as extraneous bytes before a marker, leave the image whole.
		if !hasEOI(b) {
			return fmt.Errorf("%w: truncated JPEG (no end-of-image marker)", ErrCorrupt)
		}
	}
	return nil
}

// hasEOI reports whether an end-of-image marker (FF D9) lies in the last KiB of the file.
func hasEOI(b []byte) bool {
	tail := b[max(0, len(b)-1024):]
	for i := len(tail) - 2; i >= 0; i-- {
		if tail[i] == 0xFF && tail[i+1] == 0xD9 {
			return true
		}
	}
	return false
}

// scale is a DCT scaling factor num/denom.
type scale struct{ num, denom int }

func (s scale) apply(d int) int { return (d*s.num + s.denom - 1) / s.denom }

var scalingFactors = sync.OnceValue(func() []scale {
	var n C.int
	p := C.tjGetScalingFactors(&n)
	if p == nil || n == 0 {
		return []scale{{1, 1}}
	}
	fs := unsafe.Slice(p, int(n))
	out := make([]scale, 0, len(fs))
	for _, f := range fs {
		if f.num <= f.denom { // never decode larger than the file
			out = append(out, scale{int(f.num), int(f.denom)})
		}
	}
	return out
})

// pickScale returns the smallest scaling factor whose scaled size still covers minW x minH
// (1/1 when none is smaller).
func pickScale(w, h, minW, minH int) scale {
	best := scale{1, 1}
	for _, s := range scalingFactors() {
		if s.apply(w) >= minW && s.apply(h) >= minH && s.num*best.denom < best.num*s.denom {
			best = s
		}
	}
	return best
}
