// Rivera's population prior and variance penalty (see population_prior.h). Latents are small
// ([batch, latent]): one thread, double throughout, moments in two passes (the one-pass formula
// loses the variance when the means are large and close together). Fixed loop order: bit-identical
// results on every run.
#include "population_prior.h"

#include <cmath>
#include <new>
#include <vector>

namespace vx {

Status population_kl(double* loss, float* dmu, float* dlogvar, float* mean_out, float* var_out, const float* mu,
                     const float* logvar, int n, int l, PopulationVariance mode, float weight) {
  const char* op = "population_kl";
  if (!loss || !mu) return fail(Status::InvalidArgument, "%s: null loss or mu", op);
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "%s: n=%d l=%d must be >= 1", op, n, l);
  if (mode != PopulationVariance::Means && mode != PopulationVariance::Mixture)
    return fail(Status::InvalidArgument, "%s: unknown variance mode %d", op, static_cast<int>(mode));
  if (mode == PopulationVariance::Means && n < 2)
    return fail(Status::InvalidArgument,
                "%s: the population term needs a batch of at least 2 samples, got %d (the variance of one mean "
                "is 0 and log 0 = -inf); use batch >= 2, or the 'mixture' variance, which adds the posteriors' "
                "sigma^2 and is defined for a single sample",
                op, n);
  if (mode == PopulationVariance::Mixture && !logvar)
    return fail(Status::InvalidArgument, "%s: the mixture variance needs logvar", op);
  std::vector<double> m, v;
  try {
    m.assign(size_t(l), 0.0);
    v.assign(size_t(l), 0.0);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %d latent dimensions", op, l);
  }
  double total = 0;
  for (int k = 0; k < l; ++k) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += double(mu[int64_t(i) * l + k]);
    const double mk = s / double(n);
    double q = 0;
    for (int i = 0; i < n; ++i) {
      const double d = double(mu[int64_t(i) * l + k]) - mk;
      q += d * d;
    }
    double vk = q / double(n);
    if (mode == PopulationVariance::Mixture) {
      double e = 0;
      for (int i = 0; i < n; ++i) e += std::exp(double(logvar[int64_t(i) * l + k]));
      vk += e / double(n);
    }
    if (!std::isfinite(mk) || !std::isfinite(vk))
      return fail(Status::NotFinite, "%s: the batch mean or variance of latent dimension %d is not finite (mean %g, variance %g)",
                  op, k, mk, vk);
    if (!(vk > 0))
      return fail(Status::InvalidArgument,
                  "%s: the variance of the means in latent dimension %d is %g (all %d means equal): log of it is "
                  "undefined; use the 'mixture' variance or a batch of distinct samples",
                  op, k, vk, n);
    m[size_t(k)] = mk;
    v[size_t(k)] = vk;
    total += mk * mk + vk - std::log(vk) - 1.0;
  }
  const double w = double(weight);
  *loss = 0.5 * w * total;
  if (!std::isfinite(*loss)) return fail(Status::NotFinite, "%s: the loss is not finite", op);
  for (int k = 0; k < l; ++k) {
    const double mk = m[size_t(k)], vk = v[size_t(k)], c = 1.0 - 1.0 / vk;
    if (mean_out) mean_out[k] = static_cast<float>(mk);
    if (var_out) var_out[k] = static_cast<float>(vk);
    for (int i = 0; i < n; ++i) {
      const int64_t j = int64_t(i) * l + k;
      if (dmu) dmu[j] = static_cast<float>(double(dmu[j]) + w / double(n) * (mk + c * (double(mu[j]) - mk)));
      if (dlogvar && mode == PopulationVariance::Mixture)
        dlogvar[j] = static_cast<float>(double(dlogvar[j]) + w / (2.0 * double(n)) * c * std::exp(double(logvar[j])));
    }
  }
  return Status::Ok;
}

Status variance_penalty(double* loss, float* per_sample, float* dlogvar, const float* logvar, int n, int l, Reduction r,
                        float weight) {
  const char* op = "variance_penalty";
  if (!loss || !logvar) return fail(Status::InvalidArgument, "%s: null loss or logvar", op);
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "%s: n=%d l=%d must be >= 1", op, n, l);
  if (r != Reduction::Mean && r != Reduction::Sum)
    return fail(Status::InvalidArgument, "%s: unknown reduction %d", op, static_cast<int>(r));
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(n) : 1.0);
  double total = 0;
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < l; ++k) {
      const int64_t j = int64_t(i) * l + k;
      const double lv = double(logvar[j]), ev = std::exp(lv);
      s += ev - lv - 1.0;
      if (dlogvar) dlogvar[j] = static_cast<float>(double(dlogvar[j]) + scale * (ev - 1.0));
    }
    if (per_sample) per_sample[i] = static_cast<float>(s);
    total += s;
  }
  *loss = scale * total;
  if (!std::isfinite(*loss)) return fail(Status::NotFinite, "%s: the loss is not finite (a logvar is too large)", op);
  return Status::Ok;
}

}  // namespace vx
