// CUDA twins of the native/core ops: the same names, argument order and semantics (see the core
// headers: outputs first, input gradients overwritten, parameter gradients accumulated), all pointers
// on the device, work enqueued on `st` (nothing synchronises unless it returns a host value). Scalar
// results (losses) are written to a device double so that a step needs one synchronisation, not one
// per loss. Every reduction has a fixed order (no float atomics), so results are reproducible run to run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "activation.h"
#include "conv3d.h"
#include "loss.h"
#include "norm.h"
#include "optim.h"
#include "status.h"

namespace vx {
namespace cuda {

class Context;

bool kernels_loadable();  // false when the binary has no image for the current device

// activation.cu
Status relu_forward(float* y, const float* x, int64_t count, cudaStream_t st);
Status relu_backward(float* dx, const float* dy, const float* x, int64_t count, cudaStream_t st);
Status prelu_forward(float* y, const float* x, const float* a, int n, int c, int64_t spatial, int num_a, cudaStream_t st);
Status prelu_backward(float* dx, float* da, const float* dy, const float* x, const float* a, int n, int c, int64_t spatial,
                      int num_a, cudaStream_t st);
Status leaky_relu_forward(float* y, const float* x, int64_t count, float slope, cudaStream_t st);
Status leaky_relu_backward(float* dx, const float* dy, const float* x, int64_t count, float slope, cudaStream_t st);
Status sigmoid_forward(float* y, const float* x, int64_t count, cudaStream_t st);
Status sigmoid_backward(float* dx, const float* dy, const float* y, int64_t count, cudaStream_t st);
Status softmax_forward(float* y, const float* x, int n, int c, int64_t spatial, cudaStream_t st);
Status softmax_backward(float* dx, const float* dy, const float* y, int n, int c, int64_t spatial, cudaStream_t st);
// The model's output activation (activation.h OutputActivation): y may equal x.
Status output_activation_forward(float* y, const float* x, OutputActivation a, int n, int c, int64_t spatial, cudaStream_t st);
Status output_activation_backward(float* dx, const float* dy, const float* y, OutputActivation a, int n, int c, int64_t spatial,
                                  cudaStream_t st);
Status add_forward(float* y, const float* a, const float* b, int64_t count, cudaStream_t st);
Status add_inplace(float* y, const float* a, int64_t count, cudaStream_t st);  // y += a
Status scale_inplace(float* y, float s, int64_t count, cudaStream_t st);
// seed/step read from device memory (args[0], args[1]) so that a captured graph replays new steps.
Status dropout_forward(float* y, float* mask, const float* x, int64_t count, float p, const uint64_t* seed_step,
                       uint64_t step_mul, uint64_t step_add, cudaStream_t st);
Status dropout_backward(float* dx, const float* dy, const float* mask, int64_t count, cudaStream_t st);

// Per-channel sums over [n, c, spatial] (fixed order, double): out[c] = sum of v over (n, spatial).
Status channel_sum(double* out, const float* v, int n, int c, int64_t spatial, cudaStream_t st);

// norm.cu (save_* and running_* on the device)
Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                                  const float* x, const float* gamma, const float* beta, const NormShape& s, cudaStream_t st);
Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta, const float* running_mean,
                                 const float* running_var, const NormShape& s, cudaStream_t st);
Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                             const float* save_mean, const float* save_invstd, const NormShape& s, cudaStream_t st);
Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                                  const float* running_mean, const float* running_var, const NormShape& s, cudaStream_t st);
Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x, const float* gamma,
                               const float* beta, const NormShape& s, cudaStream_t st);
Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                                const float* save_mean, const float* save_invstd, const NormShape& s, cudaStream_t st);

// linear.cu
Status linear_forward(float* y, const float* x, const float* w, const float* b, int n, int in, int out, cudaStream_t st);
Status linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int n, int in, int out,
                       cudaStream_t st);

// conv3d.cu: cuDNN when built and enabled, else direct kernels (use_cudnn = false forces those). Work is
// queued on st (a model's stream); ctx gives the precision / determinism options.
Status conv3d_forward(Context& ctx, float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                      cudaStream_t st, bool use_cudnn = true);
Status conv3d_backward(Context& ctx, float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const Conv3dShape& s, cudaStream_t st, bool use_cudnn = true);
Status conv_transpose3d_forward(Context& ctx, float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                                cudaStream_t st, bool use_cudnn = true);
Status conv_transpose3d_backward(Context& ctx, float* dx, float* dw, float* db, const float* dy, const float* x,
                                 const float* w, const Conv3dShape& s, cudaStream_t st, bool use_cudnn = true);

// loss.cu: *loss is a device double. labels are class indices as floats; a bad label sets *bad (device
// int, may be null) to 1 + its index, checked by the caller after synchronising.
Status dice_loss(double* loss, float* grad, const float* logits, const float* labels, int n, int c, int64_t spatial,
                 const DiceOptions& o, int64_t* bad, cudaStream_t st);
Status bce_with_logits_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
                            cudaStream_t st);
Status mse_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
                cudaStream_t st);
Status l1_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
               cudaStream_t st);
Status kl_normal(double* loss, float* per_sample, float* dmu, float* dlogvar, const float* mu, const float* logvar, int n,
                 int l, Reduction r, float weight, cudaStream_t st);

// rng.cu: the Philox4x32-10 stream of native/core/rng.h, element for element.
Status philox_normal_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset, cudaStream_t st);
Status philox_uniform_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset, cudaStream_t st);
Status reparameterize_forward(float* z, float* eps, const float* mu, const float* logvar, int n, int l, LatentMode mode,
                              uint64_t seed, uint64_t step, cudaStream_t st);
Status reparameterize_backward(float* dmu, float* dlogvar, const float* dz, const float* eps, const float* logvar, int n, int l,
                               cudaStream_t st);

// optim.cu: Adam/AdamW with the gradient scale (clipping) fused in; grad_sumsq to a device double.
Status adam_step(float* param, float* m, float* v, float* grad, int64_t n, const AdamOptions& a, int64_t step, cudaStream_t st);
Status grad_sumsq(double* out, const float* grad, int64_t n, cudaStream_t st);

}  // namespace cuda
}  // namespace vx
