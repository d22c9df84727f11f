// Losses with their gradients, and the Gaussian latent ops (KL, reparameterization).
// Reference twins: loss_ref.h. Each loss writes its scalar value (accumulated in double) to *loss and,
// if grad is not null, d(weight * loss)/d(input) into grad (=). `weight` scales value and gradient.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

enum class Reduction : int32_t { Mean = 0, Sum = 1 };

// MONAI DiceLoss(softmax=True, to_onehot_y=True, include_background=True, squared_pred=False,
// jaccard=False, batch=False): p = softmax(logits) over channels; per (n, c):
// f = 1 - (2 * sum(p * g) + smoothNr) / (sum(g) + sum(p) + smoothDr), g = one_hot(labels)[c];
// then mean or sum over all n*c values. logits [n, c, spatial]; labels [n, spatial] holding class
// indices 0..c-1 as floats (a label outside that range fails with InvalidArgument).
// MONAI defaults: smoothNr = smoothDr = 1e-5. A non-integer label also fails; on failure *loss and
// grad hold unspecified values.
// The options of dice_loss, spelled as the N-API options object and the TS ReconLoss spell them.
struct DiceOptions {
  float smoothNr = 1e-5f;
  float smoothDr = 1e-5f;
  Reduction reduction = Reduction::Mean;
  float weight = 1.0f;
};
Status dice_loss(double* loss, float* grad, const float* logits, const float* labels, int n, int c,
                 int64_t spatial, const DiceOptions& o);

// Elementwise losses over `count` values; Mean divides by count (PyTorch's default reduction).
// BCE with logits, numerically stable: max(x, 0) - x * t + log(1 + exp(-|x|)).
Status bce_with_logits_loss(double* loss, float* grad, const float* x, const float* t, int64_t count,
                            Reduction r, float weight);
Status mse_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
                float weight);
Status l1_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
               float weight);  // grad sign(x - t), 0 where equal (PyTorch)

// KL(N(mu, exp(logvar)) || N(0, I)) per sample = -0.5 * sum_k (1 + logvar - mu^2 - exp(logvar)).
// *loss = weight * (sum over samples, or mean over samples) of that; per_sample [n] (may be null) gets
// the unweighted per-sample values. dmu, dlogvar (+=: they usually already hold the reconstruction's
// gradient through the reparameterization) may be null. mu, logvar: [n, l].
Status kl_normal(double* loss, float* per_sample, float* dmu, float* dlogvar, const float* mu,
                 const float* logvar, int n, int l, Reduction r, float weight);

// How a latent is formed from (mu, logvar).
enum class LatentMode : int32_t {
  Sample = 0,      // z = mu + exp(0.5 logvar) * eps, eps ~ N(0, 1) from philox_normal(seed, step, i)
  Mean = 1,        // z = mu
  MeanPlusStd = 2  // z = mu + exp(0.5 logvar): what MONAI's eval-mode reparameterize returns
};

// z, eps: [n, l]; eps (may be null) receives the noise used (0 for Mean, 1 for MeanPlusStd), so that
// backward needs no regeneration. Element i of the flat [n, l] array uses stream index i.
Status reparameterize_forward(float* z, float* eps, const float* mu, const float* logvar, int n, int l,
                              LatentMode mode, uint64_t seed, uint64_t step);
// dmu += dz; dlogvar += dz * eps * 0.5 * exp(0.5 logvar). eps and logvar are needed (non-null) only when
// dlogvar is not null.
Status reparameterize_backward(float* dmu, float* dlogvar, const float* dz, const float* eps,
                               const float* logvar, int n, int l);

}  // namespace vx
