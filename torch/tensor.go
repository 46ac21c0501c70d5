package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Tensor is a handle to a libtorch tensor, or an error that an operation produced.
type Tensor struct {
	h       C.pt_tensor
	err     error
	scope   *Scope
	cleanup runtime.Cleanup
	mu      sync.Mutex
}

// Scope owns tensors and frees them all at Close. It is safe for concurrent use.
type Scope struct {
	mu     sync.Mutex
	ts     []*Tensor
	closed bool
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

func (s *Scope) add(t *Tensor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// A closed scope cannot own anything: the caller owns the tensor (finalizer as safety net).
		t.scope = nil
		return
	}
	s.ts = append(s.ts, t)
}

// Len returns the number of tensors the scope owns.
func (s *Scope) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ts)
}

// Close frees every tensor the scope still owns. A closed scope may be reused: tensors created
// afterwards are owned by their caller.
func (s *Scope) Close() {
	s.mu.Lock()
	ts := s.ts
	s.ts = nil
	s.closed = true
	s.mu.Unlock()
	for _, t := range ts {
		t.free()
	}
}

// Reset frees every tensor the scope owns and keeps it open for the next step.
func (s *Scope) Reset() {
	s.mu.Lock()
	ts := s.ts
	s.ts = s.ts[:0:0]
	s.mu.Unlock()
	for _, t := range ts {
		t.free()
	}
}

// Keep takes t out of its scope: the caller owns it from now on and frees it with Free. It returns t.
func Keep(t *Tensor) *Tensor {
	if t == nil || t.scope == nil {
		return t
	}
	s := t.scope
	s.mu.Lock()
	for i, x := range s.ts {
		if x == t {
			s.ts[i] = s.ts[len(s.ts)-1]
			s.ts = s.ts[:len(s.ts)-1]
			break
		}
	}
	s.mu.Unlock()
	t.scope = nil
	return t
}

func newTensor(h C.pt_tensor, s *Scope) *Tensor {
	t := &Tensor{h: h, scope: s}
	t.cleanup = runtime.AddCleanup(t, func(h C.pt_tensor) { C.pt_free(h) }, h)
	if s != nil {
		s.add(t)
	}
	return t
}

// errTensor returns a tensor that carries err.
func errTensor(err error) *Tensor { return &Tensor{err: err} }

// Errorf returns a tensor carrying a formatted error, for argument checks in layers built on torch.
func Errorf(op, format string, args ...any) *Tensor {
	return errTensor(&Error{Op: op, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the error the tensor carries, if any.
func (t *Tensor) Err() error {
	if t == nil {
		return &Error{Op: "tensor", Msg: "nil tensor"}
	}
	if t.err != nil {
		return t.err
	}
	if t.h == nil {
		return ErrFreed
	}
	return nil
}

// Free releases the tensor now (and takes it out of its scope). It is idempotent.
func (t *Tensor) Free() {
	if t == nil {
		return
	}
	Keep(t)
	t.free()
}

func (t *Tensor) free() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		t.cleanup.Stop()
		C.pt_free(t.h)
		t.h = nil
	}
}

// Scope returns the scope that owns t, or nil.
func (t *Tensor) Scope() *Scope { return t.scope }

// scopeOf returns the first scope among ts.
func scopeOf(ts ...*Tensor) *Scope {
	for _, t := range ts {
		if t != nil && t.scope != nil {
			return t.scope
		}
	}
	return nil
}

// firstErr returns the first error among inputs (nil inputs are errors unless allowed by the caller).
func firstErr(ts ...*Tensor) error {
	for _, t := range ts {
		if err := t.Err(); err != nil {
			return err
		}
	}
	return nil
}

// result wraps the outcome of a C call whose inputs were ins. h points to the handle the call set and
// is read here, after the call returned: passing h by value in the same call expression as the C call
// that sets it would leave the order of evaluation to the compiler.
func result(op string, h *C.pt_tensor, e *C.char, ins ...*Tensor) *Tensor {
	if err := cerr(op, e); err != nil {
		return errTensor(err)
	}
	return newTensor(*h, scopeOf(ins...))
}

// handle returns t's handle or nil for a nil tensor (optional arguments).
func handle(t *Tensor) C.pt_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

func int64s(xs []int64) *C.int64_t {
	if len(xs) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&xs[0]))
}

