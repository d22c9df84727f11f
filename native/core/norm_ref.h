// Reference twins of norm.h: plain single-threaded loops templated on the element type, two-pass
// statistics, no fusion (a fused PReLU is the norm, then prelu_forward_ref / prelu_backward_ref). Tests
// instantiate them in double (finite differences) and compare the optimized float kernels against them.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "activation_ref.h"
#include "norm.h"

namespace vx {

namespace ref_detail {

inline Status check_norm_shape(const char* op, const NormShape& s) {
  if (s.n < 1 || s.c < 1 || s.spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, s.n, s.c,
                static_cast<long long>(s.spatial));
  if (!(s.eps >= 0.0f)) return fail(Status::InvalidArgument, "%s: eps must be >= 0", op);
  return Status::Ok;
}

// y = prelu(y) in place (the fused PReLU's forward).
template <class T>
void prelu_in_place(T* y, const NormShape& s, const NormPreluT<T>& p) {
  prelu_forward_ref(y, y, p.slope, s.n, s.c, s.spatial, p.num_a);
}

// The gradient reaching the norm's output: dy back through the fused PReLU at the normalized values
// (x - mean) * invstd * gamma + beta, recomputed; the slope gradient accumulates into p.dslope.
template <class T>
std::vector<T> prelu_back(const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd, bool per_row,
                          const NormShape& s, const NormPreluT<T>& p) {
  const int64_t count = int64_t(s.n) * s.c * s.spatial;
  std::vector<T> v(static_cast<size_t>(count)), g(static_cast<size_t>(count));
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      const int64_t row = int64_t(n) * s.c + c, k = per_row ? row : c;
      for (int64_t i = 0; i < s.spatial; ++i) {
        const int64_t j = row * s.spatial + i;
        v[size_t(j)] = (x[j] - mean[k]) * invstd[k] * (gamma ? gamma[c] : T(1)) + (p.beta ? p.beta[c] : T(0));
      }
    }
  prelu_backward_ref(g.data(), p.dslope, dy, v.data(), p.slope, s.n, s.c, s.spatial, p.num_a);
  return g;
}

}  // namespace ref_detail

template <class T>
Status batch_norm3d_forward_train_ref(T* y, T* save_mean, T* save_invstd, T* running_mean,
                                      T* running_var, const T* x, const T* gamma, const T* beta,
                                      const NormShape& s, const NormPreluT<T>* prelu = nullptr) {
  if (prelu) {
    VX_TRY(batch_norm3d_forward_train_ref(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, s));
    ref_detail::prelu_in_place(y, s, *prelu);
    return Status::Ok;
  }
  VX_TRY(ref_detail::check_norm_shape("batch_norm3d_forward_train", s));
  if (!y || !x) return fail(Status::InvalidArgument, "batch_norm3d_forward_train: null y or x");
  const int64_t m = static_cast<int64_t>(s.n) * s.spatial;
  if (m < 2)
    return fail(Status::InvalidArgument,
                "batch_norm3d_forward_train: expected more than 1 value per channel (n*spatial = 1)");
  for (int c = 0; c < s.c; ++c) {
    T sum = 0;
    for (int n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.spatial; ++i) sum += x[(int64_t(n) * s.c + c) * s.spatial + i];
    const T mean = sum / T(m);
    T sq = 0;
    for (int n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.spatial; ++i) {
        T d = x[(int64_t(n) * s.c + c) * s.spatial + i] - mean;
        sq += d * d;
      }
    const T var = sq / T(m);
    const T invstd = T(1) / std::sqrt(var + T(s.eps));
    const T g = gamma ? gamma[c] : T(1), b = beta ? beta[c] : T(0);
    for (int n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.spatial; ++i) {
        int64_t k = (int64_t(n) * s.c + c) * s.spatial + i;
        y[k] = (x[k] - mean) * invstd * g + b;
      }
    if (save_mean) save_mean[c] = mean;
    if (save_invstd) save_invstd[c] = invstd;
    const T mom = T(s.momentum);
    if (running_mean) running_mean[c] = (T(1) - mom) * running_mean[c] + mom * mean;
    if (running_var) running_var[c] = (T(1) - mom) * running_var[c] + mom * (sq / T(m - 1));
  }
  return Status::Ok;
}

