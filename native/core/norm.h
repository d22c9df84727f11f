// batch_norm3d and instance_norm3d over NCDHW activations (PyTorch BatchNorm3d / InstanceNorm3d).
// Reference twins: norm_ref.h.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

struct NormShape {
  int n = 1;            // batch
  int c = 1;            // channels
  int64_t spatial = 1;  // D*H*W
  float eps = 1e-5f;
  float momentum = 0.1f;  // batch_norm3d running-statistics update
};

// A PReLU applied to the normalized values, y = prelu(norm(x)) (activation.h's prelu: slope [num_a],
// num_a 1 or c; dslope (+=) may be null), computed in one pass over memory each way without storing the
// normalized values: the Net fuses a norm with the PReLU that alone consumes it. The forward gives the
// same bits as the norm followed by prelu_forward. Backward recomputes the normalized values from x and
// the saved (float) statistics, as the unfused backward uses them, so it needs the norm's beta too (null:
// affine=False); a value within that rounding of 0 may take the other side of the kink than in forward.
template <class T>
struct NormPreluT {
  const T* slope = nullptr;
  int num_a = 1;
  T* dslope = nullptr;
  const T* beta = nullptr;  // backward only
};
using NormPrelu = NormPreluT<float>;

// Every function below takes an optional trailing `prelu` (null: the norm alone); with it, y and dy are
// the PReLU's output and output gradient, and dgamma, dbeta and prelu->dslope accumulate as usual.

// Training mode. Normalises with the batch mean and biased variance over (N, D, H, W); saves mean and
// 1/sqrt(var + eps) per channel for backward; updates running statistics as PyTorch does:
// running_mean = (1 - m) * running_mean + m * mean; running_var likewise with the UNBIASED variance
// (count/(count-1)). running_* may be null (track_running_stats=False). gamma/beta null: affine=False.
// Fails with InvalidArgument when n*spatial == 1 (PyTorch: "Expected more than 1 value per channel").
// save_mean/save_invstd ([c]) may be null when no backward follows.
Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                  float* running_var, const float* x, const float* gamma,
                                  const float* beta, const NormShape& s, const NormPrelu* prelu = nullptr);
// Eval mode: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* running_mean, const float* running_var, const NormShape& s,
                                 const NormPrelu* prelu = nullptr);
// Backward of the training-mode forward. dx (=), dgamma/dbeta (+=), each may be null.
Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                             const float* gamma, const float* save_mean, const float* save_invstd,
                             const NormShape& s, const NormPrelu* prelu = nullptr);
// Backward of the eval-mode forward (statistics are constants).
Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy,
                                  const float* x, const float* gamma, const float* running_mean,
                                  const float* running_var, const NormShape& s, const NormPrelu* prelu = nullptr);

// Instance norm: statistics per (n, c) over D*H*W, biased variance, no running statistics (PyTorch's
// default track_running_stats=False, so train and eval are the same). save_*: [n*c] (may be null).
// Fails with InvalidArgument when spatial == 1 (PyTorch: "Expected more than 1 spatial element").
Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                               const float* gamma, const float* beta, const NormShape& s,
                               const NormPrelu* prelu = nullptr);
Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                const float* gamma, const float* save_mean, const float* save_invstd,
                                const NormShape& s, const NormPrelu* prelu = nullptr);

}  // namespace vx
