// Reference twins of loss.h: plain single-threaded loops templated on the element type; the loss is
// accumulated in T (double in the tests), the softmax of dice_loss is materialized.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "loss.h"
#include "rng.h"

namespace vx {

namespace loss_ref_detail {

inline Status check_elementwise(const char* op, double* loss, int64_t count, const void* x, const void* t) {
  if (!loss) return fail(Status::InvalidArgument, "%s: null loss", op);
  if (count < 1) return fail(Status::InvalidArgument, "%s: count %lld < 1", op, static_cast<long long>(count));
  if (!x || !t) return fail(Status::InvalidArgument, "%s: null input or target", op);
  return Status::Ok;
}

template <class T>
T sign_of(T d) {
  return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
}

}  // namespace loss_ref_detail

template <class T>
Status dice_loss_ref(double* loss, T* grad, const T* logits, const T* labels, int n, int c, int64_t spatial,
                     const DiceOptions& o) {
  const float smooth_nr = o.smoothNr, smooth_dr = o.smoothDr, weight = o.weight;
  const Reduction r = o.reduction;
  if (!loss || !logits || !labels) return fail(Status::InvalidArgument, "dice_loss: null loss, logits or labels");
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "dice_loss: n=%d c=%d spatial=%lld must all be >= 1", n, c,
                static_cast<long long>(spatial));
  std::vector<int> lab(static_cast<size_t>(n) * spatial);
  for (size_t i = 0; i < lab.size(); ++i) {
    const T l = labels[i];
    if (!(l >= T(0) && l < T(c) && l == std::floor(l)))
      return fail(Status::InvalidArgument, "dice_loss: label %g at index %lld is not a class in 0..%d",
                  double(l), static_cast<long long>(i), c - 1);
    lab[i] = static_cast<int>(l);
  }
  const int64_t total = int64_t(n) * c * spatial;
  std::vector<T> p(static_cast<size_t>(total));
  for (int in = 0; in < n; ++in)
    for (int64_t s = 0; s < spatial; ++s) {
      const int64_t base = int64_t(in) * c * spatial + s;
      T mx = logits[base];
      for (int k = 1; k < c; ++k) mx = std::fmax(mx, logits[base + k * spatial]);
      T sum = 0;
      for (int k = 0; k < c; ++k) sum += std::exp(logits[base + k * spatial] - mx);
      for (int k = 0; k < c; ++k) p[base + k * spatial] = std::exp(logits[base + k * spatial] - mx) / sum;
    }
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(int64_t(n) * c) : T(1));
  T total_loss = 0;
  std::vector<T> num(static_cast<size_t>(n) * c), den(static_cast<size_t>(n) * c);
  for (int in = 0; in < n; ++in)
    for (int k = 0; k < c; ++k) {
      T inter = 0, g = 0, ps = 0;
      for (int64_t s = 0; s < spatial; ++s) {
        const T pv = p[(int64_t(in) * c + k) * spatial + s];
        const T gv = lab[int64_t(in) * spatial + s] == k ? T(1) : T(0);
        inter += pv * gv;
        g += gv;
        ps += pv;
      }
      num[in * c + k] = T(2) * inter + T(smooth_nr);
      den[in * c + k] = g + ps + T(smooth_dr);
      total_loss += T(1) - num[in * c + k] / den[in * c + k];
    }
  *loss = double(total_loss * scale);
  if (!grad) return Status::Ok;
  // dL/dp then back through the softmax.
  std::vector<T> dp(static_cast<size_t>(total));
  for (int in = 0; in < n; ++in)
    for (int k = 0; k < c; ++k)
      for (int64_t s = 0; s < spatial; ++s) {
        const T nu = num[in * c + k], de = den[in * c + k];
        const T gv = lab[int64_t(in) * spatial + s] == k ? T(1) : T(0);
        dp[(int64_t(in) * c + k) * spatial + s] = scale * (-T(2) * gv / de + nu / (de * de));
      }
  for (int in = 0; in < n; ++in)
    for (int64_t s = 0; s < spatial; ++s) {
      const int64_t base = int64_t(in) * c * spatial + s;
      T dot = 0;
      for (int k = 0; k < c; ++k) dot += dp[base + k * spatial] * p[base + k * spatial];
      for (int k = 0; k < c; ++k) grad[base + k * spatial] = p[base + k * spatial] * (dp[base + k * spatial] - dot);
    }
  return Status::Ok;
}