func numel(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		n *= d
	}
	return n, nil
}

func fromData(op string, s *Scope, dev Device, ptr unsafe.Pointer, n int, dtype DType, shape []int64) *Tensor {
	want, err := numel(shape)
	if err != nil {
		return errTensor(&Error{Op: op, Msg: err.Error()})
	}
	if int64(n) != want {
		return errTensor(&Error{Op: op, Msg: fmt.Sprintf("%d values do not fill shape %v (%d)", n, shape, want)})
	}
	var h C.pt_tensor
	if ptr == nil { // no elements: libtorch copies nothing, but wants a valid pointer
		var zero [8]byte
		ptr = unsafe.Pointer(&zero[0])
	}
	// Passing Go memory for the duration of the call is allowed: the shim copies it and keeps nothing.
	e := C.pt_from_data(ptr, int64s(shape), C.int(len(shape)), C.int(dtype), C.int(dev.Type), C.int(dev.Index), &h)
	if err := cerr(op, e); err != nil {
		return errTensor(err)
	}
	return newTensor(h, s)
}

func ptrOf[T any](xs []T) unsafe.Pointer {
	if len(xs) == 0 {
		return nil
	}
	return unsafe.Pointer(&xs[0])
}

// FromFloat32 copies data into a new CPU tensor of the given shape, owned by s (nil: by the caller).
func FromFloat32(s *Scope, data []float32, shape ...int64) *Tensor {
	return fromData("from_float32", s, CPU, ptrOf(data), len(data), Float32, shape)
}

// FromFloat32On copies data into a new tensor on dev, owned by s (nil: by the caller). For a GPU it
// is one copy from Go memory to the device, not a CPU tensor first and then the device.
func FromFloat32On(s *Scope, dev Device, data []float32, shape ...int64) *Tensor {
	return fromData("from_float32", s, dev, ptrOf(data), len(data), Float32, shape)
}

// FromFloat64 copies data into a new CPU float64 tensor.
func FromFloat64(s *Scope, data []float64, shape ...int64) *Tensor {
	return fromData("from_float64", s, CPU, ptrOf(data), len(data), Float64, shape)
}

// FromInt64 copies data into a new CPU int64 tensor.
func FromInt64(s *Scope, data []int64, shape ...int64) *Tensor {
	return fromData("from_int64", s, CPU, ptrOf(data), len(data), Int64, shape)
}

// FromUint8 copies data into a new CPU uint8 tensor.
func FromUint8(s *Scope, data []uint8, shape ...int64) *Tensor {
	return fromData("from_uint8", s, CPU, ptrOf(data), len(data), Uint8, shape)
}

// Full returns a tensor filled with v.
func Full(s *Scope, v float64, dtype DType, dev Device, shape ...int64) *Tensor {
	var h C.pt_tensor
	e := C.pt_full(int64s(shape), C.int(len(shape)), C.double(v), C.int(dtype), C.int(dev.Type), C.int(dev.Index), &h)
	if err := cerr("full", e); err != nil {
		return errTensor(err)
	}
	return newTensor(h, s)
}

// Zeros returns a float tensor of zeros.
func Zeros(s *Scope, dtype DType, dev Device, shape ...int64) *Tensor {
	return Full(s, 0, dtype, dev, shape...)
}

// Ones returns a float tensor of ones.
func Ones(s *Scope, dtype DType, dev Device, shape ...int64) *Tensor {
	return Full(s, 1, dtype, dev, shape...)
}

func random(kind int, s *Scope, dtype DType, dev Device, shape []int64) *Tensor {
	var h C.pt_tensor
	e := C.pt_rand(C.int(kind), int64s(shape), C.int(len(shape)), C.int(dtype), C.int(dev.Type), C.int(dev.Index), &h)
	if err := cerr("rand", e); err != nil {
		return errTensor(err)
	}
	return newTensor(h, s)
}

// Randn returns standard normal samples from libtorch's generator (seed with ManualSeed).
func Randn(s *Scope, dtype DType, dev Device, shape ...int64) *Tensor {
	return random(C.PT_RAND_NORMAL, s, dtype, dev, shape)
}

