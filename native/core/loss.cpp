// Losses and Gaussian latent ops over float32 buffers (see loss.h).
// Every sum is kept in double per fixed block (and, inside a block, in four chains chosen by the
// absolute index mod 4), then added in block order: the loss is bit-identical for any thread count.
// dice_loss takes two passes over memory: the first computes the softmax (kept in grad), the
// per-(n, c) sums and validates the labels; the second turns the stored softmax into the gradient.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "parallel.h"
#include "rng.h"

namespace vx {

namespace {

constexpr int64_t kBlock = 1 << 14;  // values per reduction block (elementwise losses)
constexpr int64_t kGrain = 1 << 15;  // values per parallel chunk at least
constexpr int64_t kSpan = 1 << 13;   // spatial positions per dice work item
constexpr int64_t kTile = 256;       // spatial positions per dice tile (stack scratch)
constexpr int64_t kScratch = 2048;   // floats of stack scratch for the softmax when grad is null

template <class T>
Status alloc(const char* op, std::vector<T>& v, size_t n, T init) {
  try {
    v.assign(n, init);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %zu values", op, n);
  }
  return Status::Ok;
}

Status check_reduction(const char* op, Reduction r) {
  if (r != Reduction::Mean && r != Reduction::Sum)
    return fail(Status::InvalidArgument, "%s: unknown reduction %d", op, static_cast<int>(r));
  return Status::Ok;
}

// Shared driver of the elementwise losses: term(x, t, gscale, &grad) returns the loss term of one
// value (as double) and stores its scaled gradient when grad is not null.
template <class Term>
Status elementwise_loss(const char* op, double* loss, float* grad, const float* x, const float* t, int64_t count,
                        Reduction r, float weight, const Term& term) {
  if (!loss) return fail(Status::InvalidArgument, "%s: null loss", op);
  if (count < 1) return fail(Status::InvalidArgument, "%s: count %lld < 1", op, static_cast<long long>(count));
  if (!x || !t) return fail(Status::InvalidArgument, "%s: null input or target", op);
  VX_TRY(check_reduction(op, r));
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(count) : 1.0);
  const float gscale = static_cast<float>(scale);
  std::vector<double> part;
  VX_TRY(alloc(op, part, static_cast<size_t>(blocks_per_row(count, kBlock)), 0.0));
  parallel_for_blocks(1, count, kBlock, kGrain, [&](int64_t item, int64_t, int64_t lo, int64_t hi) {
    double acc[4] = {0, 0, 0, 0};
    for (int64_t i = lo; i < hi; ++i) acc[i & 3] += term(x[i], t[i], gscale, grad ? grad + i : nullptr);
    part[static_cast<size_t>(item)] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  });
  double sum = 0;
  for (double v : part) sum += v;
  *loss = sum * scale;
  return Status::Ok;
}

}  // namespace

