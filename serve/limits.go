package serve

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"sync"
	"time"

	"protoherb/imageio"
)

// Default limits (Config's zero values). A 2 GB process holds the model, the upload buffers
// (DefaultUploadBudget), the pixels being decoded (DefaultDecodeBudget) and the Go collector's
// headroom over them; DefaultMaxPixels keeps the dearest single image (a 16-bit RGBA PNG, 11 bytes
// a pixel while it is converted) inside the decode budget.
const (
	DefaultMaxPixels    = 40_000_000
	DefaultDecodeBudget = 512 << 20
	DefaultUploadBudget = 256 << 20
)

// weighted is a weighted semaphore, FIFO for large requests: acquire(n) waits until n units are free
// and every earlier waiter has been served, so a large request is not starved by a stream of
// others. Small requests (at most small units) take free units at once, whoever waits: a
// specimen photo is not held up behind a huge scan waiting for memory. It holds the decode memory
// budget (units: bytes) shared by all identify and enrolment requests.
type weighted struct {
	size    int64
	small   int64 // requests of at most this many units skip the queue when they fit
	mu      sync.Mutex
	cur     int64
	waiters list.List // of *waiter, in arrival order
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when the units are granted
}

func newWeighted(size int64) *weighted { return &weighted{size: size, small: size / 64} }

// fits reports whether n units can be granted now to a request that is not queued. Called with mu
// held.
func (w *weighted) fits(n int64) bool {
	return w.size-w.cur >= n && (w.waiters.Len() == 0 || n <= w.small)
}

// acquire takes n units, waiting (FIFO) until they are free or ctx ends. n must not exceed the size.
func (w *weighted) acquire(ctx context.Context, n int64) error {
	w.mu.Lock()
	if w.fits(n) {
		w.cur += n
		w.mu.Unlock()
		return nil
	}
	wt := &waiter{n: n, ready: make(chan struct{})}
	el := w.waiters.PushBack(wt)
	w.mu.Unlock()
	select {
	case <-wt.ready:
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		select {
		case <-wt.ready: // granted meanwhile: give the units back
			w.cur -= n
			w.notify()
		default:
			front := w.waiters.Front() == el
			w.waiters.Remove(el)
			if front { // the ones behind may fit now
				w.notify()
			}
		}
		w.mu.Unlock()
		return ctx.Err()
	}
}

// tryAcquire takes n units when they are free now, without waiting.
func (w *weighted) tryAcquire(n int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fits(n) {
		w.cur += n
		return true
	}
	return false
}

// release returns n units.
func (w *weighted) release(n int64) {
	w.mu.Lock()
	w.cur -= n
	if w.cur < 0 {
		w.mu.Unlock()
		panic("serve: released more than acquired")
	}
	w.notify()
	w.mu.Unlock()
}

// used returns the units held now.
func (w *weighted) used() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// notify grants waiters in order while they fit, and then any small waiter that fits. Called with
// mu held.
func (w *weighted) notify() {
	blocked := false
	for el := w.waiters.Front(); el != nil; {
		wt, next := el.Value.(*waiter), el.Next()
		if w.size-w.cur >= wt.n && (!blocked || wt.n <= w.small) {
			w.cur += wt.n
			w.waiters.Remove(el)
			close(wt.ready)
		} else {
			blocked = true
		}
		el = next
	}
}

// decodeCost bounds the bytes that decoding an image of w×h pixels in format f holds at once,
// from its header. A colour or gray JPEG is decoded by libjpeg-turbo at the smallest DCT scale
// (k/8) that keeps tf's crop Size pixels per side (with a centre crop, as the service's transform
// has): that scaled image, 3 or 1 bytes a pixel. Anything else (PNG, CMYK JPEG) is decoded whole
// through the standard library: its image at its bytes per pixel plus the 8-bit copy the crop is
// taken from.
func decodeCost(b []byte, f imageio.Format, w, h int, tf imageio.Transform) int64 {
	px := int64(w) * int64(h)
	var model color.Model
	switch f {
	case imageio.FormatPNG:
		if c, err := png.DecodeConfig(bytes.NewReader(b)); err == nil {
			model = c.ColorModel
		}
	case imageio.FormatJPEG:
		if c, err := jpeg.DecodeConfig(bytes.NewReader(b)); err == nil {
			model = c.ColorModel
		}
	}
	if f == imageio.FormatJPEG && (model == color.YCbCrModel || model == color.GrayModel) && !tf.RandomCrop && tf.Size > 0 {
		// The crop is min(w,h)·Size/Resize pixels wide, so the scale must be at least Resize/min(w,h).
		short := int64(min(w, h))
		k := min(8, (8*int64(max(tf.Resize, tf.Size))+short-1)/short)
		c := int64(3)
		if model == color.GrayModel {
			c = 1
		}
		cost := ((int64(w)*k + 7) / 8) * ((int64(h)*k + 7) / 8) * c
		if progressive, comps := jpegSOF(b); progressive {
			// A progressive JPEG's DCT coefficients are held whole, 2 bytes each, whatever the scale.
			cost += px * 2 * int64(comps)
		}
		return cost
	}
	switch model {
	case color.GrayModel:
		return px * (1 + 1)
	case color.Gray16Model:
		return px * (2 + 1)
	case color.YCbCrModel:
		return px * (3 + 3)
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel:
		return px * (4 + 3)
	}
	if _, ok := model.(color.Palette); ok {
		return px * (1 + 3)
	}
	return px * (8 + 3) // 16-bit RGBA, or unknown: the dearest case
}

// jpegSOF reads a JPEG's frame header: whether it is progressive, and its number of components.
// A header it cannot walk counts as progressive with 3 components (the dearer reading).
func jpegSOF(b []byte) (progressive bool, comps int) {
	for i := 2; i+9 < len(b); {
		if b[i] != 0xFF {
			return true, 3
		}
		m := b[i+1]
		if m == 0xFF || m == 0x01 || (m >= 0xD0 && m <= 0xD7) { // fill byte, or a marker without length
			i++
			continue
		}
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			return m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE, int(b[i+9])
		}
		if m == 0xDA { // scan data before any frame header
			return true, 3
		}
		i += 2 + (int(b[i+2])<<8 | int(b[i+3]))
	}
	return true, 3
}

// retainLimit is the decode cost above which a request's decoder is freed rather than pooled, so
// that its grown pixel buffer is not kept for the life of the process.
const retainLimit = 16 << 20

// errUploadsFull is a body read refused because the upload buffers of all requests are at their
// budget.
var errUploadsFull = errors.New("the server is buffering too many uploads")

// chargedBody is a request body whose bytes are charged, as they arrive, to the upload budget.
type chargedBody struct {
	io.ReadCloser
	budget *weighted
	n      int64
}

func (c *chargedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		if !c.budget.tryAcquire(int64(n)) {
			return 0, errUploadsFull
		}
		c.n += int64(n)
	}
	return n, err
}

// upload prepares r's body to be read before the request takes any compute slot: a deadline of
// BodyTimeout (at most ReadTimeout) from now, at most limit bytes (413), and every byte received
// charged to the upload budget (503 when full) until release is called. A stalled upload so costs
// a connection and the bytes it sent, never a slot or decode memory.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, limit int64) (release func()) {
	// The connection's deadline (ReadTimeout) is replaced, never extended.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(min(s.cfg.BodyTimeout, s.cfg.ReadTimeout)))
	cb := &chargedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), budget: s.uploads}
	r.Body = cb
	return func() { s.uploads.release(cb.n) }
}
