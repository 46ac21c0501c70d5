//go:build !shimlib

// Implementation of dist.h on c10d: TCPStore, ProcessGroupGloo (ProcessGroupNCCL with PROTOHERB_NCCL).
// It compiles against libtorch 1.13 (Debian's) and 2.x, which moved the collectives from
// c10d::ProcessGroup to c10d::Backend (see Collectives below). Whoever compiles it (cgo with
// dist_nccl.go, or scripts/build-shim.sh) may define:
//   PROTOHERB_NCCL (with USE_C10D_NCCL)  ProcessGroupNCCL is compiled in;
//   PROTOHERB_NO_GLOO                    ProcessGroupGloo is left out (a libtorch that ships no gloo
//                                        headers, such as a pip wheel may be);
//   PROTOHERB_NO_DIST                    no c10d at all: every entry point fails with a clear error.
#if defined(PROTOHERB_NO_GLOO) && !defined(PROTOHERB_NCCL) && !defined(PROTOHERB_NO_DIST)
#define PROTOHERB_NO_DIST 1
#endif
#if !defined(PROTOHERB_NO_DIST) && !defined(PROTOHERB_NO_GLOO)
// libtorch was built with Gloo; its headers declare ProcessGroupGloo only under this macro.
#define USE_C10D_GLOO 1
#endif
#include "dist.h"
#include "shim_util.h"

#include <torch/version.h>

#ifdef PROTOHERB_NO_DIST

#include <cstdio>

namespace {
char* no_dist() { return pt::dupmsg("protoherb was built without c10d (distributed)"); }
}  // namespace

extern "C" {

void pt_dist_backends(char* buf, int n) {
  if (n > 0) buf[0] = 0;
}
char* pt_dist_new(const char*, const char*, int, int, int, int64_t, int, pt_group* out) {
  *out = nullptr;
  return no_dist();
}
void pt_dist_free(pt_group) {}
char* pt_dist_broadcast(pt_group, const pt_tensor*, int, int) { return no_dist(); }
char* pt_dist_allreduce(pt_group, const pt_tensor*, int, int, int, int64_t) { return no_dist(); }
char* pt_dist_average_grads(pt_group, const pt_tensor*, int, int64_t) { return no_dist(); }
char* pt_dist_reducer_new(pt_group, const pt_tensor*, int, int64_t, pt_reducer* out) {
  *out = nullptr;
  return no_dist();
}
char* pt_dist_reducer_prepare(pt_reducer, pt_tensor) { return no_dist(); }
void pt_dist_reducer_free(pt_reducer) {}
char* pt_dist_barrier(pt_group) { return no_dist(); }
char* pt_dist_store_add(pt_group, const char*, int64_t, int64_t* out) {
  *out = 0;
  return no_dist();
}

}  // extern "C"

#else  // PROTOHERB_NO_DIST

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#ifndef PROTOHERB_NO_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef PROTOHERB_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace {

#if TORCH_VERSION_MAJOR >= 2
// libtorch 2.x split c10d's process groups: ProcessGroupGloo and ProcessGroupNCCL derive from
// c10d::Backend, and a c10d::ProcessGroup hands each collective to the Backend registered for the
// tensors' device type. The collectives here call the Backend directly, as 1.13's called
// ProcessGroupGloo directly; only the Reducer takes a ProcessGroup, made when it is first needed.
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

struct Group {
  c10::intrusive_ptr<c10d::Store> store;  // the job's TCPStore under the prefix "protoherb/"
  c10::intrusive_ptr<Collectives> pg;
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<c10d::ProcessGroup> group;  // pg as a ProcessGroup, for the Reducer (made lazily)
  std::string backend;
  int rank = 0;
#endif
  std::chrono::milliseconds timeout;
  int world;
};

Group& G(pt_group g) { return *static_cast<Group*>(g); }

