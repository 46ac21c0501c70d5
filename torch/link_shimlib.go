//go:build shimlib

package torch

// Built with -tags shimlib, the package compiles no C++ (each .cpp file says //go:build !shimlib)
// and links libprotoherb_torch.so, which scripts/build-shim.sh compiles from those files against a
// libtorch of its own (e.g. a PyTorch pip wheel on a GPU machine that has no Go toolchain). The C
// ABI (shim.h, pickle.h, dist.h) is the same in both builds, so one binary runs against any build
// of the library. The linker looks for it in build/shim (the script's default output; add
// CGO_LDFLAGS=-L<dir> for another); at run time the loader finds it through LD_LIBRARY_PATH, or
// beside the binary or in lib/ beside it (the rpath $ORIGIN, $ORIGIN/lib).

/*
#cgo LDFLAGS: -L${SRCDIR}/../build/shim -lprotoherb_torch -lstdc++ -Wl,-rpath,$ORIGIN -Wl,-rpath,$ORIGIN/lib
*/
import "C"

// sharedShim reports whether the C++ side is a separately built library (true: libprotoherb_torch.so).
const sharedShim = true
