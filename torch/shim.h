// C ABI over libtorch for package torch. Every function catches all C++ exceptions and returns them
// as a malloc'd error string (NULL on success); results come back through out-parameters. Tensors are
// opaque heap-allocated at::Tensor handles that Go frees with pt_free. No Go pointer is kept after a
// call returns.
#ifndef PROTOHERB_TORCH_SHIM_H
#define PROTOHERB_TORCH_SHIM_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

// Op codes of pt_unary, pt_binary, pt_scalar and pt_reduce: the one definition Go (ops.go) and C++
// (shim.cpp) both use.
typedef enum {
  PT_U_RELU = 0,
  PT_U_SQRT,
  PT_U_EXP,
  PT_U_LOG,
  PT_U_NEG,
  PT_U_SIGMOID,
  PT_U_TANH,
  PT_U_ABS,
  PT_U_SQUARE,
  PT_U_DETACH,
  PT_U_CLONE,
  PT_U_ALL_FINITE,
  PT_U_LEAKY_RELU,
  PT_U_ZEROS_LIKE,
  PT_U_ONES_LIKE,
} pt_unary_op;
typedef enum {
  PT_B_ADD = 0,
  PT_B_SUB,
  PT_B_MUL,
  PT_B_DIV,
  PT_B_MATMUL,
  PT_B_MM,
  PT_B_POW,
  PT_B_EQ,
  PT_B_MAXIMUM,
  PT_B_MINIMUM,
  PT_B_BMM,
  PT_B_GT,
  PT_B_LT,
} pt_binary_op;
typedef enum {
  PT_S_ADD = 0,
  PT_S_MUL,
  PT_S_POW,
  PT_S_DIV,
  PT_S_EQ,
  PT_S_GT,
  PT_S_LT,
  PT_S_FILL,
} pt_scalar_op;
typedef enum {
  PT_R_SUM = 0,
  PT_R_MEAN,
  PT_R_MAX,
  PT_R_MIN,
  PT_R_ARGMAX,
  PT_R_ARGMIN,
  PT_R_LOGSUMEXP,
  PT_R_VAR,
} pt_reduce_op;
// Random distributions of pt_rand and optimizers of pt_optim_new.
typedef enum {
  PT_RAND_NORMAL = 0,
  PT_RAND_UNIFORM,
} pt_rand_kind;
typedef enum {
  PT_OPTIM_SGD = 0,
  PT_OPTIM_ADAM,
  PT_OPTIM_ADAMW,
} pt_optim_kind;

typedef void* pt_tensor;
typedef void* pt_module;
typedef void* pt_optim;
// A convolution whose weight oneDNN has reordered once, ahead of the forward passes (pt_conv2d_prepack).
typedef void* pt_packed_conv;

// Library and process settings.
char* pt_version(char* buf, int n);
int pt_cuda_available(void);
// pt_set_cudnn_allow_tf32 sets whether cuDNN convolutions may use TF32 on GPUs that have it (libtorch's
// default: yes) and returns the previous setting.
int pt_set_cudnn_allow_tf32(int allow);
int pt_cuda_device_count(void);
void pt_set_num_threads(int n);
int pt_get_num_threads(void);
// pt_thread_num_threads: the calling OS thread's OpenMP count as it stands, not brought up to date.
int pt_thread_num_threads(void);
char* pt_manual_seed(uint64_t seed);
void pt_set_grad_enabled(int on);
int pt_is_grad_enabled(void);
char* pt_get_rng_state(pt_tensor* out);
char* pt_set_rng_state(pt_tensor state);

// Lifetime and metadata.
void pt_free(pt_tensor t);
int pt_defined(pt_tensor t);
int pt_dim(pt_tensor t);
void pt_sizes(pt_tensor t, int64_t* out);
int pt_dtype(pt_tensor t);
void pt_device(pt_tensor t, int* type, int* index);
int64_t pt_numel(pt_tensor t);
int pt_requires_grad(pt_tensor t);
int pt_is_contiguous(pt_tensor t);
void* pt_data_ptr(pt_tensor t);