// Rand returns uniform [0,1) samples from libtorch's generator.
func Rand(s *Scope, dtype DType, dev Device, shape ...int64) *Tensor {
	return random(C.PT_RAND_UNIFORM, s, dtype, dev, shape)
}

// Arange returns 0..n-1.
func Arange(s *Scope, n int64, dtype DType) *Tensor {
	var h C.pt_tensor
	if err := cerr("arange", C.pt_arange(C.int64_t(n), C.int(dtype), &h)); err != nil {
		return errTensor(err)
	}
	return newTensor(h, s)
}

// Defined reports whether t holds a tensor (no error, not freed).
func (t *Tensor) Defined() bool { return t.Err() == nil && C.pt_defined(t.h) != 0 }

// Shape returns the sizes of each dimension (nil when t carries an error).
func (t *Tensor) Shape() []int64 {
	if t.Err() != nil {
		return nil
	}
	n := int(C.pt_dim(t.h))
	out := make([]int64, n)
	if n > 0 {
		C.pt_sizes(t.h, (*C.int64_t)(unsafe.Pointer(&out[0])))
	}
	return out
}

// Dim returns the number of dimensions.
func (t *Tensor) Dim() int {
	if t.Err() != nil {
		return 0
	}
	return int(C.pt_dim(t.h))
}

// Size returns the size of dimension d (negative counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		return 0
	}
	return s[d]
}

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 {
	if t.Err() != nil {
		return 0
	}
	return int64(C.pt_numel(t.h))
}

// DType returns the element type.
func (t *Tensor) DType() DType {
	if t.Err() != nil {
		return -1
	}
	return DType(C.pt_dtype(t.h))
}

// Device returns where t lives.
func (t *Tensor) Device() Device {
	if t.Err() != nil {
		return CPU
	}
	var typ, idx C.int
	C.pt_device(t.h, &typ, &idx)
	return Device{Type: DeviceType(typ), Index: int(idx)}
}

// RequiresGrad reports whether autograd records operations on t.
func (t *Tensor) RequiresGrad() bool { return t.Err() == nil && C.pt_requires_grad(t.h) != 0 }

func (t *Tensor) String() string {
	if err := t.Err(); err != nil {
		return "Tensor(error: " + err.Error() + ")"
	}
	return fmt.Sprintf("Tensor(%v %v %v)", t.Shape(), t.DType(), t.Device())
}

func copyOut[T any](t *Tensor, want DType) ([]T, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	if d := t.DType(); d != want {
		return nil, &Error{Op: "copy_to", Msg: fmt.Sprintf("tensor is %v, not %v", d, want)}
	}
	out := make([]T, t.Numel())
	if len(out) == 0 {
		return out, nil
	}
	e := C.pt_copy_to(t.h, unsafe.Pointer(&out[0]), C.int64_t(len(out)*want.Size()))
	if err := cerr("copy_to", e); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32s copies a float32 tensor's values (from any device, in row-major order) into a Go slice.
func (t *Tensor) Float32s() ([]float32, error) { return copyOut[float32](t, Float32) }

// Float64s copies a float64 tensor's values into a Go slice.
func (t *Tensor) Float64s() ([]float64, error) { return copyOut[float64](t, Float64) }

// Int64s copies an int64 tensor's values into a Go slice.
func (t *Tensor) Int64s() ([]int64, error) { return copyOut[int64](t, Int64) }

// Uint8s copies a uint8 tensor's values into a Go slice.
func (t *Tensor) Uint8s() ([]uint8, error) { return copyOut[uint8](t, Uint8) }

// Item returns the value of a one-element tensor as float64.
func (t *Tensor) Item() (float64, error) {
	if err := t.Err(); err != nil {
		return 0, err
	}
	var v C.double
	if err := cerr("item", C.pt_item(t.h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
}

// Float32View returns the values of a contiguous CPU float32 tensor without copying. The slice
// aliases libtorch memory: it is valid only while t is alive and must not be used after Free.
func (t *Tensor) Float32View() ([]float32, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	if t.DType() != Float32 || t.Device() != CPU || C.pt_is_contiguous(t.h) == 0 {
		return nil, &Error{Op: "float32_view", Msg: fmt.Sprintf("want a contiguous CPU float32 tensor, have %v", t)}
	}
	n := t.Numel()
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice((*float32)(C.pt_data_ptr(t.h)), n), nil
}
