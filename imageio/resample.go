package imageio

import "math"

// Box is a rectangle in source pixel coordinates (edges, not centres): X0 <= x < X1.
type Box struct{ X0, Y0, X1, Y1 float64 }

// Scaled maps the box into an image scaled by (sx, sy).
func (b Box) Scaled(sx, sy float64) Box { return Box{b.X0 * sx, b.Y0 * sy, b.X1 * sx, b.Y1 * sy} }

// weights are one axis's fixed-point filter taps: output i reads src[start[i] : start[i]+n[i]].
type weights struct {
	start, n []int
	w        []int32 // len(out) * taps
	taps     int
}

const fixBits = 14

// axisWeights computes triangle (bilinear) filter taps mapping the source interval [b0, b1) of an axis
// of length size onto out samples. When shrinking, the filter widens with the scale (antialiasing), as
// PIL's resize does.
func axisWeights(b0, b1 float64, size, out int, ws *weights) {
	scale := (b1 - b0) / float64(out)
	support := math.Max(scale, 1)
	taps := int(math.Ceil(support))*2 + 1
	ws.taps = taps
	ws.start = grow(ws.start, out)
	ws.n = grow(ws.n, out)
	ws.w = grow(ws.w, out*taps)
	tmp := make([]float64, taps+2)
	for i := 0; i < out; i++ {
		center := b0 + (float64(i)+0.5)*scale
		lo := int(math.Floor(center - support))
		hi := int(math.Ceil(center + support))
		lo = max(lo, 0)
		hi = min(hi, size)
		if hi-lo > taps {
			hi = lo + taps
		}
		sum := 0.0
		k := 0
		for j := lo; j < hi; j++ {
			x := math.Abs((float64(j) + 0.5 - center) / support)
			wt := 0.0
			if x < 1 {
				wt = 1 - x
			}
			if wt < 1e-9 && k == 0 {
				lo++ // drop leading zero taps
				continue
			}
			tmp[k] = wt
			sum += wt
			k++
		}
		for k > 0 && tmp[k-1] < 1e-9 {
			k-- // and trailing ones
		}
		if sum == 0 { // box outside the image: nearest edge pixel
			j := min(max(int(center), 0), size-1)
			lo, k, tmp[0], sum = j, 1, 1, 1
		}
		ws.start[i], ws.n[i] = lo, k
		row := ws.w[i*taps : (i+1)*taps]
		acc := int32(0)
		for j := 0; j < k; j++ {
			row[j] = int32(math.Round(tmp[j] / sum * (1 << fixBits)))
			acc += row[j]
		}
		// Make the taps sum exactly to one so flat areas stay flat.
		if k > 0 {
			big := 0
			for j := 1; j < k; j++ {
				if row[j] > row[big] {
					big = j
				}
			}
			row[big] += 1<<fixBits - acc
		}
		for j := k; j < taps; j++ {
			row[j] = 0
		}
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func clamp8(v int32) uint8 {
	v = (v + 1<<(fixBits-1)) >> fixBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resampler resizes boxes of images with a separable bilinear (triangle) filter in fixed point. It
// keeps scratch buffers between calls; use one per goroutine.
type Resampler struct {
	wx, wy weights
	tmp    []uint8
}

// Resample writes the box of src, resized to ow x oh, into dst (ow*oh*src.C bytes, HWC).
func (r *Resampler) Resample(src *Image, box Box, ow, oh int, dst []uint8) {
	c := src.C
	axisWeights(box.X0, box.X1, src.W, ow, &r.wx)
	axisWeights(box.Y0, box.Y1, src.H, oh, &r.wy)
	// Source rows the vertical pass needs.
	y0, y1 := src.H, 0
	for i := 0; i < oh; i++ {
		y0 = min(y0, r.wy.start[i])
		y1 = max(y1, r.wy.start[i]+r.wy.n[i])
	}
	rows := y1 - y0
	r.tmp = grow(r.tmp, rows*ow*c)
	// Horizontal pass: rows y0..y1 of the source to ow columns.
	for y := 0; y < rows; y++ {
		srow := src.Pix[(y0+y)*src.W*c : (y0+y+1)*src.W*c]
		trow := r.tmp[y*ow*c : (y+1)*ow*c]
		if c == 3 {
			hpass3(srow, trow, &r.wx, ow)
		} else {
			hpass1(srow, trow, &r.wx, ow)
		}
	}
	// Vertical pass.
	stride := ow * c
	for i := 0; i < oh; i++ {
		s, n := r.wy.start[i]-y0, r.wy.n[i]
		w := r.wy.w[i*r.wy.taps : i*r.wy.taps+n]
		out := dst[i*stride : (i+1)*stride]
		switch n {
		case 1:
			copy(out, r.tmp[s*stride:(s+1)*stride])
		case 2:
			a, b := r.tmp[s*stride:(s+1)*stride], r.tmp[(s+1)*stride:(s+2)*stride]
			w0, w1 := w[0], w[1]
			for x := range out {
				out[x] = clamp8(int32(a[x])*w0 + int32(b[x])*w1)
			}
		case 3:
			a, b, cc := r.tmp[s*stride:(s+1)*stride], r.tmp[(s+1)*stride:(s+2)*stride], r.tmp[(s+2)*stride:(s+3)*stride]
			w0, w1, w2 := w[0], w[1], w[2]
			for x := range out {
				out[x] = clamp8(int32(a[x])*w0 + int32(b[x])*w1 + int32(cc[x])*w2)
			}
		default:
			for x := range out {
				acc := int32(0)
				for k, wk := range w {
					acc += int32(r.tmp[(s+k)*stride+x]) * wk
				}
				out[x] = clamp8(acc)
			}
		}
	}
}

func hpass3(src, dst []uint8, ws *weights, ow int) {
	for i := 0; i < ow; i++ {
		s, n := ws.start[i], ws.n[i]
		w := ws.w[i*ws.taps : i*ws.taps+n]
		p := src[s*3 : (s+n)*3]
		d := dst[i*3 : i*3+3 : i*3+3]
		switch n {
		case 1:
			d[0], d[1], d[2] = p[0], p[1], p[2]
		case 2:
			w0, w1 := w[0], w[1]
			p = p[:6]
			d[0] = clamp8(int32(p[0])*w0 + int32(p[3])*w1)
			d[1] = clamp8(int32(p[1])*w0 + int32(p[4])*w1)
			d[2] = clamp8(int32(p[2])*w0 + int32(p[5])*w1)
		case 3:
			w0, w1, w2 := w[0], w[1], w[2]
			p = p[:9]
			d[0] = clamp8(int32(p[0])*w0 + int32(p[3])*w1 + int32(p[6])*w2)
			d[1] = clamp8(int32(p[1])*w0 + int32(p[4])*w1 + int32(p[7])*w2)
			d[2] = clamp8(int32(p[2])*w0 + int32(p[5])*w1 + int32(p[8])*w2)
		default:
			var r, g, b int32
			for k, wk := range w {
				q := p[k*3 : k*3+3 : k*3+3]
				r += int32(q[0]) * wk
				g += int32(q[1]) * wk
				b += int32(q[2]) * wk
			}
			d[0], d[1], d[2] = clamp8(r), clamp8(g), clamp8(b)
		}
	}
}

func hpass1(src, dst []uint8, ws *weights, ow int) {
	for i := 0; i < ow; i++ {
		s, n := ws.start[i], ws.n[i]
		w := ws.w[i*ws.taps : i*ws.taps+n]
		var acc int32
		p := src[s : s+n]
		for k, wk := range w {
			acc += int32(p[k]) * wk
		}
		dst[i] = clamp8(acc)
	}
}
