//go:build !shimlib

package torch

// The default build: cgo compiles shim.cpp, threads.cpp, pickle.cpp and dist.cpp into the package
// and links libtorch directly.

/*
#cgo LDFLAGS: -ltorch -ltorch_cpu -lc10 -lstdc++
*/
import "C"

// sharedShim reports whether the C++ side is a separately built library (false: compiled in).
const sharedShim = false
