// Stand-in for libtorch 1.13's distributed-autograd context header, which Debian's libtorch-dev
// does not ship although c10d/reducer.hpp includes it. reducer.hpp needs only the two names below
// (a shared_ptr to the context, and its GradCallback type, both as in libtorch 1.13), so the
// Reducer's layout is unchanged. dist.go adds this folder with -isystem: a libtorch that ships the
// real header (LIBTORCH=<folder>, given with -I) finds that one first.
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