Status dice_loss(double* loss, float* grad, const float* logits, const float* labels, int n, int c, int64_t spatial,
                 float smooth_nr, float smooth_dr, Reduction r, float weight) {
  const char* op = "dice_loss";
  if (!loss || !logits || !labels) return fail(Status::InvalidArgument, "%s: null loss, logits or labels", op);
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, n, c,
                static_cast<long long>(spatial));
  VX_TRY(check_reduction(op, r));

  // The softmax lives in grad (stride spatial) when there is one, else in a per-tile stack buffer, or,
  // for absurd channel counts, in a full heap buffer.
  std::vector<float> heap;
  float* pstore = grad;
  if (!pstore && c > kScratch) {
    VX_TRY(alloc(op, heap, static_cast<size_t>(int64_t(n) * c * spatial), 0.0f));
    pstore = heap.data();
  }
  const int64_t tile = pstore ? kTile : std::min<int64_t>(kTile, kScratch / c);

  const int64_t nb = blocks_per_row(spatial, kSpan), items = int64_t(n) * nb;
  // Per (item, class): 4 lanes of sum(p * g), 4 lanes of sum(p), count of g.
  constexpr int kStride = 9;
  std::vector<double> part;
  std::vector<int64_t> bad;  // first invalid label index per item, or -1
  VX_TRY(alloc(op, part, static_cast<size_t>(items * c * kStride), 0.0));
  VX_TRY(alloc(op, bad, static_cast<size_t>(items), int64_t(-1)));

  parallel_for_blocks(n, spatial, kSpan, std::max<int64_t>(kSpan, kGrain / c),
                      [&](int64_t item, int64_t in, int64_t lo, int64_t hi) {
    float mx[kTile], inv[kTile], scratch[kScratch];
    int lab[kTile];
    const float* xb = logits + in * c * spatial;
    const float* lb = labels + in * spatial;
    double* pp = part.data() + item * c * kStride;
    for (int64_t t0 = lo; t0 < hi; t0 += tile) {
      const int64_t len = std::min(tile, hi - t0);
      for (int64_t s = 0; s < len; ++s) {
        const float l = lb[t0 + s];
        // In range first (also rejects NaN), so that the cast is defined; then integral.
        if (!(l >= 0.0f && l < float(c)) || static_cast<float>(static_cast<int>(l)) != l) {
          bad[static_cast<size_t>(item)] = in * spatial + t0 + s;
          return;
        }
        lab[s] = static_cast<int>(l);
        pp[lab[s] * kStride + 8] += 1.0;
      }
      float* pb = pstore ? pstore + in * c * spatial + t0 : scratch;
      const int64_t ps = pstore ? spatial : len;  // channel stride of pb
      for (int64_t s = 0; s < len; ++s) mx[s] = xb[t0 + s];
      for (int k = 1; k < c; ++k)
        for (int64_t s = 0; s < len; ++s) mx[s] = std::max(mx[s], xb[k * spatial + t0 + s]);
      for (int64_t s = 0; s < len; ++s) inv[s] = 0.0f;
      for (int k = 0; k < c; ++k)
        for (int64_t s = 0; s < len; ++s) {
          const float e = std::exp(xb[k * spatial + t0 + s] - mx[s]);
          pb[k * ps + s] = e;
          inv[s] += e;
        }
      for (int64_t s = 0; s < len; ++s) inv[s] = 1.0f / inv[s];
      for (int k = 0; k < c; ++k) {
        double* acc = pp + k * kStride;
        for (int64_t s = 0; s < len; ++s) {
          const float p = pb[k * ps + s] * inv[s];
          pb[k * ps + s] = p;
          const int lane = static_cast<int>((t0 + s) & 3);
          acc[4 + lane] += p;
          acc[lane] += p * static_cast<float>(lab[s] == k);  // arithmetic, not a branch
        }
      }
    }
  });
  for (int64_t it = 0; it < items; ++it)
    if (bad[static_cast<size_t>(it)] >= 0) {
      const int64_t i = bad[static_cast<size_t>(it)];
      return fail(Status::InvalidArgument, "%s: label %g at index %lld (n=%lld) is not a class in 0..%d", op,
                  double(labels[i]), static_cast<long long>(i), static_cast<long long>(i / spatial), c - 1);
    }

  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(int64_t(n) * c) : 1.0);
  std::vector<double> coef_a, coef_b;  // d(scaled loss)/dp = coef_a - coef_b * g, per (n, c)
  VX_TRY(alloc(op, coef_a, static_cast<size_t>(n) * c, 0.0));
  VX_TRY(alloc(op, coef_b, static_cast<size_t>(n) * c, 0.0));
  double total = 0;
  for (int in = 0; in < n; ++in)
    for (int k = 0; k < c; ++k) {
      double inter = 0, psum = 0, gsum = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const double* acc = part.data() + ((int64_t(in) * nb + b) * c + k) * kStride;
        inter += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        psum += (acc[4] + acc[5]) + (acc[6] + acc[7]);
        gsum += acc[8];
      }
      const double num = 2.0 * inter + double(smooth_nr), den = gsum + psum + double(smooth_dr);
      total += 1.0 - num / den;
      coef_a[in * c + k] = scale * num / (den * den);
      coef_b[in * c + k] = scale * 2.0 / den;
    }
  *loss = total * scale;
  if (!grad) return Status::Ok;

  // grad_k = p_k * (dp_k - sum_j p_j dp_j), dp_k = a_k - b_k [label == k]; grad holds p on entry. It is
  // evaluated as p_k * (dp_k * sum_j p_j - sum_j p_j dp_j) = p_k * sum_j p_j (dp_k - dp_j): with the
  // stored (float) p the terms still cancel exactly where the true ones do, e.g. for two classes
  // grad_0 = p_0 p_1 (dp_0 - dp_1) stays accurate when dp_0 is close to dp_1.
  parallel_for_blocks(n, spatial, kSpan, std::max<int64_t>(kSpan, kGrain / c),
                      [&](int64_t, int64_t in, int64_t lo, int64_t hi) {
    double dot[kTile], psum[kTile];
    int lab[kTile];
    const double* a = coef_a.data() + in * c;
    const double* b = coef_b.data() + in * c;
    float* gb = grad + in * c * spatial;
    for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
      const int64_t len = std::min(kTile, hi - t0);
      for (int64_t s = 0; s < len; ++s) {
        lab[s] = static_cast<int>(labels[in * spatial + t0 + s]);
        dot[s] = -b[lab[s]] * double(gb[lab[s] * spatial + t0 + s]);
        psum[s] = 0.0;
      }
      for (int k = 0; k < c; ++k)
        for (int64_t s = 0; s < len; ++s) {
          const double p = gb[k * spatial + t0 + s];
          dot[s] += a[k] * p;
          psum[s] += p;
        }
      for (int k = 0; k < c; ++k)
        for (int64_t s = 0; s < len; ++s) {
          float& g = gb[k * spatial + t0 + s];
          const double dp = a[k] - b[k] * static_cast<double>(lab[s] == k);
          g = static_cast<float>(double(g) * (dp * psum[s] - dot[s]));
        }
    }
  });
  return Status::Ok;
}

