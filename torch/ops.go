package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

// Op codes: the enums in shim.h, the one definition shim.cpp switches on.
const (
	opRelu      = C.PT_U_RELU
	opSqrt      = C.PT_U_SQRT
	opExp       = C.PT_U_EXP
	opLog       = C.PT_U_LOG
	opNeg       = C.PT_U_NEG
	opSigmoid   = C.PT_U_SIGMOID
	opTanh      = C.PT_U_TANH
	opAbs       = C.PT_U_ABS
	opSquare    = C.PT_U_SQUARE
	opDetach    = C.PT_U_DETACH
	opClone     = C.PT_U_CLONE
	opAllFinite = C.PT_U_ALL_FINITE
	opLeakyRelu = C.PT_U_LEAKY_RELU
	opZerosLike = C.PT_U_ZEROS_LIKE
	opOnesLike  = C.PT_U_ONES_LIKE
)

const (
	opAdd     = C.PT_B_ADD
	opSub     = C.PT_B_SUB
	opMul     = C.PT_B_MUL
	opDiv     = C.PT_B_DIV
	opMatmul  = C.PT_B_MATMUL
	opMm      = C.PT_B_MM
	opPow     = C.PT_B_POW
	opEq      = C.PT_B_EQ
	opMaximum = C.PT_B_MAXIMUM
	opMinimum = C.PT_B_MINIMUM
	opBmm     = C.PT_B_BMM
	opGt      = C.PT_B_GT
	opLt      = C.PT_B_LT
)

const (
	sAdd  = C.PT_S_ADD
	sMul  = C.PT_S_MUL
	sPow  = C.PT_S_POW
	sDiv  = C.PT_S_DIV
	sEq   = C.PT_S_EQ
	sGt   = C.PT_S_GT
	sLt   = C.PT_S_LT
	sFill = C.PT_S_FILL
)

const (
	rSum       = C.PT_R_SUM
	rMean      = C.PT_R_MEAN
	rMax       = C.PT_R_MAX
	rMin       = C.PT_R_MIN
	rArgmax    = C.PT_R_ARGMAX
	rArgmin    = C.PT_R_ARGMIN
	rLogsumexp = C.PT_R_LOGSUMEXP
	rVar       = C.PT_R_VAR
)

// The names errors report, indexed by op code.
var unaryNames = [...]string{opRelu: "relu", opSqrt: "sqrt", opExp: "exp", opLog: "log", opNeg: "neg",
	opSigmoid: "sigmoid", opTanh: "tanh", opAbs: "abs", opSquare: "square", opDetach: "detach", opClone: "clone",
	opAllFinite: "isfinite", opLeakyRelu: "leaky_relu", opZerosLike: "zeros_like", opOnesLike: "ones_like"}
var binaryNames = [...]string{opAdd: "add", opSub: "sub", opMul: "mul", opDiv: "div", opMatmul: "matmul",
	opMm: "mm", opPow: "pow", opEq: "eq", opMaximum: "maximum", opMinimum: "minimum", opBmm: "bmm", opGt: "gt", opLt: "lt"}
var scalarNames = [...]string{sAdd: "add_scalar", sMul: "mul_scalar", sPow: "pow_scalar", sDiv: "div_scalar",
	sEq: "eq_scalar", sGt: "gt_scalar", sLt: "lt_scalar", sFill: "fill"}
var reduceNames = [...]string{rSum: "sum", rMean: "mean", rMax: "max", rMin: "min", rArgmax: "argmax",
	rArgmin: "argmin", rLogsumexp: "logsumexp", rVar: "var"}

func (t *Tensor) unary(op int) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result(unaryNames[op], &h, C.pt_unary(C.int(op), t.h, &h), t)
}

// inPlace applies a unary (o nil) or binary op to t's own memory.
func (t *Tensor) inPlace(op int, o *Tensor) error {
	if o == nil {
		if err := t.Err(); err != nil {
			return err
		}
		return cerr(unaryNames[op]+"_", C.pt_unary_(C.int(op), t.h))
	}
	if err := firstErr(t, o); err != nil {
		return err
	}
	return cerr(binaryNames[op]+"_", C.pt_binary_(C.int(op), t.h, o.h))
}

