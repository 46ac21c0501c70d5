// Implementation of dist.h on c10d: TCPStore, ProcessGroupGloo (ProcessGroupNCCL with PROTOHERB_NCCL).
// libtorch was built with Gloo; its headers declare ProcessGroupGloo only under this macro.
#define USE_C10D_GLOO 1
#include "dist.h"
#include "shim_util.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
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
#include <unordered_map>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;  // the job's TCPStore under the prefix "protoherb/"
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
  int world;
};

Group& G(pt_group g) { return *static_cast<Group*>(g); }

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
#ifdef PROTOHERB_NCCL
  std::snprintf(buf, n, "gloo,nccl");
#else
  std::snprintf(buf, n, "gloo");
#endif
}

char* pt_dist_new(const char* backend, const char* host, int port, int rank, int world, int64_t timeout_ms,
                  int agent_store, pt_group* out) {
  BEGIN
  std::string b(backend);
  std::string have = "gloo";
#ifdef PROTOHERB_NCCL
  have += ", nccl";
#endif
  if (b != "gloo" && !(b == "nccl" && have != "gloo")) {
    throw std::runtime_error("backend " + b + " is not compiled in (have: " + have + ")");
  }
  auto g = std::make_unique<Group>();
  g->timeout = std::chrono::milliseconds(timeout_ms);
  g->world = world;
  c10d::TCPStoreOptions so;
  so.port = (std::uint16_t)port;
  so.isServer = rank == 0 && !agent_store;
  so.numWorkers = (std::size_t)world;
  so.waitWorkers = !agent_store;
  so.timeout = g->timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
  g->store = c10::make_intrusive<c10d::PrefixStore>("protoherb/", tcp);
  if (b == "gloo") {
    auto o = c10d::ProcessGroupGloo::Options::create(g->timeout);
    o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, o);
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
  // find_unused_parameters: a parameter the loss does not reach (on some rank) counts as zeros
  // there instead of stalling the bucket; gradient_as_bucket_view off: .grad stays the parameter's own.
  *out = new c10d::Reducer(ps, std::get<0>(assigned), std::get<1>(assigned), G(g).pg, std::vector<bool>(ps.size(), false),
                           bucket_bytes, /*find_unused_parameters=*/true, /*gradient_as_bucket_view=*/false, names,
                           c10d::kDefaultFirstBucketBytes);
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
