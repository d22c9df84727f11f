// CUDA twins of native/core/loss.h: Dice over a channel softmax (fused: one pass for the softmax and
// the per-(n, c) sums, one for the gradient), the elementwise losses, and the Gaussian KL.
#include "kernels.h"
#include "reduce.cuh"

namespace vx {
namespace cuda {

namespace {

// Softmax per voxel into p; flags the first bad label (1 + index, smallest index wins).
__global__ void k_dice_softmax(float* p, const float* logits, const float* labels, int c, int64_t spatial, int64_t positions,
                               unsigned long long* bad) {
  VXC_GRID_LOOP(q, positions) {
    const int64_t nb = q / spatial, s = q % spatial;
    const int64_t base = nb * c * spatial + s;
    const float l = labels[q];
    if (bad && !(l >= 0.f && l < float(c) && l == floorf(l))) atomicMin(bad, (unsigned long long)(q + 1));
    float mx = logits[base];
    for (int k = 1; k < c; ++k) mx = fmaxf(mx, logits[base + k * spatial]);
    float sum = 0.f;
    for (int k = 0; k < c; ++k) sum += expf(logits[base + k * spatial] - mx);
    for (int k = 0; k < c; ++k) p[base + k * spatial] = expf(logits[base + k * spatial] - mx) / sum;
  }
}
// Row r = n*C + k over spatial: (sum p*g, sum g, sum p).
struct DiceSums {
  const float *p, *labels;
  int C;
  int64_t spatial;
  __device__ D3 operator()(int r, int64_t idx) const {
    const int k = r % C;
    const int64_t nb = r / C, s = idx - int64_t(r) * spatial;
    const double pv = p[idx], gv = labels[nb * spatial + s] == float(k) ? 1.0 : 0.0;
    return D3{pv * gv, gv, pv};
  }
};
struct StoreD3 {
  D3* out;
  __device__ void operator()(int r, D3 v) const { out[r] = v; }
};
// num/den per row, loss in a fixed order.
__global__ void k_dice_finish(double* loss, float* num, float* den, const D3* sums, int rows, float snr, float sdr, double scale) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    const double nu = 2.0 * sums[r].a + snr, de = sums[r].b + sums[r].c + sdr;
    num[r] = float(nu);
    den[r] = float(de);
    total += 1.0 - nu / de;
  }
  *loss = total * scale;
}
__global__ void k_dice_grad(float* grad, const float* p, const float* labels, const float* num, const float* den, int c,
                            int64_t spatial, int64_t positions, float scale) {
  VXC_GRID_LOOP(q, positions) {
    const int64_t nb = q / spatial, s = q % spatial;
    const int64_t base = nb * c * spatial + s;
    const int lab = int(labels[q]);
    float dot = 0.f;
    for (int k = 0; k < c; ++k) {
      const int64_t r = nb * c + k;
      const float de = den[r], gv = lab == k ? 1.f : 0.f;
      const float dp = scale * (-2.f * gv / de + num[r] / (de * de));
      dot += dp * p[base + k * spatial];
    }
    for (int k = 0; k < c; ++k) {
      const int64_t r = nb * c + k;
      const float de = den[r], gv = lab == k ? 1.f : 0.f;
      const float dp = scale * (-2.f * gv / de + num[r] / (de * de));
      grad[base + k * spatial] = p[base + k * spatial] * (dp - dot);
    }
  }
}

enum { kBce = 0, kMse = 1, kL1 = 2 };
template <int K>
struct ElemLoss {
  const float *x, *t;
  float* grad;
  float scale;
  __device__ double operator()(int64_t i) const {
    const float xv = x[i], tv = t[i];
    double v;
    float g;
    if (K == kBce) {
      v = double(fmaxf(xv, 0.f) - xv * tv + log1pf(expf(-fabsf(xv))));
      g = 1.f / (1.f + expf(-xv)) - tv;
    } else if (K == kMse) {
      const float d = xv - tv;
      v = double(d) * double(d);
      g = 2.f * d;
    } else {
      const float d = xv - tv;
      v = fabs(double(d));
      g = d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
    }
    if (grad) grad[i] = scale * g;
    return v;
  }
};

template <int K>
Status elem_loss(const char* op, double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r,
                 float weight, cudaStream_t st) {
  if (!loss || !x || !t) return fail(Status::InvalidArgument, "%s: null loss, input or target", op);
  if (count < 1) return fail(Status::InvalidArgument, "%s: count %lld < 1", op, (long long)count);
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(count) : 1.0);
  return reduce_flat(loss, count, scale, ElemLoss<K>{x, t, grad, float(scale)}, st);
}

