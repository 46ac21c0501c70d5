package torch

/*
#cgo CXXFLAGS: -isystem ${SRCDIR}/internal/c10dcompat
#include <stdlib.h>
#include "dist.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// Group is a process group of libtorch's distributed engine c10d: the ranks of one job, connected
// through a TCPStore rendezvous (served by rank 0) and a collective backend (Gloo on CPU; NCCL on
// CUDA where compiled in). Every collective returns an error, never blocks longer than the group's
// timeout, and must be called by every rank in the same order.
type Group struct {
	g       C.pt_group
	rank    int
	size    int
	backend string
	timeout time.Duration
}

// GroupOptions say how a rank joins its job.
type GroupOptions struct {
	Backend    string // "gloo" (default) or "nccl"
	MasterAddr string // the host of rank 0's store
	MasterPort int
	Rank, Size int
	// Timeout bounds the rendezvous and every collective (default 5 minutes).
	Timeout time.Duration
	// AgentStore says the launcher already serves the store at the master's address (torchrun
	// does, and says so with TORCHELASTIC_USE_AGENT_STORE=True): rank 0 then connects as a client.
	AgentStore bool
}

// DefaultBucketBytes is the all-reduce bucket size, PyTorch DDP's default (25 MiB).
const DefaultBucketBytes = 25 << 20

// DistBackends lists the collective backends this build has ("gloo", and "nccl" when built with the
// nccl tag against a CUDA libtorch), as the compiled shim reports them: with -tags shimlib that is
// libprotoherb_torch.so, which may have neither (none: built without c10d).
func DistBackends() []string {
	var buf [64]C.char
	C.pt_dist_backends(&buf[0], 64)
	s := C.GoString(&buf[0])
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// NewGroup joins a job: it returns once all o.Size ranks have joined, or fails after the timeout.
func NewGroup(o GroupOptions) (*Group, error) {
	if o.Backend == "" {
		o.Backend = "gloo"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Size < 1 || o.Rank < 0 || o.Rank >= o.Size {
		return nil, &Error{Op: "dist_init", Msg: fmt.Sprintf("rank %d of a world of %d", o.Rank, o.Size)}
	}
	if o.MasterPort <= 0 || o.MasterPort > 65535 {
		return nil, &Error{Op: "dist_init", Msg: fmt.Sprintf("master port %d", o.MasterPort)}
	}
	cb, ch := C.CString(o.Backend), C.CString(o.MasterAddr)
	defer C.free(unsafe.Pointer(cb))
	defer C.free(unsafe.Pointer(ch))
	var g C.pt_group
	agent := 0
	if o.AgentStore {
		agent = 1
	}
	e := C.pt_dist_new(cb, ch, C.int(o.MasterPort), C.int(o.Rank), C.int(o.Size), C.int64_t(o.Timeout.Milliseconds()), C.int(agent), &g)
	if err := cerr(fmt.Sprintf("dist_init (rank %d of %d, %s at %s:%d)", o.Rank, o.Size, o.Backend, o.MasterAddr, o.MasterPort), e); err != nil {
		return nil, err
	}
	gr := &Group{g: g, rank: o.Rank, size: o.Size, backend: o.Backend, timeout: o.Timeout}
	runtime.SetFinalizer(gr, (*Group).Close)
	return gr, nil
}

// Rank is this process's rank (0 .. Size-1).
func (g *Group) Rank() int { return g.rank }

// Size is the number of ranks.
func (g *Group) Size() int { return g.size }

// Backend is the collective backend ("gloo" or "nccl").
func (g *Group) Backend() string { return g.backend }

// Timeout is the bound on every collective.
func (g *Group) Timeout() time.Duration { return g.timeout }

// Close leaves the group (rank 0's store stops serving).
func (g *Group) Close() {
	if g.g != nil {
		C.pt_dist_free(g.g)
		g.g = nil
		runtime.SetFinalizer(g, nil)
	}
}

func (g *Group) handles(op string, ts []*Tensor) ([]C.pt_tensor, error) {
	if g.g == nil {
		return nil, &Error{Op: op, Msg: "group closed"}
	}
	hs := make([]C.pt_tensor, len(ts))
	for i, t := range ts {
		if err := t.Err(); err != nil {
			return nil, fmt.Errorf("%s: tensor %d: %w", op, i, err)
		}
		hs[i] = t.h
	}
	return hs, nil
}

// Broadcast overwrites ts on every rank with root's ts, in place.
func (g *Group) Broadcast(ts []*Tensor, root int) error {
	hs, err := g.handles("broadcast", ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	return cerr("broadcast", C.pt_dist_broadcast(g.g, &hs[0], C.int(len(hs)), C.int(root)))
}

// DistOp is how AllReduce combines the ranks' values.
type DistOp int

const (
	DistSum DistOp = C.PT_DIST_SUM
	DistMax DistOp = C.PT_DIST_MAX
)

// AllReduce combines ts across ranks in place (average divides the sums by Size), in buckets of
// bucketBytes (<= 0: DefaultBucketBytes).
func (g *Group) AllReduce(ts []*Tensor, op DistOp, average bool, bucketBytes int64) error {
	hs, err := g.handles("all_reduce", ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	if bucketBytes <= 0 {
		bucketBytes = DefaultBucketBytes
	}
	avg := 0
	if average {
		avg = 1
	}
	return cerr("all_reduce", C.pt_dist_allreduce(g.g, &hs[0], C.int(len(hs)), C.int(op), C.int(avg), C.int64_t(bucketBytes)))
}

// AverageGrads replaces every parameter's gradient by its mean over the ranks, in buckets of
// bucketBytes (<= 0: DefaultBucketBytes); a parameter without a gradient counts as zeros.
func (g *Group) AverageGrads(params []*Tensor, bucketBytes int64) error {
	hs, err := g.handles("average_grads", params)
	if err != nil || len(hs) == 0 {
		return err
	}
	if bucketBytes <= 0 {
		bucketBytes = DefaultBucketBytes
	}
	return cerr("average_grads", C.pt_dist_average_grads(g.g, &hs[0], C.int(len(hs)), C.int64_t(bucketBytes)))
}

// Barrier returns when every rank has called it.
func (g *Group) Barrier() error {
	if g.g == nil {
		return &Error{Op: "barrier", Msg: "group closed"}
	}
	return cerr("barrier", C.pt_dist_barrier(g.g))
}

// StoreAdd adds delta to the counter key of the job's store and returns its new value (delta 0
// reads it). It does not involve the other ranks: heartbeats and diagnosis use it.
func (g *Group) StoreAdd(key string, delta int64) (int64, error) {
	if g.g == nil {
		return 0, &Error{Op: "store_add", Msg: "group closed"}
	}
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var v C.int64_t
	err := cerr("store_add "+key, C.pt_dist_store_add(g.g, ck, C.int64_t(delta), &v))
	return int64(v), err
}

// Reducer is c10d's Reducer, the engine of PyTorch DDP: it averages the gradients of a fixed set of
// parameters across the group while backward runs. Hooks on the parameters' gradient accumulators
// copy each gradient into its bucket as backward produces it (last layers first) and start the
// bucket's all-reduce once the bucket is full; the autograd engine's final callback waits for every
// bucket and writes the averages back, so when Backward returns the gradients are averaged. Arm it
// with Prepare before every backward of those parameters; every rank must then run that backward.
type Reducer struct {
	r C.pt_reducer
	g *Group
}

// NewReducer registers the hooks on the parameters of params that require a gradient, bucketed as
// DDP does (a first bucket of 1 MiB, then bucketBytes; <= 0: DefaultBucketBytes). It returns nil and
// no error when none requires a gradient. The group must outlive the reducer.
func (g *Group) NewReducer(params []*Tensor, bucketBytes int64) (*Reducer, error) {
	hs, err := g.handles("reducer", params)
	if err != nil || len(hs) == 0 {
		return nil, err
	}
	if bucketBytes <= 0 {
		bucketBytes = DefaultBucketBytes
	}
	var r C.pt_reducer
	if err := cerr("reducer", C.pt_dist_reducer_new(g.g, &hs[0], C.int(len(hs)), C.int64_t(bucketBytes), &r)); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	red := &Reducer{r: r, g: g}
	runtime.SetFinalizer(red, (*Reducer).Close)
	return red, nil
}

// Prepare arms the reducer for the next backward from loss: the parameters loss does not reach
// count as zeros on this rank (as DDP's find_unused_parameters).
func (r *Reducer) Prepare(loss *Tensor) error {
	if r.r == nil {
		return &Error{Op: "reducer_prepare", Msg: "reducer closed"}
	}
	if err := loss.Err(); err != nil {
		return fmt.Errorf("reducer_prepare: %w", err)
	}
	err := cerr("reducer_prepare", C.pt_dist_reducer_prepare(r.r, loss.h))
	runtime.KeepAlive(loss)
	return err
}

// Close removes the hooks.
func (r *Reducer) Close() {
	if r.r != nil {
		C.pt_dist_reducer_free(r.r)
		r.r = nil
		runtime.SetFinalizer(r, nil)
	}
}