Status bce_with_logits_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
                            float weight) {
  // In double: sigmoid(x) - t cancels where the prediction is right, and float would leave an absolute
  // error of ~1e-7 there.
  return elementwise_loss("bce_with_logits_loss", loss, grad, x, t, count, r, weight,
                          [](float xf, float tf, float gs, float* g) {
                            const double xv = xf, tv = tf;
                            const double e = std::exp(-std::fabs(xv));  // in (0, 1]: never overflows
                            if (g) {
                              const double inv = 1.0 / (1.0 + e), sig = xv >= 0.0 ? inv : e * inv;
                              *g = static_cast<float>(double(gs) * (sig - tv));
                            }
                            return std::max(xv, 0.0) - xv * tv + std::log1p(e);
                          });
}

Status mse_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
                float weight) {
  return elementwise_loss("mse_loss", loss, grad, x, t, count, r, weight, [](float xv, float tv, float gs, float* g) {
    const double d = double(xv) - double(tv);
    if (g) *g = static_cast<float>(2.0 * double(gs) * d);
    return d * d;
  });
}

Status l1_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
               float weight) {
  return elementwise_loss("l1_loss", loss, grad, x, t, count, r, weight, [](float xv, float tv, float gs, float* g) {
    const double d = double(xv) - double(tv);
    if (g) *g = gs * static_cast<float>((d > 0) - (d < 0));  // sign(d), 0 where x == t
    return std::fabs(d);
  });
}

Status kl_normal(double* loss, float* per_sample, float* dmu, float* dlogvar, const float* mu, const float* logvar,
                 int n, int l, Reduction r, float weight) {
  const char* op = "kl_normal";
  if (!loss || !mu || !logvar) return fail(Status::InvalidArgument, "%s: null loss, mu or logvar", op);
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "%s: n=%d l=%d must be >= 1", op, n, l);
  VX_TRY(check_reduction(op, r));
  // Latents are small ([batch, latent]): one thread, double throughout.
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(n) : 1.0);
  double total = 0;
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < l; ++k) {
      const int64_t j = int64_t(i) * l + k;
      const double m = mu[j], lv = logvar[j], ev = std::exp(lv);
      s += 1.0 + lv - m * m - ev;
      if (dmu) dmu[j] = static_cast<float>(double(dmu[j]) + scale * m);
      if (dlogvar) dlogvar[j] = static_cast<float>(double(dlogvar[j]) + scale * 0.5 * (ev - 1.0));
    }
    if (per_sample) per_sample[i] = static_cast<float>(-0.5 * s);
    total += -0.5 * s;
  }
  *loss = total * scale;
  return Status::Ok;
}

Status reparameterize_forward(float* z, float* eps, const float* mu, const float* logvar, int n, int l,
                              LatentMode mode, uint64_t seed, uint64_t step) {
  const char* op = "reparameterize_forward";
  if (!z || !mu || !logvar) return fail(Status::InvalidArgument, "%s: null z, mu or logvar", op);
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "%s: n=%d l=%d must be >= 1", op, n, l);
  if (mode != LatentMode::Sample && mode != LatentMode::Mean && mode != LatentMode::MeanPlusStd)
    return fail(Status::InvalidArgument, "%s: unknown mode %d", op, static_cast<int>(mode));
  const int64_t count = int64_t(n) * l;
  parallel_for(count, kGrain, [&](int64_t lo, int64_t hi) {
    float noise[kTile];
    for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
      const int64_t len = std::min(kTile, hi - t0);
      if (mode == LatentMode::Sample)  // serial here: nested, and a tile is below the fill's grain
        philox_normal_fill(noise, len, seed, step, static_cast<uint64_t>(t0));
      for (int64_t s = 0; s < len; ++s) {
        const int64_t i = t0 + s;
        const float e = mode == LatentMode::Sample ? noise[s] : (mode == LatentMode::Mean ? 0.0f : 1.0f);
        // In double, rounded once: mu and eps * std may nearly cancel.
        z[i] = mode == LatentMode::Mean
                   ? mu[i]
                   : static_cast<float>(double(e) * std::exp(0.5 * double(logvar[i])) + double(mu[i]));
        if (eps) eps[i] = e;
      }
    }
  });
  return Status::Ok;
}

Status reparameterize_backward(float* dmu, float* dlogvar, const float* dz, const float* eps, const float* logvar,
                               int n, int l) {
  const char* op = "reparameterize_backward";
  if (!dz) return fail(Status::InvalidArgument, "%s: null dz", op);
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "%s: n=%d l=%d must be >= 1", op, n, l);
  if (dlogvar && (!eps || !logvar)) return fail(Status::InvalidArgument, "%s: dlogvar needs eps and logvar", op);
  parallel_for(int64_t(n) * l, kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      if (dmu) dmu[i] += dz[i];
      if (dlogvar)
        dlogvar[i] = static_cast<float>(double(dlogvar[i]) +
                                        double(dz[i]) * double(eps[i]) * 0.5 * std::exp(0.5 * double(logvar[i])));
    }
  });
  return Status::Ok;
}

}  // namespace vx
