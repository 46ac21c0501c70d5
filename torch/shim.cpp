//go:build !shimlib

// Implementation of the C ABI in shim.h. Kept thin: argument conversion, a call into libtorch, and
// exception-to-error translation. All model, loss and training logic lives in Go.
#include "shim.h"
#include "shim_util.h"

#include <torch/torch.h>
#include <torch/script.h>
#include <torch/version.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using pt::dupmsg;
using pt::opt;
using pt::ref;
using pt::T;
using pt::wrap;

namespace {

c10::Device device(int type, int idx) {
  if (type == 1) return c10::Device(c10::kCUDA, (c10::DeviceIndex)idx);
  return c10::Device(c10::kCPU);
}

// libtorch allocates every activation of a step afresh. glibc serves blocks over its mmap threshold
// (at most 32 MB: a Conv-4 layer's activations for an episode are 80+ MB) with mmap and returns them
// on free, so every step touches brand-new pages: ~140k page faults per step and ~40% of the CPU time
// in the kernel. One arena that never maps and rarely trims keeps the pages: a Conv-4 training step
// takes ~30% less time (docs/benchmarks.md). Set at load time, before any thread allocates;
// PROTOHERB_MALLOC=default keeps glibc's behaviour.
struct MallocTuning {
  MallocTuning() {
    const char* v = std::getenv("PROTOHERB_MALLOC");
    if (v && std::strcmp(v, "default") == 0) return;
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    mallopt(M_TOP_PAD, 64 << 20);
  }
};
MallocTuning malloc_tuning;

}  // namespace

