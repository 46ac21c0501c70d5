//go:build nccl && !shimlib

package torch

// Built with -tags nccl (the Makefile adds it when LIBTORCH is a CUDA libtorch with c10d's NCCL
// headers and nccl.h): dist.cpp compiles ProcessGroupNCCL in, and DistBackends lists "nccl".
// With shimlib no C++ is compiled here: scripts/build-shim.sh decides NCCL when it compiles
// libprotoherb_torch.so, and DistBackends asks that library (pt_dist_backends) in every build.

/*
#cgo CXXFLAGS: -DPROTOHERB_NCCL -DUSE_C10D_NCCL
*/
import "C"