// ReluInPlace, LeakyReluInPlace (slope 0.1) and AddInPlace change t's own memory (relu_,
// leaky_relu_, add_), as torchvision's models do: for inference, where no graph needs t's old values
// and a new tensor would be one more activation-sized buffer to allocate and write.
func (t *Tensor) ReluInPlace() error { return t.inPlace(opRelu, nil) }

// LeakyReluInPlace is LeakyRelu on t's own memory (see ReluInPlace).
func (t *Tensor) LeakyReluInPlace() error { return t.inPlace(opLeakyRelu, nil) }

// AddInPlace adds o to t in t's own memory (see ReluInPlace).
func (t *Tensor) AddInPlace(o *Tensor) error { return t.inPlace(opAdd, o) }

func (t *Tensor) binary(op int, o *Tensor) *Tensor {
	if err := firstErr(t, o); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	e := C.pt_binary(C.int(op), t.h, o.h, &h)
	return result(binaryNames[op], &h, e, t, o)
}

func (t *Tensor) scalar(op int, s float64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result(scalarNames[op], &h, C.pt_scalar(C.int(op), t.h, C.double(s), &h), t)
}

func (t *Tensor) reduce(op int, keepdim bool, dims []int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	kd := 0
	if keepdim {
		kd = 1
	}
	e := C.pt_reduce(C.int(op), t.h, int64s(dims), C.int(len(dims)), C.int(kd), &h)
	return result(reduceNames[op], &h, e, t)
}

// Relu returns max(t, 0).
func (t *Tensor) Relu() *Tensor { return t.unary(opRelu) }

// LeakyRelu returns t where t > 0, else 0.1·t.
func (t *Tensor) LeakyRelu() *Tensor { return t.unary(opLeakyRelu) }

// Sqrt returns the elementwise square root.
func (t *Tensor) Sqrt() *Tensor { return t.unary(opSqrt) }

// Exp returns e^t.
func (t *Tensor) Exp() *Tensor { return t.unary(opExp) }

// Log returns the natural logarithm.
func (t *Tensor) Log() *Tensor { return t.unary(opLog) }

// Neg returns -t.
func (t *Tensor) Neg() *Tensor { return t.unary(opNeg) }

// Sigmoid returns 1/(1+e^-t).
func (t *Tensor) Sigmoid() *Tensor { return t.unary(opSigmoid) }

// Tanh returns tanh(t).
func (t *Tensor) Tanh() *Tensor { return t.unary(opTanh) }

// Abs returns |t|.
func (t *Tensor) Abs() *Tensor { return t.unary(opAbs) }

// Square returns t².
func (t *Tensor) Square() *Tensor { return t.unary(opSquare) }

// Detach returns a tensor sharing t's data, cut off from the autograd graph.
func (t *Tensor) Detach() *Tensor { return t.unary(opDetach) }

// Clone returns a copy of t (recorded by autograd).
func (t *Tensor) Clone() *Tensor { return t.unary(opClone) }

// ZerosLike returns zeros with t's shape, dtype and device.
func (t *Tensor) ZerosLike() *Tensor { return t.unary(opZerosLike) }

// OnesLike returns ones with t's shape, dtype and device.
func (t *Tensor) OnesLike() *Tensor { return t.unary(opOnesLike) }

// AllFinite reports whether no element is NaN or ±Inf.
func (t *Tensor) AllFinite() (bool, error) {
	r := t.unary(opAllFinite)
	defer r.Free()
	v, err := r.Item()
	return v != 0, err
}

// Add returns t + o (broadcasting).
func (t *Tensor) Add(o *Tensor) *Tensor { return t.binary(opAdd, o) }

// Sub returns t - o.
func (t *Tensor) Sub(o *Tensor) *Tensor { return t.binary(opSub, o) }

// Mul returns t · o elementwise.
func (t *Tensor) Mul(o *Tensor) *Tensor { return t.binary(opMul, o) }

// Div returns t / o elementwise.
func (t *Tensor) Div(o *Tensor) *Tensor { return t.binary(opDiv, o) }

// Matmul is torch.matmul (batched, broadcasting).
func (t *Tensor) Matmul(o *Tensor) *Tensor { return t.binary(opMatmul, o) }

// Mm is the 2-D matrix product.
func (t *Tensor) Mm(o *Tensor) *Tensor { return t.binary(opMm, o) }

// Bmm is the batched 3-D matrix product.
func (t *Tensor) Bmm(o *Tensor) *Tensor { return t.binary(opBmm, o) }

