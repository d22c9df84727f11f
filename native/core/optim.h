// Optimizers over flat parameter buffers (PyTorch semantics), and gradient clipping.
// Reference twins: optim_ref.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "status.h"

namespace vx {

// Adam (L2 weight decay added to the gradient) or AdamW (decoupled: p *= 1 - lr * weightDecay).
enum class AdamKind : int32_t { Adam = 0, AdamW = 1 };

// The options of one optimizer step, spelled as the N-API options object (Adam.step({ lr, betas, eps,
// weightDecay, kind, gradScale })) and the TS OptimizerConfig spell them.
struct AdamOptions {
  float lr = 1e-3f;
  float betas[2] = {0.9f, 0.999f};
  float eps = 1e-8f;
  float weightDecay = 0.0f;
  AdamKind kind = AdamKind::Adam;
  // The gradient is multiplied by gradScale first, in place (clipping by a norm computed over several
  // networks: the clipped gradient is what is left behind, as torch's clip_grad_norm_ leaves it).
  float gradScale = 1.0f;
};

// AdamOptions holds floats, but PyTorch's hyperparameters are Python floats (doubles). adam_step and
// adam_step_ref therefore read every field as widen_decimal(field): the double nearest to the shortest
// decimal that rounds to that float (0.9f -> 0.9, 1e-4f -> 1e-4, 0.999f -> 0.999), which is what the
// user typed in JS or Python.
inline double widen_decimal(float f) {
  const double x = f;
  if (!std::isfinite(x) || x == 0.0) return x;
  static const double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const int e = static_cast<int>(std::floor(std::log10(std::fabs(x))));
  for (int digits = 1; digits <= 9; ++digits) {
    const int k = digits - 1 - e;  // candidate = round(x * 10^k) / 10^k
    if (k > 22 || k < -22) return x;
    // Both operands are exact doubles, so the quotient/product is the correctly rounded decimal.
    const double cand = k >= 0 ? std::nearbyint(x * kPow10[k]) / kPow10[k] : std::nearbyint(x / kPow10[-k]) * kPow10[-k];
    if (static_cast<float>(cand) == f) return cand;
  }
  return x;
}

// One step of torch.optim.Adam / AdamW (amsgrad=False, maximize=False) on n parameters, `step` being
// the 1-based step count after increment (bias corrections 1 - beta^step). m and v start at zero.
// Matches PyTorch's single-tensor algorithm: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
Status adam_step(float* param, float* m, float* v, float* grad, int64_t n, const AdamOptions& a, int64_t step);

// Global L2 norm of the gradient (accumulated in double).
double grad_norm(const float* grad, int64_t n);
// torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6); if coef < 1, grad *= coef.
// total_norm is passed in, so that a model whose gradients live in several buffers clips them jointly.
void clip_grad_scale(float* grad, int64_t n, double total_norm, double max_norm);

}  // namespace vx
