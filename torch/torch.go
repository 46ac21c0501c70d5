// Package torch is protoherb's binding to libtorch: tensors, the operations neural networks need
// (with autograd), optimizers, TorchScript modules, devices and threads.
//
// It calls a thin C ABI shim (shim.h, shim.cpp) through cgo; every C++ exception comes back as a Go
// error carrying libtorch's message, so no call crashes the process on bad arguments.
//
// # Errors
//
// Operations return *Tensor and never panic. When an operation fails, or one of its inputs carries an
// error, the result carries the error instead of data, and every later operation passes it on: check
// Err (or the error from Float32s, Item, ...) once at the end of a computation, as with bufio.Scanner.
//
// # Memory
//
// libtorch memory is not seen by Go's garbage collector, so tensors are freed explicitly. A Scope owns
// the tensors created in it: Close frees them all, which keeps a training step's memory flat. The
// result of an operation belongs to the scope of its first input that has one; with none (e.g. an
// operation on parameters only) the caller owns it and calls Free. A finalizer frees tensors that were
// forgotten, but only as a safety net: the collector does not know how much C memory a tensor holds.
//
// # Threads
//
// libtorch's grad mode is per OS thread; NoGrad locks the goroutine to its thread for its duration.
// The intra-op thread count is per OS thread too under OpenMP; SetNumThreads publishes it and every
// call into libtorch first brings its OS thread up to date (threads.cpp), so one call governs all.
//
// # Building against another libtorch
//
// The cgo flags default to Debian's libtorch-dev. Point the build at an unpacked libtorch (a CUDA
// build, say) with CGO_CXXFLAGS/CGO_LDFLAGS, which the Makefile sets from LIBTORCH=<folder>.
//
// With the build tag shimlib, cgo compiles none of the C++ files: the binary links a shared library
// libprotoherb_torch.so that scripts/build-shim.sh compiles from them, on the machine whose libtorch
// it will run against (link_shimlib.go).
package torch

