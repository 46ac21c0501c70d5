//go:build !shimlib

// The intra-op thread count across OS threads. Debian's libtorch parallelises with OpenMP, whose
// thread count is an internal control variable of each OS thread: at::set_num_threads sets the
// calling thread's and a global that libtorch reads only once per thread, at that thread's first
// parallel region. Go runs cgo calls on any of its OS threads, so a count set once by a command did
// not hold on threads that had already run libtorch work (TestNumThreadsHoldsOnEveryOSThread).
// pt_set_num_threads therefore publishes the count with a generation in one atomic word, and every
// shim call (the BEGIN macro of shim_util.h) first calls pt::sync_num_threads, which costs one atomic
// load and a thread-local compare unless the calling thread is behind, when it applies the count.
#include "shim.h"
#include "shim_util.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace {

// setting holds the generation in its high 32 bits and the thread count in its low 32 bits; 0 means
// never set (each thread keeps libtorch's default).
std::atomic<uint64_t> setting{0};
thread_local uint64_t seen = 0;

void apply(uint64_t s) {
  seen = s;
  int n = (int)(uint32_t)s;
  if (n > 0) {
    try { at::set_num_threads(n); } catch (...) {}
  }
}

}  // namespace

namespace pt {

void sync_num_threads() {
  uint64_t s = setting.load(std::memory_order_acquire);
  if (s != seen) apply(s);
}

}  // namespace pt

extern "C" {

void pt_set_num_threads(int n) {
  if (n <= 0) return;
  uint64_t old = setting.load(std::memory_order_relaxed), s;
  do {
    s = (((old >> 32) + 1) << 32) | (uint32_t)n;
  } while (!setting.compare_exchange_weak(old, s, std::memory_order_release, std::memory_order_relaxed));
  apply(s);
}

int pt_get_num_threads(void) {
  pt::sync_num_threads();
  return at::get_num_threads();
}

int pt_thread_num_threads(void) { return at::get_num_threads(); }

}  // extern "C"