// Pow returns t^o elementwise.
func (t *Tensor) Pow(o *Tensor) *Tensor { return t.binary(opPow, o) }

// Eq returns a bool tensor of t == o.
func (t *Tensor) Eq(o *Tensor) *Tensor { return t.binary(opEq, o) }

// Gt returns a bool tensor of t > o.
func (t *Tensor) Gt(o *Tensor) *Tensor { return t.binary(opGt, o) }

// Lt returns a bool tensor of t < o.
func (t *Tensor) Lt(o *Tensor) *Tensor { return t.binary(opLt, o) }

// Maximum returns the elementwise maximum.
func (t *Tensor) Maximum(o *Tensor) *Tensor { return t.binary(opMaximum, o) }

// Minimum returns the elementwise minimum.
func (t *Tensor) Minimum(o *Tensor) *Tensor { return t.binary(opMinimum, o) }

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalar(sAdd, s) }

// MulScalar returns t · s.
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalar(sMul, s) }

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalar(sDiv, s) }

// PowScalar returns t^s.
func (t *Tensor) PowScalar(s float64) *Tensor { return t.scalar(sPow, s) }

// EqScalar returns a bool tensor of t == s.
func (t *Tensor) EqScalar(s float64) *Tensor { return t.scalar(sEq, s) }

// GtScalar returns a bool tensor of t > s.
func (t *Tensor) GtScalar(s float64) *Tensor { return t.scalar(sGt, s) }

// LtScalar returns a bool tensor of t < s.
func (t *Tensor) LtScalar(s float64) *Tensor { return t.scalar(sLt, s) }

// Sum sums over dims (all elements when none are given).
func (t *Tensor) Sum(keepdim bool, dims ...int64) *Tensor { return t.reduce(rSum, keepdim, dims) }

// Mean averages over dims (all elements when none are given).
func (t *Tensor) Mean(keepdim bool, dims ...int64) *Tensor { return t.reduce(rMean, keepdim, dims) }

// Var is the unbiased variance over dims (all elements when none are given).
func (t *Tensor) Var(keepdim bool, dims ...int64) *Tensor { return t.reduce(rVar, keepdim, dims) }

// Max is the maximum over one dim, or over all elements when dim is omitted.
func (t *Tensor) Max(keepdim bool, dim ...int64) *Tensor { return t.reduce(rMax, keepdim, dim) }

// Min is the minimum over one dim, or over all elements when dim is omitted.
func (t *Tensor) Min(keepdim bool, dim ...int64) *Tensor { return t.reduce(rMin, keepdim, dim) }

// Argmax returns int64 indices of the maximum along dim.
func (t *Tensor) Argmax(dim int64, keepdim bool) *Tensor {
	return t.reduce(rArgmax, keepdim, []int64{dim})
}

// Argmin returns int64 indices of the minimum along dim.
func (t *Tensor) Argmin(dim int64, keepdim bool) *Tensor {
	return t.reduce(rArgmin, keepdim, []int64{dim})
}

// LogSumExp returns log Σ exp over dims.
func (t *Tensor) LogSumExp(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(rLogsumexp, keepdim, dims)
}

// Softmax along dim.
func (t *Tensor) Softmax(dim int64) *Tensor { return t.softmax(0, dim) }

// LogSoftmax along dim.
func (t *Tensor) LogSoftmax(dim int64) *Tensor { return t.softmax(1, dim) }

func (t *Tensor) softmax(log int, dim int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	op := "softmax"
	if log == 1 {
		op = "log_softmax"
	}
	return result(op, &h, C.pt_softmax(C.int(log), t.h, C.int64_t(dim), &h), t)
}

// Clamp limits values to [lo, hi]; pass math.Inf to leave a side open.
func (t *Tensor) Clamp(lo, hi float64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	hasLo, hasHi := C.int(1), C.int(1)
	if lo < -1e308 {
		hasLo = 0
	}
	if hi > 1e308 {
		hasHi = 0
	}
	var h C.pt_tensor
	return result("clamp", &h, C.pt_clamp(t.h, C.double(lo), C.double(hi), hasLo, hasHi, &h), t)
}

// ---- shape ----

// To moves or converts t; dtype -1 keeps the element type.
func (t *Tensor) To(dev Device, dtype DType) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("to", &h, C.pt_to(t.h, C.int(dev.Type), C.int(dev.Index), C.int(dtype), &h), t)
}

