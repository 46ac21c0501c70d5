package torch

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"sync"
)

// PackedConv is a convolution prepared for inference on CPU: libtorch's own
// mkldnn_prepacked::conv2d_prepack has reordered its weight once into the blocked layout oneDNN's
// kernel reads, and can apply ReLU in the same pass that writes the output. A plain Conv2d reorders the
// weight on every call and leaves the ReLU to a second pass over the activation, which costs most at
// small batches (protoherb's forward passes on CPU, images/s: ResNet-18 at batch 1 +41–60 %, Conv-4
// at 84 px and batch 4 +12–41 %, at batch 32 +4–14 %, ResNets at batch 16–32 +3–5 %;
// docs/benchmarks.md). The results equal Conv2d's (and Relu's) to float32 rounding: the same oneDNN
// kernel runs.
//
// It records no gradient: use it for forward passes under NoGrad only. A PackedConv is safe for
// concurrent Forward calls; Free releases it.
type PackedConv struct {
	mu     sync.RWMutex
	h      C.pt_packed_conv
	relu   bool
	freeFn runtime.Cleanup
}

// PrepackAvailable reports whether the loaded libtorch has the prepacked-convolution operators (x86
// builds with oneDNN do; others then use Conv2d).
func PrepackAvailable() bool { return C.pt_conv2d_prepack_available() != 0 }

// PackConv2d prepares w [O,C/groups,kh,kw] and b [O] (b may be nil) with options o for input shaped
// and laid out (NCHW or channels-last) like like [N,C,H,W]; input of another size or layout still runs,
// oneDNN then reorders what it needs. With relu the result is ReLU(conv(x)). Only float32 CPU tensors
// can be packed, and only where PrepackAvailable.
func PackConv2d(w, b *Tensor, o Conv2dOptions, like *Tensor, relu bool) (*PackedConv, error) {
	if err := firstErr(w, like); err != nil {
		return nil, err
	}
	if b != nil && b.Err() != nil {
		return nil, b.Err()
	}
	stride, pad, dil, groups := o.values()
	r := 0
	if relu {
		r = 1
	}
	var h C.pt_packed_conv
	e := C.pt_conv2d_prepack(w.h, handle(b), int64s(stride[:]), int64s(pad[:]), int64s(dil[:]), C.int64_t(groups),
		like.h, C.int(r), &h)
	if err := cerr("conv2d_prepack", e); err != nil {
		return nil, err
	}
	p := &PackedConv{h: h, relu: relu}
	p.freeFn = runtime.AddCleanup(p, func(h C.pt_packed_conv) { C.pt_packed_conv_free(h) }, h)
	return p, nil
}

// ReLU reports whether the convolution applies ReLU to its output.
func (p *PackedConv) ReLU() bool { return p.relu }

// Forward convolves x [N,C,H,W] (float32, CPU). The result has x's memory format and belongs to x's
// scope.
func (p *PackedConv) Forward(x *Tensor) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.h == nil {
		return errTensor(&Error{Op: "conv2d_packed", Msg: "packed convolution used after Free"})
	}
	var h C.pt_tensor
	e := C.pt_conv2d_packed(x.h, p.h, &h)
	return result("conv2d_packed", &h, e, x)
}

// Free releases the packed weight now. It is idempotent.
func (p *PackedConv) Free() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h != nil {
		p.freeFn.Stop()
		C.pt_packed_conv_free(p.h)
		p.h = nil
	}
}
