// Optimizers over flat parameter buffers (PyTorch semantics), and gradient clipping.
// Reference twins: optim_ref.h.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

struct AdamParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;  // false: Adam (L2 added to the gradient); true: AdamW (p *= 1 - lr * wd)
};

// One step of torch.optim.Adam / AdamW (amsgrad=False, maximize=False) on n parameters, `step` being
// the 1-based step count after increment (bias corrections 1 - beta^step). m and v start at zero.
// Matches PyTorch's single-tensor algorithm: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
Status adam_step(float* param, float* m, float* v, const float* grad, int64_t n, const AdamParams& a,
                 int64_t step);

// Global L2 norm of the gradient (accumulated in double).
double grad_norm(const float* grad, int64_t n);
// torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6); if coef < 1, grad *= coef.
// total_norm is passed in, so that a model whose gradients live in several buffers clips them jointly.
void clip_grad_scale(float* grad, int64_t n, double total_norm, double max_norm);

}  // namespace vx