// ToDevice moves t to dev keeping its dtype.
func (t *Tensor) ToDevice(dev Device) *Tensor { return t.To(dev, -1) }

// ToDType converts t's elements keeping its device.
func (t *Tensor) ToDType(d DType) *Tensor { return t.To(t.Device(), d) }

// Reshape returns t with a new shape (-1 infers one dimension); a view when possible.
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("reshape", &h, C.pt_reshape(t.h, int64s(shape), C.int(len(shape)), &h), t)
}

// View is Reshape (libtorch returns a view when the layout allows).
func (t *Tensor) View(shape ...int64) *Tensor { return t.Reshape(shape...) }

// Permute reorders dimensions.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("permute", &h, C.pt_permute(t.h, int64s(dims), C.int(len(dims)), &h), t)
}

// Transpose swaps two dimensions.
func (t *Tensor) Transpose(a, b int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("transpose", &h, C.pt_transpose(t.h, C.int64_t(a), C.int64_t(b), &h), t)
}

// T transposes a 2-D tensor.
func (t *Tensor) T() *Tensor { return t.Transpose(0, 1) }

// Narrow returns length elements of dim starting at start (a view).
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("narrow", &h, C.pt_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), &h), t)
}

// Slice returns elements start, start+step, ... < end of dim (a view).
func (t *Tensor) Slice(dim, start, end, step int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	e := C.pt_slice(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), &h)
	return result("slice", &h, e, t)
}

// Select returns index i of dim, removing that dimension.
func (t *Tensor) Select(dim, i int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("select", &h, C.pt_select(t.h, C.int64_t(dim), C.int64_t(i), &h), t)
}

// IndexSelect gathers the entries of dim listed in the int64 tensor index.
func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	if err := firstErr(t, index); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("index_select", &h, C.pt_index_select(t.h, C.int64_t(dim), index.h, &h), t, index)
}

// Unsqueeze inserts a dimension of size 1.
func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("unsqueeze", &h, C.pt_unsqueeze(t.h, C.int64_t(dim), &h), t)
}

// Squeeze removes dim if its size is 1.
func (t *Tensor) Squeeze(dim int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("squeeze", &h, C.pt_squeeze(t.h, C.int64_t(dim), &h), t)
}

// Flatten merges dims start..end (inclusive; -1 for the last).
func (t *Tensor) Flatten(start, end int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("flatten", &h, C.pt_flatten(t.h, C.int64_t(start), C.int64_t(end), &h), t)
}

// Expand broadcasts t to shape without copying (-1 keeps a dimension).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("expand", &h, C.pt_expand(t.h, int64s(shape), C.int(len(shape)), &h), t)
}

// Contiguous returns t in row-major layout (a copy only when needed).
func (t *Tensor) Contiguous() *Tensor { return t.contiguous(0) }

// ChannelsLast returns a 4-D tensor in NHWC memory layout (same logical shape), which oneDNN
// convolutions run faster on.
func (t *Tensor) ChannelsLast() *Tensor { return t.contiguous(1) }

func (t *Tensor) contiguous(cl int) *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("contiguous", &h, C.pt_contiguous(t.h, C.int(cl), &h), t)
}

func joinTensors(op string, ts []*Tensor, dim int64, stack int) *Tensor {
	if len(ts) == 0 {
		return errTensor(&Error{Op: op, Msg: "no tensors"})
	}
	if err := firstErr(ts...); err != nil {
		return errTensor(err)
	}
	hs := make([]C.pt_tensor, len(ts)) // C pointers only: fine to pass to C
	for i, t := range ts {
		hs[i] = t.h
	}
	var h C.pt_tensor
	e := C.pt_cat(&hs[0], C.int(len(ts)), C.int64_t(dim), C.int(stack), &h)
	return result(op, &h, e, ts...)
}

// Cat concatenates tensors along an existing dimension.
func Cat(ts []*Tensor, dim int64) *Tensor { return joinTensors("cat", ts, dim, 0) }

// Stack joins tensors along a new dimension.
func Stack(ts []*Tensor, dim int64) *Tensor { return joinTensors("stack", ts, dim, 1) }

// Where picks a where cond is true, else b.
func Where(cond, a, b *Tensor) *Tensor {
	if err := firstErr(cond, a, b); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	return result("where", &h, C.pt_where(cond.h, a.h, b.h, &h), cond, a, b)
}