/*
#cgo CXXFLAGS: -std=c++17 -O2 -I/usr/include/torch/csrc/api/include -Wno-deprecated-declarations
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

// Error is a failure reported by libtorch (or by this package's argument checks).
type Error struct {
	Op  string // the operation, e.g. "conv2d"
	Msg string // libtorch's message
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// ErrFreed is returned when a tensor is used after it was freed (directly or by its scope).
var ErrFreed = errors.New("torch: tensor used after Free")

// cerr converts a malloc'd C error string into an error and frees it.
func cerr(op string, s *C.char) error {
	if s == nil {
		return nil
	}
	msg := strings.TrimSpace(C.GoString(s))
	C.free(unsafe.Pointer(s))
	return &Error{Op: op, Msg: msg}
}

// Version returns the linked libtorch version, e.g. "1.13.1".
func Version() string {
	var buf [32]C.char
	C.pt_version(&buf[0], 32)
	return C.GoString(&buf[0])
}

// CUDAAvailable reports whether the linked libtorch has CUDA and sees a device.
func CUDAAvailable() bool { return C.pt_cuda_available() != 0 }

// SetCuDNNAllowTF32 sets whether cuDNN convolutions may run in TF32 on GPUs that have it (Ampere and
// later; libtorch's default is yes, as PyTorch's torch.backends.cudnn.allow_tf32) and returns the
// previous setting. TF32 keeps 10 bits of mantissa: logits move by ~1e-3 and small-batch gradients
// through batch norm by much more; false gives float32 results. Process-wide.
func SetCuDNNAllowTF32(allow bool) bool {
	a := C.int(0)
	if allow {
		a = 1
	}
	return C.pt_set_cudnn_allow_tf32(a) != 0
}

// CUDADeviceCount returns the number of visible CUDA devices (0 without CUDA).
func CUDADeviceCount() int { return int(C.pt_cuda_device_count()) }

// SetNumThreads sets libtorch's intra-op thread count for every OS thread, those that already ran
// libtorch work included (n <= 0 leaves it unchanged).
func SetNumThreads(n int) {
	if n > 0 {
		C.pt_set_num_threads(C.int(n))
	}
}

// NumThreads returns libtorch's intra-op thread count.
func NumThreads() int { return int(C.pt_get_num_threads()) }

// threadNumThreads returns the count the calling OS thread holds now, without bringing it up to date
// first as every other call does (for the test that every call does).
func threadNumThreads() int { return int(C.pt_thread_num_threads()) }

// ManualSeed seeds libtorch's random generators (parameter init, dropout, randn) for deterministic runs.
func ManualSeed(seed uint64) error { return cerr("manual_seed", C.pt_manual_seed(C.uint64_t(seed))) }

// LockComputeThread keeps the calling goroutine on its OS thread for good, so that the libtorch
// calls it makes all start their parallel regions from one thread. Debian's libtorch parallelises
// with OpenMP (libgomp), which keeps a pool of worker threads for each OS thread that starts a
// parallel region. A goroutine that Go moves between OS threads leaves a pool on each, and once the
// process holds more OpenMP threads than it has cores, libgomp cuts its busy-wait to ~100 spins: the
// workers sleep between regions and every region pays for waking them. A Conv-4 at 28 px in
// batches of 4 ran at ~2,600 images/s that way on 2 cores, and at ~4,000 with one pool
// (docs/benchmarks.md). Call it in main's init (the main goroutine then runs on the main thread)
// and at the start of a long-lived goroutine that runs models, such as a server's batcher; a
// goroutine that ends locked takes its thread, and the thread's pool, with it (the main thread
// excepted: Go keeps that one).
func LockComputeThread() { runtime.LockOSThread() }

// OnThrowawayThread runs fn on an OS thread of its own and ends that thread when fn returns, so
// that the OpenMP pool fn's libtorch calls made there ends with it (see LockComputeThread): for
// one-off work, such as loading and calibrating a model that another thread then runs, which would
// otherwise leave an idle pool behind that slows every other.
func OnThrowawayThread(fn func()) {
	done := make(chan struct{})
	var start func()
	start = func() {
		runtime.LockOSThread() // never unlocked: Go ends the thread with the goroutine...
		if syscall.Gettid() == syscall.Getpid() {
			// ...but the main thread it keeps: hold it while a goroutine on another thread runs fn.
			go start()
			<-done
			runtime.UnlockOSThread()
			return
		}
		defer close(done)
		fn()
	}
	go start()
	<-done
}

// NoGrad runs fn with gradient recording off on the calling goroutine's OS thread. Goroutines that
// fn starts do not inherit it; use Detach on their inputs instead.
func NoGrad(fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := C.pt_is_grad_enabled()
	C.pt_set_grad_enabled(0)
	defer C.pt_set_grad_enabled(prev)
	fn()
}

// GradEnabled reports whether libtorch records gradients on the calling OS thread: false inside
// NoGrad (which holds the goroutine to its thread), true elsewhere unless something turned it off.
func GradEnabled() bool { return C.pt_is_grad_enabled() != 0 }

// RNGState returns a copy of libtorch's CPU generator state, for exact resume.
func RNGState() ([]byte, error) {
	var h C.pt_tensor
	if err := cerr("get_rng_state", C.pt_get_rng_state(&h)); err != nil {
		return nil, err
	}
	t := newTensor(h, nil)
	defer t.Free()
	return t.Uint8s()
}

// SetRNGState restores a state returned by RNGState.
func SetRNGState(state []byte) error {
	t := FromUint8(nil, state, int64(len(state)))
	defer t.Free()
	if t.err != nil {
		return t.err
	}
	return cerr("set_rng_state", C.pt_set_rng_state(t.h))
}

// DeviceType is the kind of a device.
type DeviceType int

const (
	CPUDevice  DeviceType = 0
	CUDADevice DeviceType = 1
)

// Device is where a tensor lives.
type Device struct {
	Type  DeviceType
	Index int
}

// CPU is the default device.
var CPU = Device{Type: CPUDevice}

// CUDA returns the i-th CUDA device.
func CUDA(i int) Device { return Device{Type: CUDADevice, Index: i} }

func (d Device) String() string {
	if d.Type == CUDADevice {
		return fmt.Sprintf("cuda:%d", d.Index)
	}
	return "cpu"
}

// ParseDevice parses "cpu", "cuda" or "cuda:N" and checks that the device is usable.
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "" || s == "cpu":
		return CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		idx := 0
		if strings.HasPrefix(s, "cuda:") {
			if _, err := fmt.Sscanf(s, "cuda:%d", &idx); err != nil {
				return CPU, fmt.Errorf("device %q: bad index", s)
			}
		}
		if !CUDAAvailable() {
			return CPU, fmt.Errorf("device %q: the linked libtorch has no CUDA or sees no GPU (build with LIBTORCH=<CUDA libtorch>)", s)
		}
		if idx >= CUDADeviceCount() {
			return CPU, fmt.Errorf("device %q: only %d CUDA devices", s, CUDADeviceCount())
		}
		return CUDA(idx), nil
	}
	return CPU, fmt.Errorf("device %q: want cpu, cuda or cuda:N", s)
}

// DType is a tensor element type; the values are libtorch's ScalarType codes.
type DType int

const (
	Uint8   DType = 0
	Int8    DType = 1
	Int32   DType = 3
	Int64   DType = 4
	Float16 DType = 5
	Float32 DType = 6
	Float64 DType = 7
	Bool    DType = 11
)

// Size returns the element size in bytes.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Float16:
		return 2
	case Int32, Float32:
		return 4
	case Int64, Float64:
		return 8
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Float16:
		return "float16"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Bool:
		return "bool"
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}
