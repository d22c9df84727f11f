// CUDA twins of native/core/norm.h. Statistics are two-pass (mean, then squared deviations) in double
// with fixed-order reductions, like the CPU; instance norm is batch norm over rows (n = 1, c = N*C).
#include "kernels.h"
#include "reduce.cuh"

namespace vx {
namespace cuda {

namespace {

struct XVal {
  const float* x;
  __device__ double operator()(int, int64_t k) const { return double(x[k]); }
};
struct SqDev {
  const float* x;
  const double* mean;
  __device__ double operator()(int ch, int64_t k) const {
    const double d = double(x[k]) - mean[ch];
    return d * d;
  }
};
struct StoreMean {
  double* mean;
  double m;
  __device__ void operator()(int ch, double s) const { mean[ch] = s / m; }
};
// Turns sums of squared deviations into invstd, saves statistics, updates running ones.
struct Finish {
  const double* mean;
  float *mean_f, *invstd_f, *save_mean, *save_invstd, *rm, *rv;
  double m, eps, mom;
  __device__ void operator()(int ch, double sq) const {
    const double var = sq / m;
    const float invstd = float(1.0 / sqrt(var + eps));
    mean_f[ch] = float(mean[ch]);
    invstd_f[ch] = invstd;
    if (save_mean) save_mean[ch] = float(mean[ch]);
    if (save_invstd) save_invstd[ch] = invstd;
    if (rm) rm[ch] = float((1.0 - mom) * double(rm[ch]) + mom * mean[ch]);
    if (rv) rv[ch] = float((1.0 - mom) * double(rv[ch]) + mom * (sq / (m - 1.0)));
  }
};
// y = (x - mean[r]) * invstd[r] * gamma[ch] + beta[ch]; r = ch for batch norm, n*C + ch for instance norm.
__global__ void k_normalize(float* y, const float* x, const float* mean, const float* invstd, const float* g, const float* b,
                            int C, int64_t spatial, int64_t count, bool per_row) {
  VXC_GRID_LOOP(i, count) {
    const int64_t row = i / spatial;
    const int ch = int(row % C);
    const int64_t r = per_row ? row : ch;
    y[i] = (x[i] - mean[r]) * invstd[r] * (g ? g[ch] : 1.f) + (b ? b[ch] : 0.f);
  }
}
__global__ void k_eval_stats(float* mean, float* invstd, const float* rm, const float* rv, int c, float eps) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  mean[ch] = rm[ch];
  invstd[ch] = 1.f / sqrtf(rv[ch] + eps);
}
// Sums of dy and dy * xhat.
struct DyXhat {
  const float *dy, *x, *mean, *invstd;
  __device__ D2 operator()(int ch, int64_t k) const {
    const double xh = double(x[k] - mean[ch]) * double(invstd[ch]);
    return D2{double(dy[k]), double(dy[k]) * xh};
  }
};
struct StoreD2 {
  D2* out;
  __device__ void operator()(int ch, D2 v) const { out[ch] = v; }
};
// dgamma/dbeta (+=) per channel from per-row sums (rows_per_ch = N rows with stride C, or 1).
__global__ void k_affine_grad(float* dg, float* db, const D2* sums, int C, int N) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= C) return;
  double a = 0, b = 0;
  for (int n = 0; n < N; ++n) {
    a += sums[int64_t(n) * C + ch].a;
    b += sums[int64_t(n) * C + ch].b;
  }
  if (db) db[ch] += float(a);
  if (dg) dg[ch] += float(b);
}
__global__ void k_norm_dx(float* dx, const float* dy, const float* x, const float* mean, const float* invstd, const float* g,
                          const D2* sums, int C, int64_t spatial, int64_t count, bool per_row, double m, bool train) {
  VXC_GRID_LOOP(i, count) {
    const int64_t row = i / spatial;
    const int ch = int(row % C);
    const int64_t r = per_row ? row : ch;
    const float gv = g ? g[ch] : 1.f, is = invstd[r];
    if (!train) {
      dx[i] = dy[i] * gv * is;
      continue;
    }
    const float xh = (x[i] - mean[r]) * is;
    dx[i] = gv * is * (dy[i] - float(sums[r].a / m) - xh * float(sums[r].b / m));
  }
}

Status check_shape(const char* op, const NormShape& s) {
  if (s.n < 1 || s.c < 1 || s.spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, s.n, s.c, (long long)s.spatial);
  if (!(s.eps >= 0.f)) return fail(Status::InvalidArgument, "%s: eps must be >= 0", op);
  return Status::Ok;
}

