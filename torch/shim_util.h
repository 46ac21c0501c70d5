// Helpers the C++ files of package torch share: handle conversion and the translation of C++
// exceptions into the malloc'd error strings of the C ABI.
#ifndef PROTOHERB_TORCH_SHIM_UTIL_H
#define PROTOHERB_TORCH_SHIM_UTIL_H
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>

#include "shim.h"

namespace pt {

inline char* dupmsg(const char* s) {
  size_t n = std::strlen(s);
  char* p = (char*)std::malloc(n + 1);
  if (p) std::memcpy(p, s, n + 1);
  return p;
}

inline at::Tensor& T(pt_tensor t) { return *static_cast<at::Tensor*>(t); }
inline pt_tensor wrap(at::Tensor t) { return static_cast<pt_tensor>(new at::Tensor(std::move(t))); }
inline at::Tensor opt(pt_tensor t) { return t ? T(t) : at::Tensor(); }
inline at::IntArrayRef ref(const int64_t* p, int n) { return at::IntArrayRef(p, (size_t)n); }

// sync_num_threads brings the calling OS thread's intra-op thread count up to the last
// pt_set_num_threads (threads.cpp); BEGIN calls it, so every shim call that computes does.
void sync_num_threads();

}  // namespace pt

#define BEGIN \
  try {        \
    pt::sync_num_threads();
#define END                                                           \
  }                                                                   \
  catch (const c10::Error& e) {                                       \
    return pt::dupmsg(e.what_without_backtrace());                    \
  }                                                                   \
  catch (const std::exception& e) {                                   \
    return pt::dupmsg(e.what());                                      \
  }                                                                   \
  catch (...) {                                                       \
    return pt::dupmsg("unknown C++ exception");                       \
  }                                                                   \
  return nullptr;

#endif