template <class T>
Status batch_norm3d_forward_eval_ref(T* y, const T* x, const T* gamma, const T* beta,
                                     const T* running_mean, const T* running_var, const NormShape& s,
                                     const NormPreluT<T>* prelu = nullptr) {
  if (prelu) {
    VX_TRY(batch_norm3d_forward_eval_ref(y, x, gamma, beta, running_mean, running_var, s));
    ref_detail::prelu_in_place(y, s, *prelu);
    return Status::Ok;
  }
  VX_TRY(ref_detail::check_norm_shape("batch_norm3d_forward_eval", s));
  if (!y || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "batch_norm3d_forward_eval: null y, x or running statistics");
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      const T invstd = T(1) / std::sqrt(running_var[c] + T(s.eps));
      const T g = gamma ? gamma[c] : T(1), b = beta ? beta[c] : T(0);
      for (int64_t i = 0; i < s.spatial; ++i) {
        int64_t k = (int64_t(n) * s.c + c) * s.spatial + i;
        y[k] = (x[k] - running_mean[c]) * invstd * g + b;
      }
    }
  return Status::Ok;
}

template <class T>
Status batch_norm3d_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                                 const T* save_mean, const T* save_invstd, const NormShape& s,
                                 const NormPreluT<T>* prelu = nullptr) {
  if (prelu && dy && x && save_mean && save_invstd) {
    const std::vector<T> g = ref_detail::prelu_back(dy, x, gamma, save_mean, save_invstd, false, s, *prelu);
    return batch_norm3d_backward_ref(dx, dgamma, dbeta, g.data(), x, gamma, save_mean, save_invstd, s);
  }
  VX_TRY(ref_detail::check_norm_shape("batch_norm3d_backward", s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "batch_norm3d_backward: null dy, x or saved statistics");
  const T m = T(int64_t(s.n) * s.spatial);
  for (int c = 0; c < s.c; ++c) {
    const T mean = save_mean[c], invstd = save_invstd[c];
    T sdy = 0, sdyxh = 0;
    for (int n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.spatial; ++i) {
        int64_t k = (int64_t(n) * s.c + c) * s.spatial + i;
        sdy += dy[k];
        sdyxh += dy[k] * (x[k] - mean) * invstd;
      }
    if (dbeta) dbeta[c] += sdy;
    if (dgamma) dgamma[c] += sdyxh;
    if (dx) {
      const T g = gamma ? gamma[c] : T(1);
      for (int n = 0; n < s.n; ++n)
        for (int64_t i = 0; i < s.spatial; ++i) {
          int64_t k = (int64_t(n) * s.c + c) * s.spatial + i;
          T xh = (x[k] - mean) * invstd;
          dx[k] = g * invstd * (dy[k] - sdy / m - xh * sdyxh / m);
        }
    }
  }
  return Status::Ok;
}

template <class T>
Status batch_norm3d_backward_eval_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
                                      const T* gamma, const T* running_mean, const T* running_var,
                                      const NormShape& s, const NormPreluT<T>* prelu = nullptr) {
  if (prelu && dy && x && running_mean && running_var) {
    std::vector<T> invstd(static_cast<size_t>(s.c));
    for (int c = 0; c < s.c; ++c) invstd[size_t(c)] = T(1) / std::sqrt(running_var[c] + T(s.eps));
    const std::vector<T> g = ref_detail::prelu_back(dy, x, gamma, running_mean, invstd.data(), false, s, *prelu);
    return batch_norm3d_backward_eval_ref(dx, dgamma, dbeta, g.data(), x, gamma, running_mean, running_var, s);
  }
  VX_TRY(ref_detail::check_norm_shape("batch_norm3d_backward_eval", s));
  if (!dy || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "batch_norm3d_backward_eval: null dy, x or running statistics");
  for (int c = 0; c < s.c; ++c) {
    const T invstd = T(1) / std::sqrt(running_var[c] + T(s.eps));
    const T g = gamma ? gamma[c] : T(1);
    T sdy = 0, sdyxh = 0;
    for (int n = 0; n < s.n; ++n)
      for (int64_t i = 0; i < s.spatial; ++i) {
        int64_t k = (int64_t(n) * s.c + c) * s.spatial + i;
        sdy += dy[k];
        sdyxh += dy[k] * (x[k] - running_mean[c]) * invstd;
        if (dx) dx[k] = dy[k] * g * invstd;
      }
    if (dbeta) dbeta[c] += sdy;
    if (dgamma) dgamma[c] += sdyxh;
  }
  return Status::Ok;
}

