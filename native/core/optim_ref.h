// Reference twins of optim.h: Adam/AdamW, the gradient norm and clipping, computed entirely in T
// (double in the tests), following the formulas of optim.h literally.
#pragma once
#include <cmath>
#include <cstdint>

#include "optim.h"

namespace vx {

namespace optim_ref_detail {

inline Status check_adam(const char* op, const void* param, const void* m, const void* v, const void* grad,
                         int64_t n, const AdamOptions& a, int64_t step) {
  if (n < 0) return fail(Status::InvalidArgument, "%s: n %lld < 0", op, static_cast<long long>(n));
  if (n > 0 && (!param || !m || !v || !grad)) return fail(Status::InvalidArgument, "%s: null buffer", op);
  if (step < 1) return fail(Status::InvalidArgument, "%s: step %lld < 1", op, static_cast<long long>(step));
  if (!(a.lr >= 0.0f) || !(a.eps >= 0.0f) || !(a.weightDecay >= 0.0f))
    return fail(Status::InvalidArgument, "%s: lr, eps and weightDecay must be >= 0", op);
  if (!(a.betas[0] >= 0.0f && a.betas[0] < 1.0f) || !(a.betas[1] >= 0.0f && a.betas[1] < 1.0f))
    return fail(Status::InvalidArgument, "%s: betas must be in [0, 1)", op);
  return Status::Ok;
}

}  // namespace optim_ref_detail

template <class T>
Status adam_step_ref(T* param, T* m, T* v, T* grad, int64_t n, const AdamOptions& a, int64_t step) {
  VX_TRY(optim_ref_detail::check_adam("adam_step", param, m, v, grad, n, a, step));
  const T lr = T(widen_decimal(a.lr)), b1 = T(widen_decimal(a.betas[0])), b2 = T(widen_decimal(a.betas[1]));
  const T eps = T(widen_decimal(a.eps)), wd = T(widen_decimal(a.weightDecay));
  const T bc1 = T(1) - std::pow(b1, T(step)), bc2 = T(1) - std::pow(b2, T(step));
  for (int64_t i = 0; i < n; ++i) {
    if (a.gradScale != 1.0f) grad[i] *= T(a.gradScale);
    T g = grad[i];
    if (wd != T(0)) {
      if (a.kind == AdamKind::AdamW)
        param[i] *= T(1) - lr * wd;
      else
        g += wd * param[i];
    }
    m[i] = b1 * m[i] + (T(1) - b1) * g;
    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
    param[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + eps);
  }
  return Status::Ok;
}

template <class T>
double grad_norm_ref(const T* grad, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += grad[i] * grad[i];
  return double(std::sqrt(s));
}

template <class T>
void clip_grad_scale_ref(T* grad, int64_t n, double total_norm, double max_norm) {
  const double coef = max_norm / (total_norm + 1e-6);
  if (!(coef < 1.0)) return;
  for (int64_t i = 0; i < n; ++i) grad[i] *= T(coef);
}

}  // namespace vx
