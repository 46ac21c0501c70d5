package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// Optimizer updates parameters from their gradients (libtorch's torch::optim implementations).
type Optimizer struct {
	o      C.pt_optim
	kind   string
	params []*Tensor
}

// SGDOptions configure SGD with momentum, Nesterov and weight decay (PyTorch semantics).
type SGDOptions struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

// AdamOptions configure Adam (L2 weight decay) or AdamW (decoupled weight decay). Zero betas and eps
// mean PyTorch's defaults (0.9, 0.999, 1e-8).
type AdamOptions struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

func newOptim(kind int, name string, params []*Tensor, lr, mom, damp, wd float64, nesterov bool, b1, b2, eps float64) (*Optimizer, error) {
	if len(params) == 0 {
		return nil, &Error{Op: name, Msg: "no parameters"}
	}
	if lr < 0 || math.IsNaN(lr) {
		return nil, &Error{Op: name, Msg: fmt.Sprintf("invalid learning rate %v", lr)}
	}
	hs := make([]C.pt_tensor, len(params))
	for i, p := range params {
		if err := p.Err(); err != nil {
			return nil, fmt.Errorf("%s: parameter %d: %w", name, i, err)
		}
		hs[i] = p.h
	}
	nest := 0
	if nesterov {
		nest = 1
	}
	var o C.pt_optim
	e := C.pt_optim_new(C.int(kind), &hs[0], C.int(len(hs)), C.double(lr), C.double(mom), C.double(damp),
		C.double(wd), C.int(nest), C.double(b1), C.double(b2), C.double(eps), &o)
	if err := cerr(name, e); err != nil {
		return nil, err
	}
	opt := &Optimizer{o: o, kind: name, params: params}
	runtime.SetFinalizer(opt, (*Optimizer).Close)
	return opt, nil
}

// NewSGD returns SGD over params.
func NewSGD(params []*Tensor, o SGDOptions) (*Optimizer, error) {
	return newOptim(C.PT_OPTIM_SGD, "sgd", params, o.LR, o.Momentum, o.Dampening, o.WeightDecay, o.Nesterov, 0, 0, 0)
}

func adamDefaults(o AdamOptions) AdamOptions {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	return o
}

// NewAdam returns Adam over params (weight decay added to the gradient, as torch.optim.Adam).
func NewAdam(params []*Tensor, o AdamOptions) (*Optimizer, error) {
	o = adamDefaults(o)
	return newOptim(C.PT_OPTIM_ADAM, "adam", params, o.LR, 0, 0, o.WeightDecay, false, o.Beta1, o.Beta2, o.Eps)
}

// NewAdamW returns AdamW over params (decoupled weight decay, as torch.optim.AdamW).
func NewAdamW(params []*Tensor, o AdamOptions) (*Optimizer, error) {
	o = adamDefaults(o)
	return newOptim(C.PT_OPTIM_ADAMW, "adamw", params, o.LR, 0, 0, o.WeightDecay, false, o.Beta1, o.Beta2, o.Eps)
}

// Kind returns "sgd", "adam" or "adamw".
func (o *Optimizer) Kind() string { return o.kind }

// Step applies one update from the current gradients.
func (o *Optimizer) Step() error {
	if o.o == nil {
		return &Error{Op: "optim_step", Msg: "optimizer closed"}
	}
	return cerr(o.kind+" step", C.pt_optim_step(o.o))
}

// ZeroGrad clears the gradients of every parameter.
func (o *Optimizer) ZeroGrad() error {
	if o.o == nil {
		return &Error{Op: "optim_zero_grad", Msg: "optimizer closed"}
	}
	return cerr(o.kind+" zero_grad", C.pt_optim_zero_grad(o.o))
}

// SetLR sets the learning rate of every parameter group (for schedules).
func (o *Optimizer) SetLR(lr float64) error {
	if o.o == nil {
		return &Error{Op: "optim_set_lr", Msg: "optimizer closed"}
	}
	return cerr(o.kind+" set_lr", C.pt_optim_set_lr(o.o, C.double(lr)))
}

// LR returns the current learning rate.
func (o *Optimizer) LR() float64 {
	if o.o == nil {
		return 0
	}
	return float64(C.pt_optim_get_lr(o.o))
}

// State serialises the optimizer state (moments, step counts) in libtorch's archive format.
func (o *Optimizer) State() ([]byte, error) {
	if o.o == nil {
		return nil, &Error{Op: "optim_save", Msg: "optimizer closed"}
	}
	var buf *C.char
	var n C.int64_t
	if err := cerr(o.kind+" save", C.pt_optim_save(o.o, &buf, &n)); err != nil {
		return nil, err
	}
	defer C.pt_buf_free(buf)
	return C.GoBytes(unsafe.Pointer(buf), C.int(n)), nil
}

// LoadState restores a state written by State for the same parameters.
func (o *Optimizer) LoadState(b []byte) error {
	if o.o == nil {
		return &Error{Op: "optim_load", Msg: "optimizer closed"}
	}
	if len(b) == 0 {
		return &Error{Op: o.kind + " load", Msg: "empty optimizer state"}
	}
	cb := C.CBytes(b)
	defer C.free(cb)
	return cerr(o.kind+" load", C.pt_optim_load(o.o, (*C.char)(cb), C.int64_t(len(b))))
}

// Close frees the optimizer. It is idempotent.
func (o *Optimizer) Close() {
	if o.o != nil {
		C.pt_optim_free(o.o)
		o.o = nil
		runtime.SetFinalizer(o, nil)
	}
}