// Creation and copies between Go and libtorch.
// pt_from_data copies data into a new tensor on the device (for a GPU: one host-to-device copy).
char* pt_from_data(const void* data, const int64_t* shape, int ndim, int dtype, int devtype, int devidx,
                   pt_tensor* out);
char* pt_copy_to(pt_tensor t, void* dst, int64_t nbytes);
char* pt_full(const int64_t* shape, int ndim, double value, int dtype, int devtype, int devidx, pt_tensor* out);
char* pt_rand(int kind, const int64_t* shape, int ndim, int dtype, int devtype, int devidx, pt_tensor* out);
char* pt_arange(int64_t n, int dtype, pt_tensor* out);
char* pt_to(pt_tensor t, int devtype, int devidx, int dtype, pt_tensor* out);
char* pt_shallow(pt_tensor t, pt_tensor* out);
char* pt_item(pt_tensor t, double* out);

// Autograd.
char* pt_set_requires_grad(pt_tensor t, int on);
char* pt_grad(pt_tensor t, pt_tensor* out);
char* pt_zero_grad(pt_tensor t);
char* pt_backward(pt_tensor t, pt_tensor grad, int retain_graph);
char* pt_copy_(pt_tensor dst, pt_tensor src);

// Shape operations.
char* pt_reshape(pt_tensor t, const int64_t* shape, int ndim, pt_tensor* out);
char* pt_permute(pt_tensor t, const int64_t* dims, int ndim, pt_tensor* out);
char* pt_transpose(pt_tensor t, int64_t a, int64_t b, pt_tensor* out);
char* pt_narrow(pt_tensor t, int64_t dim, int64_t start, int64_t length, pt_tensor* out);
char* pt_slice(pt_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, pt_tensor* out);
char* pt_select(pt_tensor t, int64_t dim, int64_t index, pt_tensor* out);
char* pt_index_select(pt_tensor t, int64_t dim, pt_tensor index, pt_tensor* out);
char* pt_cat(const pt_tensor* ts, int n, int64_t dim, int stack, pt_tensor* out);
char* pt_unsqueeze(pt_tensor t, int64_t dim, pt_tensor* out);
char* pt_squeeze(pt_tensor t, int64_t dim, pt_tensor* out);
char* pt_flatten(pt_tensor t, int64_t start, int64_t end, pt_tensor* out);
char* pt_expand(pt_tensor t, const int64_t* shape, int ndim, pt_tensor* out);
char* pt_contiguous(pt_tensor t, int channels_last, pt_tensor* out);

// Elementwise and reductions, selected by the op codes above.
char* pt_unary(int op, pt_tensor t, pt_tensor* out);
char* pt_binary(int op, pt_tensor a, pt_tensor b, pt_tensor* out);
char* pt_unary_(int op, pt_tensor t);
char* pt_binary_(int op, pt_tensor a, pt_tensor b);
char* pt_scalar(int op, pt_tensor t, double s, pt_tensor* out);
char* pt_reduce(int op, pt_tensor t, const int64_t* dims, int ndims, int keepdim, pt_tensor* out);
char* pt_softmax(int log, pt_tensor t, int64_t dim, pt_tensor* out);
char* pt_addmm(pt_tensor self, pt_tensor m1, pt_tensor m2, double beta, double alpha, pt_tensor* out);
char* pt_addmm_out(pt_tensor out, pt_tensor self, pt_tensor m1, pt_tensor m2, double beta, double alpha);
// pt_gemm_nt writes alpha * a @ b^T into out (beta 0: out is written, not read); pt_gemm_engine
// is 1 where that goes to oneDNN's sgemm, 0 where to at::addmm_out.
char* pt_gemm_nt(pt_tensor out, pt_tensor a, pt_tensor b, double alpha);
int pt_gemm_engine(void);
char* pt_topk(pt_tensor t, int64_t k, int64_t dim, int largest, pt_tensor* values, pt_tensor* indices);
char* pt_where(pt_tensor cond, pt_tensor a, pt_tensor b, pt_tensor* out);