#if TORCH_VERSION_MAJOR >= 2
// as_process_group wraps a Backend in a ProcessGroup the way torch.distributed.init_process_group
// does: Gloo serves CPU and CUDA tensors, NCCL CUDA tensors. The ProcessGroup constructor took
// Options (naming the backend) until about 2.5 and takes none since, the backend type being set
// with setDefaultBackend; PG is a template parameter so that only the matching branch compiles.
template <class PG>
c10::intrusive_ptr<PG> as_process_group(const Group& g) {
  auto type = g.backend == "nccl" ? PG::BackendType::NCCL : PG::BackendType::GLOO;
  c10::intrusive_ptr<PG> pg;
  if constexpr (std::is_constructible<PG, c10::intrusive_ptr<c10d::Store>, int, int>::value) {
    pg = c10::make_intrusive<PG>(g.store, g.rank, g.world);
    pg->setDefaultBackend(type);
  } else {
    pg = c10::make_intrusive<PG>(g.store, g.rank, g.world,
                                 c10::make_intrusive<typename PG::Options>(g.backend, g.timeout));
  }
  pg->setBackend(c10::DeviceType::CUDA, type, g.pg);
  if (g.backend != "nccl") pg->setBackend(c10::DeviceType::CPU, type, g.pg);
  return pg;
}

// new_reducer calls whichever c10d::Reducer constructor this libtorch has. 2.x dropped 1.13's
// per-bucket size limits argument and has since added trailing ones (skip_all_reduce_unused_params,
// use_python_reducer, bucket_bytes_cap_list); each is given its neutral value (false, false, none)
// explicitly, trying the longest signature first. R is a template parameter so that only the
// matching branch compiles.
template <class R>
R* new_reducer(const std::vector<at::Tensor>& ps, const std::vector<std::vector<size_t>>& buckets,
               const std::vector<size_t>& limits, const c10::intrusive_ptr<c10d::ProcessGroup>& pg,
               int64_t bucket_bytes, const std::unordered_map<size_t, std::string>& names) {
  using Ts = std::vector<at::Tensor>;
  using Bs = std::vector<std::vector<size_t>>;
  using PG = c10::intrusive_ptr<c10d::ProcessGroup>;
  using Sp = std::vector<bool>;
  using Ns = std::unordered_map<size_t, std::string>;
  using Caps = std::vector<int64_t>;
  Sp sparse(ps.size(), false);
  const int64_t first = c10d::kDefaultFirstBucketBytes;
  // find_unused_parameters: a parameter the loss does not reach (on some rank) counts as zeros
  // there instead of stalling the bucket; gradient_as_bucket_view off: .grad stays the parameter's own.
  const bool find_unused = true, as_view = false;
  if constexpr (std::is_constructible<R, Ts, Bs, PG, Sp, int64_t, bool, bool, Ns, int64_t, bool, bool, Caps>::value) {
    return new R(ps, buckets, pg, sparse, bucket_bytes, find_unused, as_view, names, first, false, false, Caps{});
  } else if constexpr (std::is_constructible<R, Ts, Bs, PG, Sp, int64_t, bool, bool, Ns, int64_t, bool, bool>::value) {
    return new R(ps, buckets, pg, sparse, bucket_bytes, find_unused, as_view, names, first, false, false);
  } else if constexpr (std::is_constructible<R, Ts, Bs, PG, Sp, int64_t, bool, bool, Ns, int64_t, bool>::value) {
    return new R(ps, buckets, pg, sparse, bucket_bytes, find_unused, as_view, names, first, false);
  } else if constexpr (std::is_constructible<R, Ts, Bs, PG, Sp, int64_t, bool, bool, Ns, int64_t>::value) {
    return new R(ps, buckets, pg, sparse, bucket_bytes, find_unused, as_view, names, first);
  } else {
    return new R(ps, buckets, limits, pg, sparse, bucket_bytes, find_unused, as_view, names, first);
  }
}
#endif