// Addmm returns beta·self + alpha·(m1 @ m2).
func Addmm(self, m1, m2 *Tensor, beta, alpha float64) *Tensor {
	if err := firstErr(self, m1, m2); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	e := C.pt_addmm(self.h, m1.h, m2.h, C.double(beta), C.double(alpha), &h)
	return result("addmm", &h, e, self, m1, m2)
}

// AddmmOut writes beta·self + alpha·(m1 @ m2) into out without allocating (no autograd), for hot loops
// such as the nearest-prototype search.
func AddmmOut(out, self, m1, m2 *Tensor, beta, alpha float64) error {
	if err := firstErr(out, self, m1, m2); err != nil {
		return err
	}
	return cerr("addmm_out", C.pt_addmm_out(out.h, self.h, m1.h, m2.h, C.double(beta), C.double(alpha)))
}

// GemmNT writes alpha·(a @ bᵀ) into out (a [m, k], b [n, k], out [m, n]) without reading out and
// without allocating: the product of the nearest-prototype search. Float32 CPU matrices with
// contiguous rows go straight to oneDNN's sgemm where the loaded libtorch carries it (GemmEngine),
// which at K of a few hundred runs ~10 % faster than at::addmm's system BLAS; anything else goes
// through at::addmm_out.
func GemmNT(out, a, b *Tensor, alpha float64) error {
	if err := firstErr(out, a, b); err != nil {
		return err
	}
	return cerr("gemm_nt", C.pt_gemm_nt(out.h, a.h, b.h, C.double(alpha)))
}

// GemmEngine names the library GemmNT's float32 CPU products run on: "oneDNN" or "libtorch addmm".
func GemmEngine() string {
	if C.pt_gemm_engine() != 0 {
		return "oneDNN"
	}
	return "libtorch addmm"
}

// TopK returns the k largest (or smallest) values along dim, sorted, and their int64 indices.
func (t *Tensor) TopK(k, dim int64, largest bool) (values, indices *Tensor) {
	if err := t.Err(); err != nil {
		return errTensor(err), errTensor(err)
	}
	var v, i C.pt_tensor
	l := 0
	if largest {
		l = 1
	}
	if err := cerr("topk", C.pt_topk(t.h, C.int64_t(k), C.int64_t(dim), C.int(l), &v, &i)); err != nil {
		return errTensor(err), errTensor(err)
	}
	s := scopeOf(t)
	return newTensor(v, s), newTensor(i, s)
}

// ---- autograd ----

// SetRequiresGrad turns gradient recording for t on or off; t must be a leaf. It returns t.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	if err := t.Err(); err != nil {
		return t
	}
	v := 0
	if on {
		v = 1
	}
	if err := cerr("requires_grad", C.pt_set_requires_grad(t.h, C.int(v))); err != nil {
		return errTensor(err)
	}
	return t
}

// Grad returns the accumulated gradient of t (owned by the caller), or nil when there is none.
func (t *Tensor) Grad() *Tensor {
	if err := t.Err(); err != nil {
		return errTensor(err)
	}
	var h C.pt_tensor
	if err := cerr("grad", C.pt_grad(t.h, &h)); err != nil {
		return errTensor(err)
	}
	if h == nil {
		return nil
	}
	return newTensor(h, nil)
}

// ZeroGrad drops t's accumulated gradient.
func (t *Tensor) ZeroGrad() error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerr("zero_grad", C.pt_zero_grad(t.h))
}

// Backward computes gradients of the scalar t with respect to every leaf that requires them.
func (t *Tensor) Backward() error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerr("backward", C.pt_backward(t.h, nil, 0))
}

// BackwardWith backpropagates a given upstream gradient (for non-scalar t).
func (t *Tensor) BackwardWith(grad *Tensor, retainGraph bool) error {
	if err := firstErr(t, grad); err != nil {
		return err
	}
	r := 0
	if retainGraph {
		r = 1
	}
	return cerr("backward", C.pt_backward(t.h, grad.h, C.int(r)))
}

// CopyFrom copies src's values into t in place (without recording gradients), broadcasting and
// converting dtype/device as needed. Used to load weights into parameters.
func (t *Tensor) CopyFrom(src *Tensor) error {
	if err := firstErr(t, src); err != nil {
		return err
	}
	return cerr("copy_", C.pt_copy_(t.h, src.h))
}
