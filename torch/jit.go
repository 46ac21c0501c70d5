package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// ScriptModule is a TorchScript module (saved with torch.jit.save in Python), usable for inference and
// training: its parameters are ordinary tensors an Optimizer can update.
type ScriptModule struct {
	m    C.pt_module
	path string
}

// LoadScript loads a TorchScript file onto dev.
func LoadScript(path string, dev Device) (*ScriptModule, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var m C.pt_module
	if err := cerr("jit_load", C.pt_jit_load(cp, C.int(dev.Type), C.int(dev.Index), &m)); err != nil {
		return nil, fmt.Errorf("load TorchScript %s: %w", path, err)
	}
	sm := &ScriptModule{m: m, path: path}
	runtime.SetFinalizer(sm, (*ScriptModule).Close)
	return sm, nil
}

// Forward runs the module's forward method on x; the result belongs to x's scope.
func (s *ScriptModule) Forward(x *Tensor) *Tensor {
	if err := x.Err(); err != nil {
		return errTensor(err)
	}
	if s.m == nil {
		return errTensor(&Error{Op: "jit_forward", Msg: "module closed"})
	}
	var h C.pt_tensor
	return result("jit_forward "+s.path, &h, C.pt_jit_forward(s.m, x.h, &h), x)
}

// Train switches training mode (batch norm statistics, dropout) on or off.
func (s *ScriptModule) Train(on bool) error {
	v := 0
	if on {
		v = 1
	}
	return cerr("jit_train", C.pt_jit_train(s.m, C.int(v)))
}

// To moves the module's parameters and buffers to dev.
func (s *ScriptModule) To(dev Device) error {
	return cerr("jit_to", C.pt_jit_to(s.m, C.int(dev.Type), C.int(dev.Index)))
}

// Save writes the module (with its current weights) as TorchScript.
func (s *ScriptModule) Save(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return cerr("jit_save", C.pt_jit_save(s.m, cp))
}

// NamedParameters returns the module's parameters by dotted name. The tensors alias the module's
// own: updating them (by an optimizer or CopyFrom) updates the module. The caller owns the handles.
func (s *ScriptModule) NamedParameters() ([]string, []*Tensor, error) { return s.named(0) }

// NamedBuffers returns the module's buffers (e.g. batch-norm running statistics) by name.
func (s *ScriptModule) NamedBuffers() ([]string, []*Tensor, error) { return s.named(1) }

func (s *ScriptModule) named(buffers int) ([]string, []*Tensor, error) {
	var names *C.char
	var hs *C.pt_tensor
	var n C.int
	if err := cerr("jit_named", C.pt_jit_named(s.m, C.int(buffers), &names, &hs, &n)); err != nil {
		return nil, nil, err
	}
	defer C.pt_buf_free(names)
	defer C.pt_buf_free((*C.char)(unsafe.Pointer(hs)))
	if n == 0 {
		return nil, nil, nil
	}
	ns := strings.Split(C.GoString(names), "\n")
	handles := unsafe.Slice(hs, int(n))
	ts := make([]*Tensor, int(n))
	for i := range ts {
		ts[i] = newTensor(handles[i], nil)
	}
	return ns, ts, nil
}

// Close frees the module. It is idempotent.
func (s *ScriptModule) Close() {
	if s.m != nil {
		C.pt_jit_free(s.m)
		s.m = nil
		runtime.SetFinalizer(s, nil)
	}
}