template <class T>
Status instance_norm3d_forward_ref(T* y, T* save_mean, T* save_invstd, const T* x, const T* gamma,
                                   const T* beta, const NormShape& s, const NormPreluT<T>* prelu = nullptr) {
  if (prelu) {
    VX_TRY(instance_norm3d_forward_ref(y, save_mean, save_invstd, x, gamma, beta, s));
    ref_detail::prelu_in_place(y, s, *prelu);
    return Status::Ok;
  }
  VX_TRY(ref_detail::check_norm_shape("instance_norm3d_forward", s));
  if (!y || !x) return fail(Status::InvalidArgument, "instance_norm3d_forward: null y or x");
  if (s.spatial < 2)
    return fail(Status::InvalidArgument,
                "instance_norm3d_forward: expected more than 1 spatial element (spatial = 1)");
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      const T* xr = x + (int64_t(n) * s.c + c) * s.spatial;
      T* yr = y + (int64_t(n) * s.c + c) * s.spatial;
      T sum = 0;
      for (int64_t i = 0; i < s.spatial; ++i) sum += xr[i];
      const T mean = sum / T(s.spatial);
      T sq = 0;
      for (int64_t i = 0; i < s.spatial; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
      const T invstd = T(1) / std::sqrt(sq / T(s.spatial) + T(s.eps));
      const T g = gamma ? gamma[c] : T(1), b = beta ? beta[c] : T(0);
      for (int64_t i = 0; i < s.spatial; ++i) yr[i] = (xr[i] - mean) * invstd * g + b;
      if (save_mean) save_mean[int64_t(n) * s.c + c] = mean;
      if (save_invstd) save_invstd[int64_t(n) * s.c + c] = invstd;
    }
  return Status::Ok;
}

template <class T>
Status instance_norm3d_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                                    const T* save_mean, const T* save_invstd, const NormShape& s,
                                    const NormPreluT<T>* prelu = nullptr) {
  if (prelu && dy && x && save_mean && save_invstd) {
    const std::vector<T> g = ref_detail::prelu_back(dy, x, gamma, save_mean, save_invstd, true, s, *prelu);
    return instance_norm3d_backward_ref(dx, dgamma, dbeta, g.data(), x, gamma, save_mean, save_invstd, s);
  }
  VX_TRY(ref_detail::check_norm_shape("instance_norm3d_backward", s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "instance_norm3d_backward: null dy, x or saved statistics");
  const T m = T(s.spatial);
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      const int64_t row = int64_t(n) * s.c + c;
      const T* xr = x + row * s.spatial;
      const T* dyr = dy + row * s.spatial;
      const T mean = save_mean[row], invstd = save_invstd[row];
      T sdy = 0, sdyxh = 0;
      for (int64_t i = 0; i < s.spatial; ++i) {
        sdy += dyr[i];
        sdyxh += dyr[i] * (xr[i] - mean) * invstd;
      }
      if (dbeta) dbeta[c] += sdy;
      if (dgamma) dgamma[c] += sdyxh;
      if (dx) {
        const T g = gamma ? gamma[c] : T(1);
        for (int64_t i = 0; i < s.spatial; ++i) {
          T xh = (xr[i] - mean) * invstd;
          dx[row * s.spatial + i] = g * invstd * (dyr[i] - sdy / m - xh * sdyxh / m);
        }
      }
    }
  return Status::Ok;
}

}  // namespace vx
