// Reference twins of population_prior.h: plain loops templated on the element type (double in the
// tests), written straight from the formulas, moments in two passes.
#pragma once
#include <cmath>
#include <vector>

#include "population_prior.h"

namespace vx {

template <class T>
Status population_kl_ref(double* loss, T* dmu, T* dlogvar, T* mean_out, T* var_out, const T* mu, const T* logvar,
                         int n, int l, PopulationVariance mode, float weight) {
  if (!loss || !mu) return fail(Status::InvalidArgument, "population_kl: null loss or mu");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "population_kl: n=%d l=%d must be >= 1", n, l);
  if (mode == PopulationVariance::Means && n < 2)
    return fail(Status::InvalidArgument, "population_kl: needs a batch of at least 2 (n=%d)", n);
  if (mode == PopulationVariance::Mixture && !logvar)
    return fail(Status::InvalidArgument, "population_kl: mixture variance needs logvar");
  std::vector<T> m(l, T(0)), v(l, T(0));
  for (int k = 0; k < l; ++k) {
    for (int i = 0; i < n; ++i) m[k] += mu[i * l + k];
    m[k] /= T(n);
    for (int i = 0; i < n; ++i) v[k] += (mu[i * l + k] - m[k]) * (mu[i * l + k] - m[k]);
    v[k] /= T(n);
    if (mode == PopulationVariance::Mixture) {
      T s = 0;
      for (int i = 0; i < n; ++i) s += std::exp(logvar[i * l + k]);
      v[k] += s / T(n);
    }
    if (!(v[k] > T(0))) return fail(Status::InvalidArgument, "population_kl: variance of dimension %d is %g", k, double(v[k]));
  }
  T total = 0;
  for (int k = 0; k < l; ++k) total += m[k] * m[k] + v[k] - std::log(v[k]) - T(1);
  *loss = double(T(0.5) * T(weight) * total);
  for (int k = 0; k < l; ++k) {
    if (mean_out) mean_out[k] = m[k];
    if (var_out) var_out[k] = v[k];
    const T c = T(1) - T(1) / v[k];
    for (int i = 0; i < n; ++i) {
      if (dmu) dmu[i * l + k] += T(weight) / T(n) * (m[k] + c * (mu[i * l + k] - m[k]));
      if (dlogvar && mode == PopulationVariance::Mixture)
        dlogvar[i * l + k] += T(weight) / T(2 * n) * c * std::exp(logvar[i * l + k]);
    }
  }
  return Status::Ok;
}

template <class T>
Status variance_penalty_ref(double* loss, T* per_sample, T* dlogvar, const T* logvar, int n, int l, Reduction r,
                            float weight) {
  if (!loss || !logvar) return fail(Status::InvalidArgument, "variance_penalty: null loss or logvar");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "variance_penalty: n=%d l=%d must be >= 1", n, l);
  const T scale = T(weight) * (r == Reduction::Mean ? T(1) / T(n) : T(1));
  T total = 0;
  for (int i = 0; i < n; ++i) {
    T s = 0;
    for (int k = 0; k < l; ++k) {
      const T lv = logvar[i * l + k];
      s += std::exp(lv) - lv - T(1);
      if (dlogvar) dlogvar[i * l + k] += scale * (std::exp(lv) - T(1));
    }
    if (per_sample) per_sample[i] = s;
    total += s;
  }
  *loss = double(scale * total);
  return Status::Ok;
}

}  // namespace vx