template <class T>
Status bce_with_logits_loss_ref(double* loss, T* grad, const T* x, const T* t, int64_t count, Reduction r,
                                float weight) {
  VX_TRY(loss_ref_detail::check_elementwise("bce_with_logits_loss", loss, count, x, t));
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(count) : T(1));
  T sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    sum += std::fmax(x[i], T(0)) - x[i] * t[i] + std::log1p(std::exp(-std::fabs(x[i])));
    if (grad) grad[i] = scale * (T(1) / (T(1) + std::exp(-x[i])) - t[i]);
  }
  *loss = double(sum * scale);
  return Status::Ok;
}

template <class T>
Status mse_loss_ref(double* loss, T* grad, const T* x, const T* t, int64_t count, Reduction r, float weight) {
  VX_TRY(loss_ref_detail::check_elementwise("mse_loss", loss, count, x, t));
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(count) : T(1));
  T sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const T d = x[i] - t[i];
    sum += d * d;
    if (grad) grad[i] = scale * T(2) * d;
  }
  *loss = double(sum * scale);
  return Status::Ok;
}

template <class T>
Status l1_loss_ref(double* loss, T* grad, const T* x, const T* t, int64_t count, Reduction r, float weight) {
  VX_TRY(loss_ref_detail::check_elementwise("l1_loss", loss, count, x, t));
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(count) : T(1));
  T sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const T d = x[i] - t[i];
    sum += std::fabs(d);
    if (grad) grad[i] = scale * loss_ref_detail::sign_of(d);
  }
  *loss = double(sum * scale);
  return Status::Ok;
}

template <class T>
Status kl_normal_ref(double* loss, T* per_sample, T* dmu, T* dlogvar, const T* mu, const T* logvar, int n, int l,
                     Reduction r, float weight) {
  if (!loss || !mu || !logvar) return fail(Status::InvalidArgument, "kl_normal: null loss, mu or logvar");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "kl_normal: n=%d l=%d must be >= 1", n, l);
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(n) : T(1));
  T total = 0;
  for (int i = 0; i < n; ++i) {
    T s = 0;
    for (int k = 0; k < l; ++k) {
      const int64_t j = int64_t(i) * l + k;
      s += T(1) + logvar[j] - mu[j] * mu[j] - std::exp(logvar[j]);
      if (dmu) dmu[j] += scale * mu[j];
      if (dlogvar) dlogvar[j] += scale * T(0.5) * (std::exp(logvar[j]) - T(1));
    }
    if (per_sample) per_sample[i] = T(-0.5) * s;
    total += T(-0.5) * s;
  }
  *loss = double(total * scale);
  return Status::Ok;
}

template <class T>
Status reparameterize_forward_ref(T* z, T* eps, const T* mu, const T* logvar, int n, int l, LatentMode mode,
                                  uint64_t seed, uint64_t step) {
  if (!z || !mu || !logvar) return fail(Status::InvalidArgument, "reparameterize_forward: null z, mu or logvar");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "reparameterize_forward: n=%d l=%d must be >= 1", n, l);
  if (mode != LatentMode::Sample && mode != LatentMode::Mean && mode != LatentMode::MeanPlusStd)
    return fail(Status::InvalidArgument, "reparameterize_forward: unknown mode %d", static_cast<int>(mode));
  for (int64_t i = 0; i < int64_t(n) * l; ++i) {
    T e = mode == LatentMode::Sample ? T(philox_normal(seed, step, static_cast<uint64_t>(i)))
                                     : (mode == LatentMode::Mean ? T(0) : T(1));
    z[i] = mode == LatentMode::Mean ? mu[i] : mu[i] + std::exp(T(0.5) * logvar[i]) * e;
    if (eps) eps[i] = e;
  }
  return Status::Ok;
}

template <class T>
Status reparameterize_backward_ref(T* dmu, T* dlogvar, const T* dz, const T* eps, const T* logvar, int n, int l) {
  if (!dz) return fail(Status::InvalidArgument, "reparameterize_backward: null dz");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "reparameterize_backward: n=%d l=%d must be >= 1", n, l);
  if (dlogvar && (!eps || !logvar))
    return fail(Status::InvalidArgument, "reparameterize_backward: dlogvar needs eps and logvar");
  for (int64_t i = 0; i < int64_t(n) * l; ++i) {
    if (dmu) dmu[i] += dz[i];
    if (dlogvar) dlogvar[i] += dz[i] * eps[i] * T(0.5) * std::exp(T(0.5) * logvar[i]);
  }
  return Status::Ok;
}

}  // namespace vx