// Neural-network functions.
char* pt_conv2d(pt_tensor x, pt_tensor w, pt_tensor b, const int64_t* stride, const int64_t* padding,
                const int64_t* dilation, int64_t groups, pt_tensor* out);
// Prepacked convolutions: libtorch's own mkldnn_prepacked::conv2d_prepack and conv2d_run, called
// through the dispatcher (libtorch ships no header for them). pt_conv2d_prepack_available is 1 where the
// loaded libtorch registers them. The weight is reordered into oneDNN's blocked layout for input of
// the shape and memory format of like (other inputs still run: oneDNN reorders as needed) and, with
// relu, ReLU is applied in the convolution's own pass over the output. Inference only: no autograd.
int pt_conv2d_prepack_available(void);
char* pt_conv2d_prepack(pt_tensor w, pt_tensor b, const int64_t* stride, const int64_t* padding,
                        const int64_t* dilation, int64_t groups, pt_tensor like, int relu, pt_packed_conv* out);
char* pt_conv2d_packed(pt_tensor x, pt_packed_conv p, pt_tensor* out);
void pt_packed_conv_free(pt_packed_conv p);
char* pt_batch_norm(pt_tensor x, pt_tensor w, pt_tensor b, pt_tensor rm, pt_tensor rv, int training,
                    double momentum, double eps, pt_tensor* out);
char* pt_max_pool2d(pt_tensor x, const int64_t* k, const int64_t* s, const int64_t* p, int ceil_mode, pt_tensor* out);
char* pt_avg_pool2d(pt_tensor x, const int64_t* k, const int64_t* s, const int64_t* p, pt_tensor* out);
char* pt_adaptive_avg_pool2d(pt_tensor x, int64_t h, int64_t w, pt_tensor* out);
char* pt_linear(pt_tensor x, pt_tensor w, pt_tensor b, pt_tensor* out);
char* pt_dropout(pt_tensor x, double p, int train, pt_tensor* out);
char* pt_cross_entropy(pt_tensor logits, pt_tensor target, double label_smoothing, int reduction, pt_tensor* out);
char* pt_nll_loss(pt_tensor logp, pt_tensor target, int reduction, pt_tensor* out);
char* pt_normalize(pt_tensor x, double p, int64_t dim, double eps, pt_tensor* out);
char* pt_cosine_similarity(pt_tensor a, pt_tensor b, int64_t dim, double eps, pt_tensor* out);
char* pt_sq_dist(pt_tensor a, pt_tensor b, pt_tensor* out);
char* pt_clamp(pt_tensor t, double lo, double hi, int has_lo, int has_hi, pt_tensor* out);

// Optimizers (torch::optim).
char* pt_optim_new(int kind, const pt_tensor* params, int n, double lr, double momentum, double dampening,
                   double weight_decay, int nesterov, double beta1, double beta2, double eps, pt_optim* out);
void pt_optim_free(pt_optim o);
char* pt_optim_step(pt_optim o);
char* pt_optim_zero_grad(pt_optim o);
char* pt_optim_set_lr(pt_optim o, double lr);
double pt_optim_get_lr(pt_optim o);
// pt_optim_save returns a malloc'd buffer the caller frees with pt_buf_free.
char* pt_optim_save(pt_optim o, char** buf, int64_t* n);
char* pt_optim_load(pt_optim o, const char* buf, int64_t n);
void pt_buf_free(char* buf);

// TorchScript modules (torch::jit).
char* pt_jit_load(const char* path, int devtype, int devidx, pt_module* out);
void pt_jit_free(pt_module m);
char* pt_jit_forward(pt_module m, pt_tensor x, pt_tensor* out);
char* pt_jit_train(pt_module m, int on);
char* pt_jit_save(pt_module m, const char* path);
char* pt_jit_to(pt_module m, int devtype, int devidx);
// pt_jit_named returns parameters (buffers=0) or buffers (buffers=1): n names joined by '\n' in a
// malloc'd string and n tensor handles in a malloc'd array; free both with pt_buf_free.
char* pt_jit_named(pt_module m, int buffers, char** names, pt_tensor** ts, int* n);

#ifdef __cplusplus
}
#endif
#endif