void wait(Group& g, const c10::intrusive_ptr<c10d::Work>& w) {
  if (!w->wait(g.timeout)) throw std::runtime_error("collective did not complete within the timeout");
}

// Buckets of tensors of one dtype and device, each at most cap bytes (a larger tensor alone).
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor>& ts, int64_t cap) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto& t : ts) {
    int64_t b = t.numel() * (int64_t)t.element_size();
    bool fresh = out.empty() || out.back()[0].scalar_type() != t.scalar_type() ||
                 out.back()[0].device() != t.device() || (bytes + b > cap && bytes > 0);
    if (fresh) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += b;
  }
  return out;
}

// allreduce reduces ts in place, one flat tensor per bucket, all buckets in flight at once.
void allreduce(Group& g, const std::vector<at::Tensor>& ts, c10d::ReduceOp op, bool average, int64_t cap) {
  torch::NoGradGuard no_grad;
  auto bs = buckets(ts, cap);
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (auto& b : bs) {
    std::vector<at::Tensor> views;
    for (auto& t : b) views.push_back(t.reshape({-1}));
    std::vector<at::Tensor> flat{at::cat(views)};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    o.timeout = g.timeout;
    works.push_back(g.pg->allreduce(flat, o));
    flats.push_back(flat[0]);
  }
  for (size_t i = 0; i < bs.size(); i++) {
    wait(g, works[i]);
    if (average) flats[i].div_(g.world);
    int64_t off = 0;
    for (auto& t : bs[i]) {
      int64_t n = t.numel();
      t.copy_(flats[i].narrow(0, off, n).view(t.sizes()));
      off += n;
    }
  }
}

std::vector<at::Tensor> tensors(const pt_tensor* ts, int n) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; i++) out.push_back(pt::T(ts[i]).detach());
  return out;
}

}  // namespace

extern "C" {

void pt_dist_backends(char* buf, int n) {
#if defined(PROTOHERB_NCCL) && !defined(PROTOHERB_NO_GLOO)
  std::snprintf(buf, n, "gloo,nccl");
#elif defined(PROTOHERB_NCCL)
  std::snprintf(buf, n, "nccl");
#else
  std::snprintf(buf, n, "gloo");
#endif
}

char* pt_dist_new(const char* backend, const char* host, int port, int rank, int world, int64_t timeout_ms,
                  int agent_store, pt_group* out) {
  BEGIN
  std::string b(backend);
  std::string have;
  bool known = false;
#ifndef PROTOHERB_NO_GLOO
  have = "gloo";
  known = known || b == "gloo";
#endif
#ifdef PROTOHERB_NCCL
  have += have.empty() ? "nccl" : ", nccl";
  known = known || b == "nccl";
#endif
  if (!known) {
    throw std::runtime_error("backend " + b + " is not compiled in (have: " + have + ")");
  }
  auto g = std::make_unique<Group>();
  g->timeout = std::chrono::milliseconds(timeout_ms);
  g->world = world;
#if TORCH_VERSION_MAJOR >= 2
  g->backend = b;
  g->rank = rank;
#endif
  c10d::TCPStoreOptions so;
  so.port = (std::uint16_t)port;
  so.isServer = rank == 0 && !agent_store;
  so.numWorkers = (std::size_t)world;
  so.waitWorkers = !agent_store;
  so.timeout = g->timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
  g->store = c10::make_intrusive<c10d::PrefixStore>("protoherb/", tcp);
  if (false) {
#ifndef PROTOHERB_NO_GLOO
  } else if (b == "gloo") {
    auto o = c10d::ProcessGroupGloo::Options::create(g->timeout);
    o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, o);
#endif
#ifdef PROTOHERB_NCCL
  } else if (b == "nccl") {
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = g->timeout;
    g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, rank, world, o);
#endif
  }
  *out = g.release();
  END
}

