package imageio

// #cgo LDFLAGS: -ljpeg
// #include <stdio.h>
// #include <stdlib.h>
// #include <string.h>
// #include <setjmp.h>
// #include <jpeglib.h>
//
// typedef struct {
//   struct jpeg_error_mgr pub;
//   jmp_buf jump;
//   char msg[JMSG_LENGTH_MAX];
// } ph_err;
//
// static void ph_error_exit(j_common_ptr c) {
//   ph_err *e = (ph_err *)c->err;
//   (*c->err->format_message)(c, e->msg);
//   longjmp(e->jump, 1);
// }
// static void ph_output_message(j_common_ptr c) { (void)c; }
//
// // One reusable decompressor: its memory pools survive between images (jpeg_abort keeps them).
// typedef struct {
//   struct jpeg_decompress_struct d;
//   ph_err err;
// } ph_dec;
//
// static ph_dec *ph_dec_new(void) {
//   ph_dec *p = (ph_dec *)calloc(1, sizeof(ph_dec));
//   if (!p) return NULL;
//   p->d.err = jpeg_std_error(&p->err.pub);
//   p->err.pub.error_exit = ph_error_exit;
//   p->err.pub.output_message = ph_output_message;
//   if (setjmp(p->err.jump)) { free(p); return NULL; }
//   jpeg_create_decompress(&p->d);
//   return p;
// }
//
// static void ph_dec_free(ph_dec *p) {
//   if (!p) return;
//   jpeg_destroy_decompress(&p->d);
//   free(p);
// }
//
// // ph_decode_region decodes rows [y0, y0+h) and at least columns [x0, x0+w) of the image scaled by
// // num/8, into dst (rows of *out_w * channels bytes). libjpeg widens the columns to whole iMCUs:
// // *out_x0 and *out_w say which it decoded. Returns 0, or -1 with msg set; *warnings counts
// // libjpeg's warnings (e.g. a truncated file).
// static int ph_decode_region(ph_dec *p, const unsigned char *buf, unsigned long len, int num,
//                             int x0, int y0, int w, int h, int channels,
//                             unsigned char *dst, size_t dst_len, int *out_x0, int *out_w,
//                             int *warnings, char *msg) {
//   struct jpeg_decompress_struct *d = &p->d;
//   JSAMPROW row;
//   if (setjmp(p->err.jump)) {
//     strncpy(msg, p->err.msg, JMSG_LENGTH_MAX - 1);
//     jpeg_abort_decompress(d);
//     return -1;
//   }
//   p->err.pub.num_warnings = 0;
//   jpeg_mem_src(d, buf, len);
//   jpeg_read_header(d, TRUE);
//   d->scale_num = num;
//   d->scale_denom = 8;
//   d->out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
//   jpeg_start_decompress(d);
//   if ((int)d->output_components != channels || y0 < 0 || h <= 0 || y0 + h > (int)d->output_height ||
//       x0 < 0 || w <= 0 || x0 + w > (int)d->output_width) {
//     snprintf(msg, JMSG_LENGTH_MAX, "region %dx%d+%d+%d outside the %ux%u scaled image", w, h, x0, y0,
//              d->output_width, d->output_height);
//     jpeg_abort_decompress(d);
//     return -1;
//   }
//   JDIMENSION xo = (JDIMENSION)x0, wo = (JDIMENSION)w;
//   if (x0 > 0 || w < (int)d->output_width) jpeg_crop_scanline(d, &xo, &wo);
//   if ((size_t)wo * channels * h > dst_len) {
//     snprintf(msg, JMSG_LENGTH_MAX, "region buffer too small");
//     jpeg_abort_decompress(d);
//     return -1;
//   }
//   if (y0 > 0) jpeg_skip_scanlines(d, (JDIMENSION)y0);
//   size_t stride = (size_t)wo * channels;
//   for (int y = 0; y < h;) {
//     row = dst + (size_t)y * stride;
//     JDIMENSION got = jpeg_read_scanlines(d, &row, 1);
//     if (got == 0) break; // suspension cannot happen with a memory source
//     y += got;
//   }
//   *out_x0 = (int)xo;
//   *out_w = (int)wo;
//   *warnings = (int)p->err.pub.num_warnings;
//   // The rows below the region are never decoded.
//   jpeg_abort_decompress(d);
//   return 0;
// }
import "C"

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// regionDecoder decodes a window of a DCT-scaled JPEG with libjpeg's scanline API: rows above the
// window are skipped (entropy-decoded only), rows below it are never read, and columns outside it
// (to the nearest iMCU) skip the inverse DCT and colour conversion. Not safe for concurrent use.
type regionDecoder struct {
	p *C.ph_dec
}

func newRegionDecoder() (*regionDecoder, error) {
	p := C.ph_dec_new()
	if p == nil {
		return nil, errors.New("libjpeg: cannot create a decompressor")
	}
	return &regionDecoder{p: p}, nil
}

func (r *regionDecoder) close() {
	if r != nil && r.p != nil {
		C.ph_dec_free(r.p)
		r.p = nil
	}
}

// rect is a window in pixels of a scaled image: columns [x0, x0+w), rows [y0, y0+h).
type rect struct{ x0, y0, w, h int }

// decode decodes window win of b scaled by s (a scaled image sw pixels wide) into dst (grown as
// needed). The image it returns holds the decoded rows of the window, with at least its columns
// (libjpeg widens them to whole iMCUs), and the column at which it starts in the scaled image.
func (r *regionDecoder) decode(b []byte, s scale, sw int, win rect, channels int, dst []uint8) (*Image, int, error) {
	if s.denom != 8 && 8%s.denom == 0 {
		s = scale{s.num * (8 / s.denom), 8}
	}
	if s.denom != 8 {
		return nil, 0, fmt.Errorf("libjpeg: scale %d/%d is not in eighths", s.num, s.denom)
	}
	dst = grow(dst, win.h*channels*sw) // widened columns never exceed the image's width
	var ox, ow, warn C.int
	var msg [C.JMSG_LENGTH_MAX]C.char
	rc := C.ph_decode_region(r.p, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), C.int(s.num),
		C.int(win.x0), C.int(win.y0), C.int(win.w), C.int(win.h), C.int(channels),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.size_t(len(dst)), &ox, &ow, &warn, &msg[0])
	if rc != 0 {
		return nil, 0, fmt.Errorf("%w: %s", ErrCorrupt, C.GoString(&msg[0]))
	}
	if warn != 0 && !hasEOI(b) {
		return nil, 0, fmt.Errorf("%w: truncated JPEG (no end-of-image marker)", ErrCorrupt)
	}
	w := int(ow)
	return &Image{Pix: dst[:w*win.h*channels], W: w, H: win.h, C: channels}, int(ox), nil
}

// window is the part of a sw x sh image that resampling box (in the same pixels) to an output of
// out x out reads: the box grown by the filter's reach on each side, clamped to the image.
func window(box Box, sw, sh, out int) rect {
	reach := math.Ceil(math.Max(math.Max((box.X1-box.X0)/float64(out), (box.Y1-box.Y0)/float64(out)), 1)) + 1
	x0 := max(0, int(math.Floor(box.X0-reach)))
	y0 := max(0, int(math.Floor(box.Y0-reach)))
	x1 := min(sw, int(math.Ceil(box.X1+reach)))
	y1 := min(sh, int(math.Ceil(box.Y1+reach)))
	return rect{x0, y0, max(x1-x0, 1), max(y1-y0, 1)}
}
