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

// Training mode. Normalises with the batch mean and biased variance over (N, D, H, W); saves mean and
// 1/sqrt(var + eps) per channel for backward; updates running statistics as PyTorch does:
// running_mean = (1 - m) * running_mean + m * mean; running_var likewise with the UNBIASED variance
// (count/(count-1)). running_* may be null (track_running_stats=False). gamma/beta null: affine=False.
// Fails with InvalidArgument when n*spatial == 1 (PyTorch: "Expected more than 1 value per channel").
// save_mean/save_invstd ([c]) may be null when no backward follows.
Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                  float* running_var, const float* x, const float* gamma,
                                  const float* beta, const NormShape& s);
// Eval mode: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* running_mean, const float* running_var, const NormShape& s);
// Backward of the training-mode forward. dx (=), dgamma/dbeta (+=), each may be null.
Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                             const float* gamma, const float* save_mean, const float* save_invstd,
                             const NormShape& s);
// Backward of the eval-mode forward (statistics are constants).
Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy,
                                  const float* x, const float* gamma, const float* running_mean,
                                  const float* running_var, const NormShape& s);

// Instance norm: statistics per (n, c) over D*H*W, biased variance, no running statistics (PyTorch's
// default track_running_stats=False, so train and eval are the same). save_*: [n*c] (may be null).
// Fails with InvalidArgument when spatial == 1 (PyTorch: "Expected more than 1 spatial element").
Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                               const float* gamma, const float* beta, const NormShape& s);
Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                const float* gamma, const float* save_mean, const float* save_invstd,
                                const NormShape& s);

}  // namespace vx