void pt_dist_free(pt_group g) { delete static_cast<Group*>(g); }

char* pt_dist_broadcast(pt_group g, const pt_tensor* ts, int n, int root) {
  BEGIN
  torch::NoGradGuard no_grad;
  for (auto& t : tensors(ts, n)) {
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = G(g).timeout;
    wait(G(g), G(g).pg->broadcast(v, o));
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  END
}

char* pt_dist_allreduce(pt_group g, const pt_tensor* ts, int n, int op, int average, int64_t bucket_bytes) {
  BEGIN
  auto rop = op == PT_DIST_MAX ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
  allreduce(G(g), tensors(ts, n), rop, average != 0, bucket_bytes);
  END
}

char* pt_dist_average_grads(pt_group g, const pt_tensor* params, int n, int64_t bucket_bytes) {
  BEGIN
  std::vector<at::Tensor> grads;
  for (int i = 0; i < n; i++) {
    at::Tensor& p = pt::T(params[i]);
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  allreduce(G(g), grads, c10d::ReduceOp(c10d::ReduceOp::SUM), true, bucket_bytes);
  END
}

char* pt_dist_reducer_new(pt_group g, const pt_tensor* params, int n, int64_t bucket_bytes, pt_reducer* out) {
  BEGIN
  *out = nullptr;
  // Reversed: backward produces the last layers' gradients first, so they fill the first bucket.
  std::vector<at::Tensor> ps;
  std::vector<int64_t> order;
  std::unordered_map<size_t, std::string> names;
  for (int i = n - 1; i >= 0; i--) {
    at::Tensor& p = pt::T(params[i]);
    if (!p.requires_grad()) continue;
    names[ps.size()] = "parameter " + std::to_string(i);
    order.push_back((int64_t)ps.size());
    ps.push_back(p);
  }
  if (ps.empty()) return nullptr;
  std::vector<size_t> limits{(size_t)c10d::kDefaultFirstBucketBytes, (size_t)bucket_bytes};
  auto assigned = c10d::compute_bucket_assignment_by_size(ps, limits, std::vector<bool>(ps.size(), false), order);
#if TORCH_VERSION_MAJOR >= 2
  if (!G(g).group) G(g).group = as_process_group<c10d::ProcessGroup>(G(g));
  *out = new_reducer<c10d::Reducer>(ps, std::get<0>(assigned), std::get<1>(assigned), G(g).group, bucket_bytes, names);
#else
  // find_unused_parameters: a parameter the loss does not reach (on some rank) counts as zeros
  // there instead of stalling the bucket; gradient_as_bucket_view off: .grad stays the parameter's own.
  *out = new c10d::Reducer(ps, std::get<0>(assigned), std::get<1>(assigned), G(g).pg, std::vector<bool>(ps.size(), false),
                           bucket_bytes, /*find_unused_parameters=*/true, /*gradient_as_bucket_view=*/false, names,
                           c10d::kDefaultFirstBucketBytes);
#endif
  END
}

char* pt_dist_reducer_prepare(pt_reducer r, pt_tensor loss) {
  BEGIN
  static_cast<c10d::Reducer*>(r)->prepare_for_backward({pt::T(loss)});
  END
}

void pt_dist_reducer_free(pt_reducer r) {
  try {
    delete static_cast<c10d::Reducer*>(r);
  } catch (...) {
    // ~Reducer may throw (it removes its hooks); nothing is left to undo.
  }
}

char* pt_dist_barrier(pt_group g) {
  BEGIN
  c10d::BarrierOptions o;
  o.timeout = G(g).timeout;
  wait(G(g), G(g).pg->barrier(o));
  END
}

char* pt_dist_store_add(pt_group g, const char* key, int64_t delta, int64_t* out) {
  BEGIN
  *out = G(g).store->add(std::string(key), delta);
  END
}

}  // extern "C"

#endif  // PROTOHERB_NO_DIST
