// Adam/AdamW, gradient norm and clipping over flat float32 buffers (see optim.h).
// adam_step follows torch.optim.Adam's single-tensor path (_single_tensor_adam, amsgrad=False,
// capturable=False) with the hyperparameters as Python would hold them (widen_decimal), but evaluates
// each element's update in double and rounds param, m and v once: PyTorch's chain of float tensor ops
// loses precision where m or the new parameter nearly cancel, and its vectorized lerp may use FMA, so
// bit-identity with PyTorch is out of reach either way; this keeps every step within one rounding of the
// exact algorithm.
#include "optim.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "parallel.h"

namespace vx {

namespace {

constexpr int64_t kGrain = 1 << 15;  // parameters per parallel chunk at least
constexpr int64_t kBlock = 1 << 14;  // values per reduction block of grad_norm

}  // namespace

Status adam_step(float* param, float* m, float* v, float* grad, int64_t n, const AdamOptions& a, int64_t step) {
  const char* op = "adam_step";
  if (n < 0) return fail(Status::InvalidArgument, "%s: n %lld < 0", op, static_cast<long long>(n));
  if (n > 0 && (!param || !m || !v || !grad)) return fail(Status::InvalidArgument, "%s: null buffer", op);
  if (step < 1) return fail(Status::InvalidArgument, "%s: step %lld < 1", op, static_cast<long long>(step));
  if (!(a.lr >= 0.0f) || !(a.eps >= 0.0f) || !(a.weightDecay >= 0.0f))
    return fail(Status::InvalidArgument, "%s: lr, eps and weightDecay must be >= 0", op);
  if (!(a.betas[0] >= 0.0f && a.betas[0] < 1.0f) || !(a.betas[1] >= 0.0f && a.betas[1] < 1.0f))
    return fail(Status::InvalidArgument, "%s: betas must be in [0, 1)", op);

  const double lr = widen_decimal(a.lr), b1 = widen_decimal(a.betas[0]), b2 = widen_decimal(a.betas[1]);
  const double eps = widen_decimal(a.eps), wd = widen_decimal(a.weightDecay);
  const double bc1 = 1.0 - std::pow(b1, double(step)), bc2 = 1.0 - std::pow(b2, double(step));
  const bool decoupled = a.kind == AdamKind::AdamW;
  const bool l2 = wd != 0.0 && !decoupled, decay = wd != 0.0 && decoupled;
  const float scale = a.gradScale;
  const double shrink = 1.0 - lr * wd, step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float gf = grad[i];
      if (scale != 1.0f) {
        gf *= scale;
        grad[i] = gf;
      }
      double p = param[i], g = gf, mi = m[i], vi = v[i];
      if (l2) g += wd * p;
      if (decay) p *= shrink;
      mi += (1.0 - b1) * (g - mi);  // exp_avg.lerp_(grad, 1 - beta1)
      vi = vi * b2 + (1.0 - b2) * g * g;
      p -= step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
      param[i] = static_cast<float>(p);
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
    }
  });
  return Status::Ok;
}

double grad_norm(const float* grad, int64_t n) {
  if (!grad || n <= 0) return 0.0;
  auto block_sum = [&](int64_t lo, int64_t hi) {
    double acc[4] = {0, 0, 0, 0};
    for (int64_t i = lo; i < hi; ++i) acc[i & 3] += double(grad[i]) * grad[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
  };
  const int64_t nb = blocks_per_row(n, kBlock);
  std::vector<double> part;
  try {
    part.assign(static_cast<size_t>(nb), 0.0);
  } catch (const std::bad_alloc&) {
    // No room for the partials: the same blocks, serially, give the same value.
    double s = 0;
    for (int64_t b = 0; b < nb; ++b) s += block_sum(b * kBlock, std::min(n, (b + 1) * kBlock));
    return std::sqrt(s);
  }
  parallel_for_blocks(1, n, kBlock, kGrain, [&](int64_t item, int64_t, int64_t lo, int64_t hi) {
    part[static_cast<size_t>(item)] = block_sum(lo, hi);
  });
  double s = 0;
  for (double v : part) s += v;
  return std::sqrt(s);
}

void clip_grad_scale(float* grad, int64_t n, double total_norm, double max_norm) {
  if (!grad || n <= 0) return;
  const double coef = max_norm / (total_norm + 1e-6);
  if (!(coef < 1.0)) return;  // PyTorch multiplies by min(coef, 1): a no-op above 1
  const float c = static_cast<float>(coef);
  parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) grad[i] *= c;
  });
}

}  // namespace vx