extern "C" {

char* pt_version(char* buf, int n) {
  std::snprintf(buf, n, "%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
  return buf;
}
int pt_cuda_available(void) { try { return torch::cuda::is_available() ? 1 : 0; } catch (...) { return 0; } }
int pt_set_cudnn_allow_tf32(int allow) {
  int old = at::globalContext().allowTF32CuDNN() ? 1 : 0;
  at::globalContext().setAllowTF32CuDNN(allow != 0);
  return old;
}
int pt_cuda_device_count(void) { try { return (int)torch::cuda::device_count(); } catch (...) { return 0; } }
char* pt_manual_seed(uint64_t seed) { BEGIN torch::manual_seed(seed); END }
void pt_set_grad_enabled(int on) { c10::GradMode::set_enabled(on != 0); }
int pt_is_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }
char* pt_get_rng_state(pt_tensor* out) {
  BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  *out = wrap(gen.get_state());
  END
}
char* pt_set_rng_state(pt_tensor state) {
  BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(T(state));
  END
}

void pt_free(pt_tensor t) { delete static_cast<at::Tensor*>(t); }
int pt_defined(pt_tensor t) { return t && T(t).defined() ? 1 : 0; }
int pt_dim(pt_tensor t) { return (int)T(t).dim(); }
void pt_sizes(pt_tensor t, int64_t* out) {
  auto s = T(t).sizes();
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
}
int pt_dtype(pt_tensor t) { return (int)T(t).scalar_type(); }
void pt_device(pt_tensor t, int* type, int* index) {
  auto d = T(t).device();
  *type = d.is_cuda() ? 1 : 0;
  *index = d.has_index() ? d.index() : 0;
}
int64_t pt_numel(pt_tensor t) { return T(t).numel(); }
int pt_requires_grad(pt_tensor t) { return T(t).requires_grad() ? 1 : 0; }
int pt_is_contiguous(pt_tensor t) { return T(t).is_contiguous() ? 1 : 0; }
void* pt_data_ptr(pt_tensor t) { return T(t).data_ptr(); }

char* pt_from_data(const void* data, const int64_t* shape, int ndim, int dtype, int devtype, int devidx,
                   pt_tensor* out) {
  BEGIN
  auto d = device(devtype, devidx);
  auto opts = at::TensorOptions().dtype((at::ScalarType)dtype);
  if (d.is_cpu()) {
    auto t = at::empty(ref(shape, ndim), opts);
    std::memcpy(t.data_ptr(), data, t.nbytes());
    *out = wrap(t);
  } else {
    // One copy, host memory straight to the device (blocking): nothing refers to data afterwards.
    *out = wrap(at::from_blob(const_cast<void*>(data), ref(shape, ndim), opts).to(d));
  }
  END
}
char* pt_copy_to(pt_tensor t, void* dst, int64_t nbytes) {
  BEGIN
  at::Tensor c = T(t).detach().to(at::kCPU).contiguous();
  if ((int64_t)c.nbytes() != nbytes)
    throw std::runtime_error("copy_to: destination holds " + std::to_string(nbytes) + " bytes, tensor has " +
                             std::to_string(c.nbytes()));
  std::memcpy(dst, c.data_ptr(), nbytes);
  END
}
char* pt_full(const int64_t* shape, int ndim, double value, int dtype, int devtype, int devidx, pt_tensor* out) {
  BEGIN
  auto opts = at::TensorOptions().dtype((at::ScalarType)dtype).device(device(devtype, devidx));
  *out = wrap(at::full(ref(shape, ndim), value, opts));
  END
}
char* pt_rand(int kind, const int64_t* shape, int ndim, int dtype, int devtype, int devidx, pt_tensor* out) {
  BEGIN
  auto opts = at::TensorOptions().dtype((at::ScalarType)dtype).device(device(devtype, devidx));
  *out = wrap(kind == PT_RAND_NORMAL ? at::randn(ref(shape, ndim), opts) : at::rand(ref(shape, ndim), opts));
  END
}
char* pt_arange(int64_t n, int dtype, pt_tensor* out) {
  BEGIN *out = wrap(at::arange(n, at::TensorOptions().dtype((at::ScalarType)dtype))); END
}
char* pt_to(pt_tensor t, int devtype, int devidx, int dtype, pt_tensor* out) {
  BEGIN
  *out = wrap(T(t).to(device(devtype, devidx), dtype < 0 ? T(t).scalar_type() : (at::ScalarType)dtype));
  END
}
char* pt_shallow(pt_tensor t, pt_tensor* out) { BEGIN *out = wrap(T(t)); END }
char* pt_item(pt_tensor t, double* out) { BEGIN *out = T(t).item<double>(); END }

char* pt_set_requires_grad(pt_tensor t, int on) { BEGIN T(t).requires_grad_(on != 0); END }
char* pt_grad(pt_tensor t, pt_tensor* out) {
  BEGIN
  auto g = T(t).grad();
  *out = g.defined() ? wrap(g) : nullptr;
  END
}
char* pt_zero_grad(pt_tensor t) {
  BEGIN
  auto& g = T(t).mutable_grad();
  if (g.defined()) g = at::Tensor();
  END
}
char* pt_backward(pt_tensor t, pt_tensor grad, int retain_graph) {
  BEGIN T(t).backward(opt(grad), retain_graph != 0); END
}
char* pt_copy_(pt_tensor dst, pt_tensor src) {
  BEGIN
  at::NoGradGuard g;
  T(dst).copy_(T(src));
  END
}

char* pt_reshape(pt_tensor t, const int64_t* shape, int ndim, pt_tensor* out) {
  BEGIN *out = wrap(T(t).reshape(ref(shape, ndim))); END
}
char* pt_permute(pt_tensor t, const int64_t* dims, int ndim, pt_tensor* out) {
  BEGIN *out = wrap(T(t).permute(ref(dims, ndim))); END
}
char* pt_transpose(pt_tensor t, int64_t a, int64_t b, pt_tensor* out) { BEGIN *out = wrap(T(t).transpose(a, b)); END }
char* pt_narrow(pt_tensor t, int64_t dim, int64_t start, int64_t length, pt_tensor* out) {
  BEGIN *out = wrap(T(t).narrow(dim, start, length)); END
}
char* pt_slice(pt_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, pt_tensor* out) {
  BEGIN *out = wrap(T(t).slice(dim, start, end, step)); END
}
char* pt_select(pt_tensor t, int64_t dim, int64_t index, pt_tensor* out) { BEGIN *out = wrap(T(t).select(dim, index)); END }
char* pt_index_select(pt_tensor t, int64_t dim, pt_tensor index, pt_tensor* out) {
  BEGIN *out = wrap(T(t).index_select(dim, T(index))); END
}
char* pt_cat(const pt_tensor* ts, int n, int64_t dim, int stack, pt_tensor* out) {
  BEGIN
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  *out = wrap(stack ? at::stack(v, dim) : at::cat(v, dim));
  END
}
char* pt_unsqueeze(pt_tensor t, int64_t dim, pt_tensor* out) { BEGIN *out = wrap(T(t).unsqueeze(dim)); END }
char* pt_squeeze(pt_tensor t, int64_t dim, pt_tensor* out) { BEGIN *out = wrap(T(t).squeeze(dim)); END }
char* pt_flatten(pt_tensor t, int64_t start, int64_t end, pt_tensor* out) {
  BEGIN *out = wrap(T(t).flatten(start, end)); END
}
char* pt_expand(pt_tensor t, const int64_t* shape, int ndim, pt_tensor* out) {
  BEGIN *out = wrap(T(t).expand(ref(shape, ndim))); END
}
char* pt_contiguous(pt_tensor t, int channels_last, pt_tensor* out) {
  BEGIN
  *out = wrap(T(t).contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  END
}

char* pt_unary(int op, pt_tensor t, pt_tensor* out) {
  BEGIN
  const at::Tensor& x = T(t);
  at::Tensor r;
  switch (op) {
    case PT_U_RELU: r = at::relu(x); break;
    case PT_U_SQRT: r = at::sqrt(x); break;
    case PT_U_EXP: r = at::exp(x); break;
    case PT_U_LOG: r = at::log(x); break;
    case PT_U_NEG: r = at::neg(x); break;
    case PT_U_SIGMOID: r = at::sigmoid(x); break;
    case PT_U_TANH: r = at::tanh(x); break;
    case PT_U_ABS: r = at::abs(x); break;
    case PT_U_SQUARE: r = at::square(x); break;
    case PT_U_DETACH: r = x.detach(); break;
    case PT_U_CLONE: r = x.clone(); break;
    case PT_U_ALL_FINITE: r = at::isfinite(x).all(); break;
    case PT_U_LEAKY_RELU: r = at::leaky_relu(x, 0.1); break;
    case PT_U_ZEROS_LIKE: r = at::zeros_like(x); break;
    case PT_U_ONES_LIKE: r = at::ones_like(x); break;
    default: throw std::runtime_error("unknown unary op " + std::to_string(op));
  }
  *out = wrap(r);
  END
}
// pt_unary_ and pt_binary_ are the in-place forms (relu_, leaky_relu_, add_) of the ops above.
char* pt_unary_(int op, pt_tensor t) {
  BEGIN
  at::Tensor& x = T(t);
  switch (op) {
    case PT_U_RELU: at::relu_(x); break;
    case PT_U_LEAKY_RELU: at::leaky_relu_(x, 0.1); break;
    default: throw std::runtime_error("no in-place form of unary op " + std::to_string(op));
  }
  END
}
char* pt_binary_(int op, pt_tensor a, pt_tensor b) {
  BEGIN
  at::Tensor& x = T(a);
  switch (op) {
    case PT_B_ADD: x.add_(T(b)); break;
    default: throw std::runtime_error("no in-place form of binary op " + std::to_string(op));
  }
  END
}
char* pt_binary(int op, pt_tensor a, pt_tensor b, pt_tensor* out) {
  BEGIN
  const at::Tensor& x = T(a);
  const at::Tensor& y = T(b);
  at::Tensor r;
  switch (op) {
    case PT_B_ADD: r = at::add(x, y); break;
    case PT_B_SUB: r = at::sub(x, y); break;
    case PT_B_MUL: r = at::mul(x, y); break;
    case PT_B_DIV: r = at::div(x, y); break;
    case PT_B_MATMUL: r = at::matmul(x, y); break;
    case PT_B_MM: r = at::mm(x, y); break;
    case PT_B_POW: r = at::pow(x, y); break;
    case PT_B_EQ: r = at::eq(x, y); break;
    case PT_B_MAXIMUM: r = at::maximum(x, y); break;
    case PT_B_MINIMUM: r = at::minimum(x, y); break;
    case PT_B_BMM: r = at::bmm(x, y); break;
    case PT_B_GT: r = at::gt(x, y); break;
    case PT_B_LT: r = at::lt(x, y); break;
    default: throw std::runtime_error("unknown binary op " + std::to_string(op));
  }
  *out = wrap(r);
  END
}
char* pt_scalar(int op, pt_tensor t, double s, pt_tensor* out) {
  BEGIN
  const at::Tensor& x = T(t);
  at::Tensor r;
  switch (op) {
    case PT_S_ADD: r = at::add(x, s); break;
    case PT_S_MUL: r = at::mul(x, s); break;
    case PT_S_POW: r = at::pow(x, s); break;
    case PT_S_DIV: r = at::div(x, s); break;
    case PT_S_EQ: r = at::eq(x, s); break;
    case PT_S_GT: r = at::gt(x, s); break;
    case PT_S_LT: r = at::lt(x, s); break;
    case PT_S_FILL: r = at::fill(x, s); break;
    default: throw std::runtime_error("unknown scalar op " + std::to_string(op));
  }
  *out = wrap(r);
  END
}
char* pt_reduce(int op, pt_tensor t, const int64_t* dims, int ndims, int keepdim, pt_tensor* out) {
  BEGIN
  const at::Tensor& x = T(t);
  bool all = ndims == 0;
  at::Tensor r;
  switch (op) {
    case PT_R_SUM: r = all ? x.sum() : x.sum(ref(dims, ndims), keepdim != 0); break;
    case PT_R_MEAN: r = all ? x.mean() : x.mean(ref(dims, ndims), keepdim != 0); break;
    case PT_R_MAX: r = all ? x.max() : std::get<0>(x.max(dims[0], keepdim != 0)); break;
    case PT_R_MIN: r = all ? x.min() : std::get<0>(x.min(dims[0], keepdim != 0)); break;
    case PT_R_ARGMAX: r = all ? x.argmax() : x.argmax(dims[0], keepdim != 0); break;
    case PT_R_ARGMIN: r = all ? x.argmin() : x.argmin(dims[0], keepdim != 0); break;
    case PT_R_LOGSUMEXP: r = at::logsumexp(x, all ? at::IntArrayRef{} : ref(dims, ndims), keepdim != 0); break;
    case PT_R_VAR: r = all ? x.var() : x.var(ref(dims, ndims), /*unbiased=*/true, keepdim != 0); break;
    default: throw std::runtime_error("unknown reduction " + std::to_string(op));
  }
  *out = wrap(r);
  END
}
char* pt_softmax(int log, pt_tensor t, int64_t dim, pt_tensor* out) {
  BEGIN *out = wrap(log ? at::log_softmax(T(t), dim) : at::softmax(T(t), dim)); END
}
char* pt_addmm(pt_tensor self, pt_tensor m1, pt_tensor m2, double beta, double alpha, pt_tensor* out) {
  BEGIN *out = wrap(at::addmm(T(self), T(m1), T(m2), beta, alpha)); END
}
char* pt_addmm_out(pt_tensor out, pt_tensor self, pt_tensor m1, pt_tensor m2, double beta, double alpha) {
  BEGIN
  at::NoGradGuard g;
  at::addmm_out(T(out), T(self), T(m1), T(m2), beta, alpha);
  END
}
// oneDNN's row-major SGEMM (dnnl.h), referenced weakly: Debian's libtorch loads libdnnl.so.2, whose
// kernels reach ~10 % more of this kind of machine's peak than the system BLAS that at::addmm calls
// at the search's shapes (K = the embedding size, a few hundred); where no loaded library exports
// it (some libtorch builds keep oneDNN's symbols hidden) the address is null and pt_gemm_nt falls
// back to at::addmm_out.
extern "C" int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) __attribute__((weak));

// rowMajor reports whether t is a 2-D float CPU matrix whose rows are contiguous.
static bool rowMajor(const at::Tensor& t) {
  return t.dim() == 2 && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.stride(1) == 1 &&
         t.stride(0) >= t.size(1);
}

int pt_gemm_engine(void) { return dnnl_sgemm != nullptr; }

char* pt_gemm_nt(pt_tensor out, pt_tensor a, pt_tensor b, double alpha) {
  BEGIN
  at::NoGradGuard g;
  at::Tensor &o = T(out), &x = T(a), &y = T(b);
  TORCH_CHECK(x.dim() == 2 && y.dim() == 2 && o.dim() == 2 && x.size(1) == y.size(1) &&
                  o.size(0) == x.size(0) && o.size(1) == y.size(0),
              "gemm_nt: shapes ", o.sizes(), " = ", x.sizes(), " x ", y.sizes(), "^T do not match");
  if (dnnl_sgemm && rowMajor(o) && rowMajor(x) && rowMajor(y)) {
    int st = dnnl_sgemm('N', 'T', x.size(0), y.size(0), x.size(1), (float)alpha, x.data_ptr<float>(),
                        x.stride(0), y.data_ptr<float>(), y.stride(0), 0.0f, o.data_ptr<float>(),
                        o.stride(0));
    TORCH_CHECK(st == 0, "gemm_nt: oneDNN sgemm failed with status ", st);
  } else {
    at::addmm_out(o, o, x, y.t(), 0, alpha);
  }
  END
}
char* pt_topk(pt_tensor t, int64_t k, int64_t dim, int largest, pt_tensor* values, pt_tensor* indices) {
  BEGIN
  auto r = at::topk(T(t), k, dim, largest != 0, /*sorted=*/true);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  END
}
char* pt_where(pt_tensor cond, pt_tensor a, pt_tensor b, pt_tensor* out) {
  BEGIN *out = wrap(at::where(T(cond), T(a), T(b))); END
}

char* pt_conv2d(pt_tensor x, pt_tensor w, pt_tensor b, const int64_t* stride, const int64_t* padding,
                const int64_t* dilation, int64_t groups, pt_tensor* out) {
  BEGIN
  *out = wrap(at::conv2d(T(x), T(w), opt(b), ref(stride, 2), ref(padding, 2), ref(dilation, 2), groups));
  END
}
// The prepacked-convolution operators, looked up once; empty optionals in a libtorch built without
// oneDNN.
static const auto& prepack_op() {
  static const auto op = c10::Dispatcher::singleton().findSchema({"mkldnn_prepacked::conv2d_prepack", ""});
  return op;
}
static const auto& packed_run_op() {
  static const auto op = c10::Dispatcher::singleton().findSchema({"mkldnn_prepacked::conv2d_run", ""});
  return op;
}
int pt_conv2d_prepack_available(void) {
  try {
    return prepack_op().has_value() && packed_run_op().has_value() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
char* pt_conv2d_prepack(pt_tensor w, pt_tensor b, const int64_t* stride, const int64_t* padding,
                        const int64_t* dilation, int64_t groups, pt_tensor like, int relu, pt_packed_conv* out) {
  BEGIN
  if (!pt_conv2d_prepack_available()) throw std::runtime_error("this libtorch has no mkldnn_prepacked operators");
  auto& x = T(like);
  TORCH_CHECK(x.dim() == 4, "conv2d_prepack: input must be 4-D, got ", x.dim(), "-D");
  TORCH_CHECK(T(w).device().is_cpu() && T(w).scalar_type() == at::kFloat && x.device().is_cpu(),
              "conv2d_prepack: float32 CPU tensors only");
  torch::jit::Stack st;
  st.emplace_back(T(w).contiguous(x.suggest_memory_format()));
  st.emplace_back(b ? c10::IValue(T(b).contiguous()) : c10::IValue());
  st.emplace_back(std::vector<int64_t>(stride, stride + 2));
  st.emplace_back(std::vector<int64_t>(padding, padding + 2));
  st.emplace_back(std::vector<int64_t>(dilation, dilation + 2));
  st.emplace_back(groups);
  st.emplace_back(x.sizes().vec());
  st.emplace_back(std::string(relu ? "relu" : "none"));
  prepack_op()->callBoxed(&st);
  *out = new c10::IValue(std::move(st.at(0)));
  END
}
char* pt_conv2d_packed(pt_tensor x, pt_packed_conv p, pt_tensor* out) {
  BEGIN
  auto& in = T(x);
  torch::jit::Stack st;
  st.emplace_back(in.contiguous(in.suggest_memory_format()));
  st.emplace_back(*static_cast<c10::IValue*>(p));
  packed_run_op()->callBoxed(&st);
  *out = wrap(st.at(0).toTensor());
  END
}
void pt_packed_conv_free(pt_packed_conv p) { delete static_cast<c10::IValue*>(p); }
char* pt_batch_norm(pt_tensor x, pt_tensor w, pt_tensor b, pt_tensor rm, pt_tensor rv, int training,
                    double momentum, double eps, pt_tensor* out) {
  BEGIN
  *out = wrap(at::batch_norm(T(x), opt(w), opt(b), opt(rm), opt(rv), training != 0, momentum, eps,
                             /*cudnn_enabled=*/true));
  END
}
char* pt_max_pool2d(pt_tensor x, const int64_t* k, const int64_t* s, const int64_t* p, int ceil_mode, pt_tensor* out) {
  BEGIN *out = wrap(at::max_pool2d(T(x), ref(k, 2), ref(s, 2), ref(p, 2), {1, 1}, ceil_mode != 0)); END
}
char* pt_avg_pool2d(pt_tensor x, const int64_t* k, const int64_t* s, const int64_t* p, pt_tensor* out) {
  BEGIN *out = wrap(at::avg_pool2d(T(x), ref(k, 2), ref(s, 2), ref(p, 2))); END
}
char* pt_adaptive_avg_pool2d(pt_tensor x, int64_t h, int64_t w, pt_tensor* out) {
  BEGIN *out = wrap(at::adaptive_avg_pool2d(T(x), {h, w})); END
}
char* pt_linear(pt_tensor x, pt_tensor w, pt_tensor b, pt_tensor* out) {
  BEGIN *out = wrap(at::linear(T(x), T(w), opt(b))); END
}
char* pt_dropout(pt_tensor x, double p, int train, pt_tensor* out) {
  BEGIN *out = wrap(at::dropout(T(x), p, train != 0)); END
}
char* pt_cross_entropy(pt_tensor logits, pt_tensor target, double label_smoothing, int reduction, pt_tensor* out) {
  BEGIN
  *out = wrap(at::cross_entropy_loss(T(logits), T(target), {}, reduction, -100, label_smoothing));
  END
}
char* pt_nll_loss(pt_tensor logp, pt_tensor target, int reduction, pt_tensor* out) {
  BEGIN *out = wrap(at::nll_loss(T(logp), T(target), {}, reduction, -100)); END
}
char* pt_normalize(pt_tensor x, double p, int64_t dim, double eps, pt_tensor* out) {
  BEGIN
  namespace F = torch::nn::functional;
  *out = wrap(F::normalize(T(x), F::NormalizeFuncOptions().p(p).dim(dim).eps(eps)));
  END
}
char* pt_cosine_similarity(pt_tensor a, pt_tensor b, int64_t dim, double eps, pt_tensor* out) {
  BEGIN *out = wrap(at::cosine_similarity(T(a), T(b), dim, eps)); END
}
// Pairwise squared euclidean distances between rows: a [N,D], b [M,D] -> [N,M], computed as
// |a|^2 + |b|^2 - 2 a b^T (one matrix product), clamped at 0; differentiable in a and b.
char* pt_sq_dist(pt_tensor a, pt_tensor b, pt_tensor* out) {
  BEGIN
  const at::Tensor& x = T(a);
  const at::Tensor& y = T(b);
  if (x.dim() != 2 || y.dim() != 2 || x.size(1) != y.size(1))
    throw std::runtime_error("sq_dist: want [N,D] and [M,D], got " + c10::str(x.sizes()) + " and " + c10::str(y.sizes()));
  auto xx = x.pow(2).sum(1, true);
  auto yy = y.pow(2).sum(1, true).t();
  *out = wrap(at::addmm(xx + yy, x, y.t(), 1.0, -2.0).clamp_min(0));
  END
}
char* pt_clamp(pt_tensor t, double lo, double hi, int has_lo, int has_hi, pt_tensor* out) {
  BEGIN
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  std::optional<at::Scalar> l, h;  // c10::optional is an alias of std::optional since about 2.3
#else
  c10::optional<at::Scalar> l, h;
#endif
  if (has_lo) l = lo;
  if (has_hi) h = hi;
  *out = wrap(at::clamp(T(t), l, h));
  END
}

// ---- optimizers ----
struct Optim {
  int kind;  // a pt_optim_kind
  std::unique_ptr<torch::optim::Optimizer> opt;
};

char* pt_optim_new(int kind, const pt_tensor* params, int n, double lr, double momentum, double dampening,
                   double weight_decay, int nesterov, double beta1, double beta2, double eps, pt_optim* out) {
  BEGIN
  std::vector<at::Tensor> ps;
  for (int i = 0; i < n; i++) ps.push_back(T(params[i]));
  auto o = std::make_unique<Optim>();
  o->kind = kind;
  switch (kind) {
    case PT_OPTIM_SGD:
      o->opt = std::make_unique<torch::optim::SGD>(
          ps, torch::optim::SGDOptions(lr).momentum(momentum).dampening(dampening).weight_decay(weight_decay).nesterov(nesterov != 0));
      break;
    case PT_OPTIM_ADAM:
      o->opt = std::make_unique<torch::optim::Adam>(
          ps, torch::optim::AdamOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay));
      break;
    case PT_OPTIM_ADAMW:
      o->opt = std::make_unique<torch::optim::AdamW>(
          ps, torch::optim::AdamWOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay));
      break;
    default:
      throw std::runtime_error("unknown optimizer kind " + std::to_string(kind));
  }
  *out = o.release();
  END
}
void pt_optim_free(pt_optim o) { delete static_cast<Optim*>(o); }
char* pt_optim_step(pt_optim o) { BEGIN static_cast<Optim*>(o)->opt->step(); END }
char* pt_optim_zero_grad(pt_optim o) { BEGIN static_cast<Optim*>(o)->opt->zero_grad(); END }
char* pt_optim_set_lr(pt_optim o, double lr) {
  BEGIN
  for (auto& g : static_cast<Optim*>(o)->opt->param_groups()) g.options().set_lr(lr);
  END
}
double pt_optim_get_lr(pt_optim o) {
  auto& gs = static_cast<Optim*>(o)->opt->param_groups();
  return gs.empty() ? 0 : gs[0].options().get_lr();
}
char* pt_optim_save(pt_optim o, char** buf, int64_t* n) {
  BEGIN
  torch::serialize::OutputArchive ar;
  static_cast<Optim*>(o)->opt->save(ar);
  std::ostringstream ss;
  ar.save_to(ss);
  std::string s = ss.str();
  *buf = (char*)std::malloc(s.size() ? s.size() : 1);
  std::memcpy(*buf, s.data(), s.size());
  *n = (int64_t)s.size();
  END
}
char* pt_optim_load(pt_optim o, const char* buf, int64_t n) {
  BEGIN
  torch::serialize::InputArchive ar;
  ar.load_from(buf, (size_t)n);
  static_cast<Optim*>(o)->opt->load(ar);
  END
}
void pt_buf_free(char* buf) { std::free(buf); }

// ---- TorchScript ----
char* pt_jit_load(const char* path, int devtype, int devidx, pt_module* out) {
  BEGIN
  auto m = std::make_unique<torch::jit::Module>(torch::jit::load(path, device(devtype, devidx)));
  *out = m.release();
  END
}
void pt_jit_free(pt_module m) { delete static_cast<torch::jit::Module*>(m); }
char* pt_jit_forward(pt_module m, pt_tensor x, pt_tensor* out) {
  BEGIN
  std::vector<torch::jit::IValue> in{T(x)};
  auto r = static_cast<torch::jit::Module*>(m)->forward(in);
  if (!r.isTensor()) throw std::runtime_error("TorchScript forward did not return a single tensor");
  *out = wrap(r.toTensor());
  END
}
char* pt_jit_train(pt_module m, int on) { BEGIN static_cast<torch::jit::Module*>(m)->train(on != 0); END }
char* pt_jit_save(pt_module m, const char* path) { BEGIN static_cast<torch::jit::Module*>(m)->save(path); END }
char* pt_jit_to(pt_module m, int devtype, int devidx) {
  BEGIN static_cast<torch::jit::Module*>(m)->to(device(devtype, devidx)); END
}
char* pt_jit_named(pt_module m, int buffers, char** names, pt_tensor** ts, int* n) {
  BEGIN
  auto* mod = static_cast<torch::jit::Module*>(m);
  std::vector<std::pair<std::string, at::Tensor>> items;
  if (buffers) {
    for (const auto& b : mod->named_buffers(true)) items.emplace_back(b.name, b.value);
  } else {
    for (const auto& p : mod->named_parameters(true)) items.emplace_back(p.name, p.value);
  }
  std::string joined;
  for (size_t i = 0; i < items.size(); i++) {
    if (i) joined += '\n';
    joined += items[i].first;
  }
  *names = dupmsg(joined.c_str());
  *ts = (pt_tensor*)std::malloc(sizeof(pt_tensor) * (items.size() ? items.size() : 1));
  for (size_t i = 0; i < items.size(); i++) (*ts)[i] = wrap(items[i].second);
  *n = (int)items.size();
  END
}

}  // extern "C"