// KL per sample row: one block per sample, fixed order.
__global__ void k_kl(float* per, double* per_d, float* dmu, float* dlv, const float* mu, const float* lv, int l, float scale) {
  const int i = blockIdx.x;
  double s = 0;
  for (int k = threadIdx.x; k < l; k += blockDim.x) {
    const int64_t j = int64_t(i) * l + k;
    const float e = expf(lv[j]);
    s += double(1.f + lv[j] - mu[j] * mu[j] - e);
    if (dmu) dmu[j] += scale * mu[j];
    if (dlv) dlv[j] += scale * 0.5f * (e - 1.f);
  }
  s = block_reduce(s);
  if (threadIdx.x == 0) {
    per_d[i] = -0.5 * s;
    if (per) per[i] = float(-0.5 * s);
  }
}
__global__ void k_sum_scaled(double* out, const double* v, int n, double scale) {
  if (threadIdx.x || blockIdx.x) return;
  double a = 0;
  for (int i = 0; i < n; ++i) a += v[i];
  *out = a * scale;
}

}  // namespace

Status dice_loss(double* loss, float* grad, const float* logits, const float* labels, int n, int c, int64_t spatial,
                 const DiceOptions& o, int64_t* bad, cudaStream_t st) {
  const float smooth_nr = o.smoothNr, smooth_dr = o.smoothDr, weight = o.weight;
  const Reduction r = o.reduction;
  if (!loss || !logits || !labels) return fail(Status::InvalidArgument, "dice_loss: null loss, logits or labels");
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "dice_loss: n=%d c=%d spatial=%lld must all be >= 1", n, c, (long long)spatial);
  const int rows = n * c;
  const int64_t positions = int64_t(n) * spatial, total = positions * c;
  Scratch sc(st);
  void *p = nullptr, *sums = nullptr, *num = nullptr, *den = nullptr;
  VX_TRY(sc.get(sizeof(float) * size_t(total), &p));
  VX_TRY(sc.get(sizeof(D3) * size_t(rows), &sums));
  VX_TRY(sc.get(sizeof(float) * size_t(rows), &num));
  VX_TRY(sc.get(sizeof(float) * size_t(rows), &den));
  auto* pf = static_cast<float*>(p);
  k_dice_softmax<<<blocks_for(positions), kThreads, 0, st>>>(pf, logits, labels, c, spatial, positions,
                                                             reinterpret_cast<unsigned long long*>(bad));
  VXC_LAUNCH("dice_loss softmax");
  VX_TRY(reduce_channels<D3>(1, rows, spatial, DiceSums{pf, labels, c, spatial}, StoreD3{static_cast<D3*>(sums)}, st));
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(rows) : 1.0);
  k_dice_finish<<<1, 1, 0, st>>>(loss, static_cast<float*>(num), static_cast<float*>(den), static_cast<D3*>(sums), rows, smooth_nr,
                                 smooth_dr, scale);
  if (grad)
    k_dice_grad<<<blocks_for(positions), kThreads, 0, st>>>(grad, pf, labels, static_cast<float*>(num), static_cast<float*>(den), c,
                                                            spatial, positions, float(scale));
  VXC_LAUNCH("dice_loss");
  return Status::Ok;
}

Status bce_with_logits_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
                            cudaStream_t st) {
  return elem_loss<kBce>("bce_with_logits_loss", loss, grad, x, t, count, r, weight, st);
}
Status mse_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
                cudaStream_t st) {
  return elem_loss<kMse>("mse_loss", loss, grad, x, t, count, r, weight, st);
}
Status l1_loss(double* loss, float* grad, const float* x, const float* t, int64_t count, Reduction r, float weight,
               cudaStream_t st) {
  return elem_loss<kL1>("l1_loss", loss, grad, x, t, count, r, weight, st);
}

Status kl_normal(double* loss, float* per_sample, float* dmu, float* dlogvar, const float* mu, const float* logvar, int n, int l,
                 Reduction r, float weight, cudaStream_t st) {
  if (!loss || !mu || !logvar) return fail(Status::InvalidArgument, "kl_normal: null loss, mu or logvar");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "kl_normal: n=%d l=%d must be >= 1", n, l);
  const double scale = double(weight) * (r == Reduction::Mean ? 1.0 / double(n) : 1.0);
  Scratch sc(st);
  void* per_d = nullptr;
  VX_TRY(sc.get(sizeof(double) * size_t(n), &per_d));
  k_kl<<<unsigned(n), kThreads, 0, st>>>(per_sample, static_cast<double*>(per_d), dmu, dlogvar, mu, logvar, l, float(scale));
  k_sum_scaled<<<1, 1, 0, st>>>(loss, static_cast<double*>(per_d), n, scale);
  VXC_LAUNCH("kl_normal");
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
