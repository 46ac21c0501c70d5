//go:build nccl

package torch

// Built with -tags nccl (the Makefile adds it when LIBTORCH is a CUDA libtorch with c10d's NCCL
// headers and nccl.h): dist.cpp compiles ProcessGroupNCCL in, and DistBackends lists "nccl".

/*
#cgo CXXFLAGS: -DPROTOHERB_NCCL -DUSE_C10D_NCCL
*/
import "C"
