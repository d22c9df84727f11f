// Rivera's split of the VAE's KL term ("How to train your VAE", arXiv 2309.13160; official code
// marianorivera/How2TrainUrVAE, VAE_GAN.train_step): a population prior on the batch of means and a
// per-sample variance regulariser. Reference twins: population_prior_ref.h.
//
// mu, logvar: [n, l] (n samples, l latent dimensions), row-major. Both ops write their value to *loss
// (accumulated in double) and ADD d(loss)/d(input) into dmu / dlogvar (+=, like kl_normal: these
// usually already hold the reconstruction's gradient through the reparameterization); either
// gradient pointer may be null.
#pragma once
#include <cstdint>

#include "loss.h"
#include "status.h"

namespace vx {

// Which per-dimension variance the population Gaussian gets.
enum class PopulationVariance : int32_t {
  // v_k = Var_i(mu_ik), biased (/n): what the official code computes (tf.math.reduce_variance).
  // Undefined for n = 1 (v = 0, log v = -inf): refused with InvalidArgument.
  Means = 0,
  // v_k = Var_i(mu_ik) + mean_i exp(logvar_ik): the second moment of the mixture (1/n) sum_i
  // N(mu_i, sigma_i^2), i.e. the moment-matched Gaussian of the aggregate posterior. Defined for n = 1.
  Mixture = 1,
};

// L_pop = weight * 0.5 * sum_k (m_k^2 + v_k - log v_k - 1) = weight * KL(N(m, diag v) || N(0, I)),
// m_k = (1/n) sum_i mu_ik, v_k per `mode`. Every sample's gradient depends on the whole batch:
//   dL/dmu_ik     = weight/n * (m_k + (1 - 1/v_k) (mu_ik - m_k))
//   dL/dlogvar_ik = weight/(2n) * (1 - 1/v_k) exp(logvar_ik)          (Mixture only; 0 for Means)
// mean_out, var_out [l] (may be null) receive m and v. logvar may be null in Means mode.
// A v_k that is not > 0 (identical means in Means mode, n = 1) fails with InvalidArgument / NotFinite
// naming k: never a NaN or Inf loss.
Status population_kl(double* loss, float* dmu, float* dlogvar, float* mean_out, float* var_out, const float* mu,
                     const float* logvar, int n, int l, PopulationVariance mode, float weight);

// L_ind = weight * R_i [ sum_k (exp(logvar_ik) - logvar_ik - 1) ], R = mean (official: w = 0.1) or sum
// over the batch: the sigma-only part of 2 KL(N(mu, sigma^2) || N(0, 1)); keeps sigma away from 0
// without pulling mu to 0.  dL/dlogvar_ik = weight * r * (exp(logvar_ik) - 1), r = 1/n or 1.
// per_sample [n] (may be null) gets each sample's unweighted sum over k.
Status variance_penalty(double* loss, float* per_sample, float* dlogvar, const float* logvar, int n, int l,
                        Reduction r, float weight);

}  // namespace vx
