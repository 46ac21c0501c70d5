package torch

/*
#include "shim.h"
*/
import "C"

// Reduction selects how a loss combines per-example values.
type Reduction int

const (
	ReduceNone Reduction = 0
	ReduceMean Reduction = 1
	ReduceSum  Reduction = 2
)

// Conv2dOptions are the convolution hyper-parameters; zero values mean stride 1, padding 0,
// dilation 1, groups 1.
type Conv2dOptions struct {
	Stride, Padding, Dilation [2]int64
	Groups                    int64
}

// values returns the options with their zero values replaced by the defaults.
func (o Conv2dOptions) values() (stride, padding, dilation [2]int64, groups int64) {
	stride, padding, dilation, groups = o.Stride, o.Padding, o.Dilation, o.Groups
	if stride == [2]int64{} {
		stride = [2]int64{1, 1}
	}
	if dilation == [2]int64{} {
		dilation = [2]int64{1, 1}
	}
	if groups == 0 {
		groups = 1
	}
	return stride, padding, dilation, groups
}

// Conv2d convolves x [N,C,H,W] with w [O,C/groups,kh,kw]; b [O] may be nil.
func Conv2d(x, w, b *Tensor, o Conv2dOptions) *Tensor {
	if err := firstErr(x, w); err != nil {
		return errTensor(err)
	}
	if b != nil && b.Err() != nil {
		return errTensor(b.Err())
	}
	stride, pad, dil, groups := o.values()
	var h C.pt_tensor
	e := C.pt_conv2d(x.h, w.h, handle(b), int64s(stride[:]), int64s(pad[:]), int64s(dil[:]), C.int64_t(groups), &h)
	return result("conv2d", &h, e, x, w, b)
}

// BatchNorm normalises x over (N,H,W) per channel. In training mode it uses batch statistics and
// updates runningMean/runningVar in place with momentum; in eval mode it uses the running statistics.
// weight, bias, runningMean and runningVar may each be nil.
func BatchNorm(x, weight, bias, runningMean, runningVar *Tensor, training bool, momentum, eps float64) *Tensor {
	for _, t := range []*Tensor{x, weight, bias, runningMean, runningVar} {
		if t != nil && t.Err() != nil {
			return errTensor(t.Err())
		}
	}
	if x == nil {
		return errTensor(&Error{Op: "batch_norm", Msg: "nil input"})
	}
	tr := 0
	if training {
		tr = 1
	}
	var h C.pt_tensor
	e := C.pt_batch_norm(x.h, handle(weight), handle(bias), handle(runningMean), handle(runningVar), C.int(tr),
		C.double(momentum), C.double(eps), &h)
	return result("batch_norm", &h, e, x, weight, bias)
}

// MaxPool2d takes the maximum over kernel windows; stride 0 means stride = kernel.
func MaxPool2d(x *Tensor, kernel, stride, padding int64, ceilMode bool) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	if stride == 0 {
		stride = kernel
	}
	k, s, p := []int64{kernel, kernel}, []int64{stride, stride}, []int64{padding, padding}
	cm := 0
	if ceilMode {
		cm = 1
	}
	var h C.pt_tensor
	return result("max_pool2d", &h, C.pt_max_pool2d(x.h, int64s(k), int64s(s), int64s(p), C.int(cm), &h), x)
}

// AvgPool2d averages over kernel windows; stride 0 means stride = kernel.
func AvgPool2d(x *Tensor, kernel, stride, padding int64) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	if stride == 0 {
		stride = kernel
	}
	k, s, p := []int64{kernel, kernel}, []int64{stride, stride}, []int64{padding, padding}
	var h C.pt_tensor
	return result("avg_pool2d", &h, C.pt_avg_pool2d(x.h, int64s(k), int64s(s), int64s(p), &h), x)
}

// AdaptiveAvgPool2d averages x down to an outH × outW grid.
func AdaptiveAvgPool2d(x *Tensor, outH, outW int64) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("adaptive_avg_pool2d", &h, C.pt_adaptive_avg_pool2d(x.h, C.int64_t(outH), C.int64_t(outW), &h), x)
}

// Linear returns x @ wᵀ + b with w [out,in]; b may be nil.
func Linear(x, w, b *Tensor) *Tensor {
	if err := firstErr(x, w); err != nil {
		return errTensor(err)
	}
	if b != nil && b.Err() != nil {
		return errTensor(b.Err())
	}
	var h C.pt_tensor
	return result("linear", &h, C.pt_linear(x.h, w.h, handle(b), &h), x, w, b)
}

// Dropout zeroes elements with probability p during training and rescales the rest.
func Dropout(x *Tensor, p float64, training bool) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	tr := 0
	if training {
		tr = 1
	}
	var h C.pt_tensor
	return result("dropout", &h, C.pt_dropout(x.h, C.double(p), C.int(tr), &h), x)
}

// CrossEntropy is softmax cross-entropy between logits [N,C] and int64 class targets [N], with
// optional label smoothing in [0,1).
func CrossEntropy(logits, target *Tensor, labelSmoothing float64, red Reduction) *Tensor {
	if err := firstErr(logits, target); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	e := C.pt_cross_entropy(logits.h, target.h, C.double(labelSmoothing), C.int(red), &h)
	return result("cross_entropy", &h, e, logits, target)
}

// NLLLoss is the negative log-likelihood of int64 targets under log-probabilities logp [N,C].
func NLLLoss(logp, target *Tensor, red Reduction) *Tensor {
	if err := firstErr(logp, target); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("nll_loss", &h, C.pt_nll_loss(logp.h, target.h, C.int(red), &h), logp, target)
}

// Normalize divides x by its p-norm along dim (at least eps).
func Normalize(x *Tensor, p float64, dim int64, eps float64) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("normalize", &h, C.pt_normalize(x.h, C.double(p), C.int64_t(dim), C.double(eps), &h), x)
}

// CosineSimilarity returns the cosine of the angle between a and b along dim (broadcasting).
func CosineSimilarity(a, b *Tensor, dim int64, eps float64) *Tensor {
	if err := firstErr(a, b); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("cosine_similarity", &h, C.pt_cosine_similarity(a.h, b.h, C.int64_t(dim), C.double(eps), &h), a, b)
}

// SquaredDistances returns the pairwise squared euclidean distances between the rows of a [N,D] and
// b [M,D] as [N,M], via one matrix product (|a|² + |b|² − 2abᵀ, clamped at 0); differentiable.
func SquaredDistances(a, b *Tensor) *Tensor {
	if err := firstErr(a, b); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("sq_dist", &h, C.pt_sq_dist(a.h, b.h, &h), a, b)
}

// PairwiseCosine returns the cosine similarity between every row of a [N,D] and of b [M,D] as [N,M].
func PairwiseCosine(a, b *Tensor, eps float64) *Tensor {
	an := Normalize(a, 2, 1, eps)
	bn := Normalize(b, 2, 1, eps)
	defer an.freeIfUnscoped()
	defer bn.freeIfUnscoped()
	bt := bn.T()
	defer bt.freeIfUnscoped()
	return an.Mm(bt)
}

// freeIfUnscoped frees intermediate results that no scope will free.
func (t *Tensor) freeIfUnscoped() {
	if t != nil && t.scope == nil {
		t.Free()
	}
}