// Statistics and normalisation over `rows` groups: batch norm (rows = C, n = N) or instance norm
// (rows = N*C, n = 1).
Status normalize_train(float* y, float* save_mean, float* save_invstd, float* rm, float* rv, const float* x, const float* g,
                       const float* b, const NormShape& s, bool instance, cudaStream_t st) {
  const int rows = instance ? s.n * s.c : s.c, n = instance ? 1 : s.n;
  const double m = double(n) * double(s.spatial);
  Scratch sc(st);
  void *mean = nullptr, *mf = nullptr, *isf = nullptr;
  VX_TRY(sc.get(sizeof(double) * rows, &mean));
  VX_TRY(sc.get(sizeof(float) * rows, &mf));
  VX_TRY(sc.get(sizeof(float) * rows, &isf));
  auto* md = static_cast<double*>(mean);
  VX_TRY(reduce_channels<double>(n, rows, s.spatial, XVal{x}, StoreMean{md, m}, st));
  Finish fin{md, static_cast<float*>(mf), static_cast<float*>(isf), save_mean, save_invstd, rm, rv, m, double(s.eps),
             double(s.momentum)};
  VX_TRY(reduce_channels<double>(n, rows, s.spatial, SqDev{x, md}, fin, st));
  const int64_t count = int64_t(s.n) * s.c * s.spatial;
  k_normalize<<<blocks_for(count), kThreads, 0, st>>>(y, x, static_cast<float*>(mf), static_cast<float*>(isf), g, b, s.c,
                                                     s.spatial, count, instance);
  VXC_LAUNCH("normalize");
  return Status::Ok;
}

Status norm_backward(float* dx, float* dg, float* db, const float* dy, const float* x, const float* g, const float* mean,
                     const float* invstd, const NormShape& s, bool instance, bool train, cudaStream_t st) {
  const int rows = instance ? s.n * s.c : s.c, n = instance ? 1 : s.n;
  const double m = double(n) * double(s.spatial);
  Scratch sc(st);
  void* sums = nullptr;
  VX_TRY(sc.get(sizeof(D2) * rows, &sums));
  auto* sd = static_cast<D2*>(sums);
  VX_TRY(reduce_channels<D2>(n, rows, s.spatial, DyXhat{dy, x, mean, invstd}, StoreD2{sd}, st));
  if (dg || db) {
    k_affine_grad<<<blocks_for(s.c), kThreads, 0, st>>>(dg, db, sd, s.c, instance ? s.n : 1);
    VXC_LAUNCH("norm affine grad");
  }
  if (dx) {
    const int64_t count = int64_t(s.n) * s.c * s.spatial;
    k_norm_dx<<<blocks_for(count), kThreads, 0, st>>>(dx, dy, x, mean, invstd, g, sd, s.c, s.spatial, count, instance, m, train);
    VXC_LAUNCH("norm dx");
  }
  return Status::Ok;
}

}  // namespace

Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                                  const float* x, const float* gamma, const float* beta, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("batch_norm3d_forward_train", s));
  if (int64_t(s.n) * s.spatial < 2)
    return fail(Status::InvalidArgument, "batch_norm3d_forward_train: expected more than 1 value per channel (n*spatial = 1)");
  return normalize_train(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, s, false, st);
}

Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta, const float* running_mean,
                                 const float* running_var, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("batch_norm3d_forward_eval", s));
  Scratch sc(st);
  void *mf = nullptr, *isf = nullptr;
  VX_TRY(sc.get(sizeof(float) * s.c, &mf));
  VX_TRY(sc.get(sizeof(float) * s.c, &isf));
  k_eval_stats<<<blocks_for(s.c), kThreads, 0, st>>>(static_cast<float*>(mf), static_cast<float*>(isf), running_mean, running_var,
                                                     s.c, s.eps);
  const int64_t count = int64_t(s.n) * s.c * s.spatial;
  k_normalize<<<blocks_for(count), kThreads, 0, st>>>(y, x, static_cast<float*>(mf), static_cast<float*>(isf), gamma, beta, s.c,
                                                     s.spatial, count, false);
  VXC_LAUNCH("batch_norm3d_forward_eval");
  return Status::Ok;
}

Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                             const float* save_mean, const float* save_invstd, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("batch_norm3d_backward", s));
  return norm_backward(dx, dgamma, dbeta, dy, x, gamma, save_mean, save_invstd, s, false, true, st);
}

Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                                  const float* running_mean, const float* running_var, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("batch_norm3d_backward_eval", s));
  Scratch sc(st);
  void *mf = nullptr, *isf = nullptr;
  VX_TRY(sc.get(sizeof(float) * s.c, &mf));
  VX_TRY(sc.get(sizeof(float) * s.c, &isf));
  k_eval_stats<<<blocks_for(s.c), kThreads, 0, st>>>(static_cast<float*>(mf), static_cast<float*>(isf), running_mean, running_var,
                                                     s.c, s.eps);
  VXC_LAUNCH("batch_norm3d_backward_eval");
  return norm_backward(dx, dgamma, dbeta, dy, x, gamma, static_cast<float*>(mf), static_cast<float*>(isf), s, false, false, st);
}

Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x, const float* gamma,
                               const float* beta, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("instance_norm3d_forward", s));
  if (s.spatial < 2)
    return fail(Status::InvalidArgument, "instance_norm3d_forward: expected more than 1 spatial element (spatial = 1)");
  return normalize_train(y, save_mean, save_invstd, nullptr, nullptr, x, gamma, beta, s, true, st);
}

Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                                const float* save_mean, const float* save_invstd, const NormShape& s, cudaStream_t st) {
  VX_TRY(check_shape("instance_norm3d_backward", s));
  if (!save_mean || !save_invstd) return fail(Status::InvalidArgument, "instance_norm3d_backward: null saved statistics");
  return norm_backward(dx, dgamma, dbeta, dy, x, gamma, save_mean, save_invstd, s, true, true, st);
}

}  // namespace cuda
}  // namespace vx
