// C ABI over libtorch's distributed engine c10d (the layer PyTorch DDP stands on) for package torch:
// a TCPStore rendezvous, a process group (Gloo; NCCL where compiled in), broadcast and all-reduce.
// Conventions as in shim.h: every function returns a malloc'd error string or NULL.
#ifndef PROTOHERB_TORCH_DIST_H
#define PROTOHERB_TORCH_DIST_H
#include <stdint.h>
#include "shim.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef void* pt_group;

// Reductions of pt_dist_allreduce.
typedef enum {
  PT_DIST_SUM = 0,
  PT_DIST_MAX,
} pt_dist_op;

// pt_dist_backends writes the compiled-in backends, comma-separated ("gloo" or "gloo,nccl").
void pt_dist_backends(char* buf, int n);

// pt_dist_new joins the job: rank 0 serves the TCPStore at host:port (unless agent_store: a launcher
// such as torchrun serves it), every rank connects to it, and the process group of backend ("gloo"
// or "nccl") connects the ranks. timeout_ms bounds the rendezvous and every collective.
char* pt_dist_new(const char* backend, const char* host, int port, int rank, int world, int64_t timeout_ms,
                  int agent_store, pt_group* out);
void pt_dist_free(pt_group g);

// pt_dist_broadcast overwrites the n tensors with root's, in place.
char* pt_dist_broadcast(pt_group g, const pt_tensor* ts, int n, int root);

// pt_dist_allreduce reduces the n tensors across ranks, in place: flattened into buckets of at most
// bucket_bytes (tensors of one dtype), every bucket's all-reduce started before the first is waited
// for. average divides the sums by the world size.
char* pt_dist_allreduce(pt_group g, const pt_tensor* ts, int n, int op, int average, int64_t bucket_bytes);

// pt_dist_average_grads averages the gradients of the n parameters across ranks as pt_dist_allreduce
// does; a parameter without a gradient contributes zeros (and gets them).
char* pt_dist_average_grads(pt_group g, const pt_tensor* params, int n, int64_t bucket_bytes);

// pt_reducer is c10d's Reducer, the engine of PyTorch DDP: hooks on the parameters' gradient
// accumulators copy each gradient into its bucket as backward produces it and start the bucket's
// all-reduce as soon as the bucket is full, so communication overlaps the rest of backward; the
// autograd engine's final callback waits for every bucket and writes the averaged gradients back.
typedef void* pt_reducer;

// pt_dist_reducer_new registers the hooks on the n parameters (those that require a gradient),
// bucketed in reverse order (the order backward reaches them): a first bucket of 1 MiB, then
// buckets of bucket_bytes. *out is NULL when no parameter requires a gradient.
char* pt_dist_reducer_new(pt_group g, const pt_tensor* params, int n, int64_t bucket_bytes, pt_reducer* out);
// pt_dist_reducer_prepare arms the hooks for the next backward from loss (which must be called,
// on every rank, before the next prepare); parameters loss does not reach count as zeros.
char* pt_dist_reducer_prepare(pt_reducer r, pt_tensor loss);
void pt_dist_reducer_free(pt_reducer r);

char* pt_dist_barrier(pt_group g);

// pt_dist_store_add adds delta to the store's counter key and returns its new value.
char* pt_dist_store_add(pt_group g, const char* key, int64_t delta, int64_t* out);

#ifdef __cplusplus
}
#endif
#endif
