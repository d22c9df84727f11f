// batch_norm3d and instance_norm3d over float32 NCDHW activations (see norm.h).
// Statistics take one pass: every fixed block of a (n, c) row sums (x - K) and (x - K)^2 in double,
// K being the first value of the channel (batch norm) or row (instance norm) so that a large mean does
// not cancel the variance; partials are summed in block order, so results do not depend on the thread
// count. Backward likewise takes one pass for sum(dy) and sum(dy * (x - mean)) and one for dx. The
// elementwise passes evaluate each output in double and round once: an output near zero (x close to the
// mean, or a gradient whose terms cancel) keeps its relative precision. A fused PReLU (norm.h) rides
// along in the same passes. The per-block loops are vmath.h vector kernels (AVX2 or baseline, same bits).
#include "norm.h"

#include <cmath>
#include <new>
#include <vector>

#include "parallel.h"
#include "vmath.h"

namespace vx {

namespace {

constexpr int64_t kBlock = 1 << 14;  // values per reduction block
constexpr int64_t kGrain = 1 << 15;  // values per parallel chunk at least

Status check_shape(const char* op, const NormShape& s) {
  if (s.n < 1 || s.c < 1 || s.spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, s.n, s.c,
                static_cast<long long>(s.spatial));
  if (!(s.eps >= 0.0f)) return fail(Status::InvalidArgument, "%s: eps must be >= 0", op);
  return Status::Ok;
}

// --- Vector kernels (vmath.h): one body, compiled for AVX2 and the baseline ---------------------------------
using vm::f8;
using vm::d4;
using vm::kLanes;

// A fused PReLU's view of one row in backward: the normalized value v = (x - mean) * scale + shift,
// recomputed in double from the saved statistics, and the slope where v <= 0.
struct RowPrelu {
  double scale = 1, shift = 0;
  float slope = 0;
};

VXM_INLINE f8 normalized(const d4& d_lo, const d4& d_hi, const d4& sc, const d4& sh) {
  return vm::narrow(d_lo * sc + sh, d_hi * sc + sh);
}

// The sums of one block [lo, hi) of row xr (and gr), one accumulator per lane i % 8. Without dy:
// sum(x - center) and sum((x - center)^2) (statistics; center is a value of x, so padding the tail with
// it adds exact zeros). With dy: sum(g) and sum(g * (x - center)) where g = dy, or, with a fused PReLU
// (center = the mean), g = v > 0 ? dy : slope * dy and a third sum, of dy * min(v, 0), for the slope
// (all in double: v's sign and products are computed once, without float rounding).
template <bool kGrad, bool kPrelu>
VXM_INLINE void block_sums_loop(const float* xr, const float* gr, int64_t lo, int64_t hi, double center,
                                const RowPrelu& pre, double* out) {
  const d4 cen = vm::splatd(center), sc = vm::splatd(pre.scale), sh = vm::splatd(pre.shift);
  const f8 pad = vm::splat(kGrad ? 0.0f : static_cast<float>(center));
  const d4 dslope = vm::splatd(pre.slope), dzero = vm::splatd(0.0);
  d4 a_lo = vm::splatd(0.0), a_hi = a_lo, b_lo = a_lo, b_hi = a_lo, e_lo = a_lo, e_hi = a_lo;
  for (int64_t i = lo; i < hi; i += kLanes) {
    f8 xv = vm::load_n(xr + i, hi - i);
    if (!kGrad && hi - i < kLanes) xv = vm::select(vm::first_lanes(hi - i), xv, pad);
    const d4 d_lo = vm::lo_d(xv) - cen, d_hi = vm::hi_d(xv) - cen;
    if (kGrad) {
      const f8 gv = vm::load_n(gr + i, hi - i);  // tail lanes: 0, so they add nothing
      d4 g_lo = vm::lo_d(gv), g_hi = vm::hi_d(gv);
      if (kPrelu) {  // in double: v's sign, min(v, 0) and the slope's product, exact or rounded once
        const d4 v_lo = d_lo * sc + sh, v_hi = d_hi * sc + sh;
        const auto p_lo = v_lo > dzero, p_hi = v_hi > dzero;
        e_lo += g_lo * vm::select_d(p_lo, dzero, v_lo);
        e_hi += g_hi * vm::select_d(p_hi, dzero, v_hi);
        g_lo = vm::select_d(p_lo, g_lo, dslope * g_lo);
        g_hi = vm::select_d(p_hi, g_hi, dslope * g_hi);
      }
      a_lo += g_lo;
      a_hi += g_hi;
      b_lo += g_lo * d_lo;
      b_hi += g_hi * d_hi;
    } else {
      a_lo += d_lo;
      a_hi += d_hi;
      b_lo += d_lo * d_lo;
      b_hi += d_hi * d_hi;
    }
  }
  out[0] = vm::sum_lanes(a_lo, a_hi);
  out[1] = vm::sum_lanes(b_lo, b_hi);
  if (kPrelu) out[2] = vm::sum_lanes(e_lo, e_hi);
}
VXM_INLINE void block_sums_kernel_impl(const float* xr, const float* gr, int64_t lo, int64_t hi, double center,
                                       const RowPrelu* pre, double* out) {
  if (pre) block_sums_loop<true, true>(xr, gr, lo, hi, center, *pre, out);
  else if (gr) block_sums_loop<true, false>(xr, gr, lo, hi, center, RowPrelu(), out);
  else block_sums_loop<false, false>(xr, gr, lo, hi, center, RowPrelu(), out);
}
VXM_DISPATCH(block_sums_kernel,
             (const float* xr, const float* gr, int64_t lo, int64_t hi, double center, const RowPrelu* pre,
              double* out),
             (xr, gr, lo, hi, center, pre, out))

// y[i] = (x[i] - m) * sc + sh over [lo, hi), in double, rounded once; then the fused PReLU, if any.
template <bool kPrelu>
VXM_INLINE void normalize_loop(float* y, const float* x, int64_t lo, int64_t hi, double m, double sc, double sh,
                               float slope) {
  const d4 mv = vm::splatd(m), vsc = vm::splatd(sc), vsh = vm::splatd(sh);
  const f8 a = vm::splat(slope), zero = vm::splat(0.0f);
  for (int64_t i = lo; i < hi; i += kLanes) {
    const f8 xv = vm::load_n(x + i, hi - i);
    f8 v = normalized(vm::lo_d(xv) - mv, vm::hi_d(xv) - mv, vsc, vsh);
    if (kPrelu) v = vm::select(v > zero, v, a * v);
    vm::store_n(y + i, v, hi - i);
  }
}
VXM_INLINE void normalize_kernel_impl(float* y, const float* x, int64_t lo, int64_t hi, double m, double sc,
                                      double sh, const float* slope) {
  if (slope) normalize_loop<true>(y, x, lo, hi, m, sc, sh, *slope);
  else normalize_loop<false>(y, x, lo, hi, m, sc, sh, 0.0f);
}
VXM_DISPATCH(normalize_kernel,
             (float* y, const float* x, int64_t lo, int64_t hi, double m, double sc, double sh, const float* slope),
             (y, x, lo, hi, m, sc, sh, slope))

// dx[i] = k1 * g[i] + k2 * (x[i] - m) + k3 over [lo, hi), in double, rounded once; g = dy, or with a
// fused PReLU, dy passed back through it: k1 * g = (v > 0 ? k1 : k1 * slope) * dy, v recomputed exactly
// as block_sums_loop does.
template <bool kPrelu>
VXM_INLINE void input_grad_loop(float* dx, const float* dy, const float* x, int64_t lo, int64_t hi, double m,
                                double k1, double k2, double k3, const RowPrelu& pre) {
  const d4 mv = vm::splatd(m), a = vm::splatd(k1), b = vm::splatd(k2), c = vm::splatd(k3);
  const d4 sc = vm::splatd(pre.scale), sh = vm::splatd(pre.shift), dzero = vm::splatd(0.0);
  const d4 a_neg = vm::splatd(k1 * double(pre.slope));  // k1 * slope: the factor of dy where v <= 0
  for (int64_t i = lo; i < hi; i += kLanes) {
    const f8 xv = vm::load_n(x + i, hi - i), gv = vm::load_n(dy + i, hi - i);
    const d4 d_lo = vm::lo_d(xv) - mv, d_hi = vm::hi_d(xv) - mv;
    d4 f_lo = a, f_hi = a;
    if (kPrelu) {
      f_lo = vm::select_d(d_lo * sc + sh > dzero, a, a_neg);
      f_hi = vm::select_d(d_hi * sc + sh > dzero, a, a_neg);
    }
    vm::store_n(dx + i, vm::narrow(f_lo * vm::lo_d(gv) + b * d_lo + c, f_hi * vm::hi_d(gv) + b * d_hi + c), hi - i);
  }
}
VXM_INLINE void input_grad_kernel_impl(float* dx, const float* dy, const float* x, int64_t lo, int64_t hi, double m,
                                       double k1, double k2, double k3, const RowPrelu* pre) {
  if (pre) input_grad_loop<true>(dx, dy, x, lo, hi, m, k1, k2, k3, *pre);
  else input_grad_loop<false>(dx, dy, x, lo, hi, m, k1, k2, k3, RowPrelu());
}
VXM_DISPATCH(input_grad_kernel,
             (float* dx, const float* dy, const float* x, int64_t lo, int64_t hi, double m, double k1, double k2,
              double k3, const RowPrelu* pre),
             (dx, dy, x, lo, hi, m, k1, k2, k3, pre))

// Per-index (channel for batch norm, row for instance norm) constants of a normalization, and the
// PReLU fused after it. index(row) maps an (n, c) row to its index.
struct Plan {
  int64_t rows = 0, len = 0;
  bool per_row = false;  // instance norm
  int c = 1;
  std::vector<double> mean, scale, shift, k1, k2, k3;
  const NormPrelu* prelu = nullptr;
  int64_t index(int64_t row) const { return per_row ? row : row % c; }
  float slope(int64_t row) const { return prelu->slope[prelu->num_a == 1 ? 0 : row % c]; }
  RowPrelu row_prelu(int64_t row) const {
    RowPrelu p;
    p.scale = scale[size_t(index(row))];
    p.shift = shift[size_t(index(row))];
    p.slope = slope(row);
    return p;
  }
};

Status make_plan(const char* op, Plan& p, const NormShape& s, bool per_row, const NormPrelu* prelu, bool grads) {
  p.rows = int64_t(s.n) * s.c;
  p.len = s.spatial;
  p.per_row = per_row;
  p.c = s.c;
  p.prelu = prelu;
  if (prelu && (!prelu->slope || (prelu->num_a != 1 && prelu->num_a != s.c)))
    return fail(Status::InvalidArgument, "%s: the fused prelu needs a slope and num_a = 1 or c = %d, got %d", op,
                s.c, prelu->num_a);
  const size_t k = size_t(per_row ? p.rows : s.c);
  try {
    p.mean.assign(k, 0.0);
    p.scale.assign(k, 0.0);
    p.shift.assign(k, 0.0);
    if (grads) {
      p.k1.assign(k, 0.0);
      p.k2.assign(k, 0.0);
      p.k3.assign(k, 0.0);
    }
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %zu values", op, k);
  }
  return Status::Ok;
}

// Statistics sums (dy null) or gradient sums (with a fused PReLU: three) per fixed block of every row,
// centered at p.mean: part[stride * item + j] receives the block's sum j.
Status block_sums(const char* op, std::vector<double>& part, const Plan& p, const float* x, const float* dy,
                  const std::vector<double>& center) {
  const int stride = dy && p.prelu ? 3 : 2;
  const int64_t items = p.rows * blocks_per_row(p.len, kBlock);
  try {
    part.assign(static_cast<size_t>(stride * items), 0.0);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %lld partial sums", op, static_cast<long long>(items));
  }
  parallel_for_blocks(p.rows, p.len, kBlock, kGrain, [&](int64_t item, int64_t row, int64_t lo, int64_t hi) {
    const RowPrelu pre = dy && p.prelu ? p.row_prelu(row) : RowPrelu();
    block_sums_kernel(x + row * p.len, dy ? dy + row * p.len : nullptr, lo, hi, center[size_t(p.index(row))],
                      dy && p.prelu ? &pre : nullptr, part.data() + stride * item);
  });
  return Status::Ok;
}

// Sum of sums `which` over the blocks of row `row`, in block order.
double row_sum(const std::vector<double>& part, int64_t row, int64_t nb, int which, int stride = 2) {
  double s = 0;
  for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>(stride * (row * nb + b) + which)];
  return s;
}

// The fused PReLU's slope gradient from the third block sums, summed per slope in (row, block) order.
void add_slope_grad(const Plan& p, const std::vector<double>& part) {
  if (!p.prelu || !p.prelu->dslope) return;
  const int64_t nb = blocks_per_row(p.len, kBlock);
  for (int k = 0; k < p.prelu->num_a; ++k) {
    double sum = 0;
    for (int64_t row = 0; row < p.rows; ++row)
      if (p.prelu->num_a == 1 || row % p.c == k) sum += row_sum(part, row, nb, 2, 3);
    p.prelu->dslope[k] = static_cast<float>(double(p.prelu->dslope[k]) + sum);
  }
}

// y = (x - mean) * scale + shift per row, then the fused PReLU if any.
void normalize(float* y, const float* x, const Plan& p) {
  parallel_for_blocks(p.rows, p.len, kBlock, kGrain, [&](int64_t, int64_t row, int64_t lo, int64_t hi) {
    const size_t k = size_t(p.index(row));
    const float slope = p.prelu ? p.slope(row) : 0.0f;
    normalize_kernel(y + row * p.len, x + row * p.len, lo, hi, p.mean[k], p.scale[k], p.shift[k],
                     p.prelu ? &slope : nullptr);
  });
}

// dx = k1 * g + k2 * (x - mean) + k3 per row (g: dy through the fused PReLU, if any): the input gradient
// of a normalization whose statistics depend on x (k2, k3 != 0) or not (k2 = k3 = 0).
void input_grad(float* dx, const float* dy, const float* x, const Plan& p) {
  parallel_for_blocks(p.rows, p.len, kBlock, kGrain, [&](int64_t, int64_t row, int64_t lo, int64_t hi) {
    const size_t k = size_t(p.index(row));
    const RowPrelu pre = p.prelu ? p.row_prelu(row) : RowPrelu();
    input_grad_kernel(dx + row * p.len, dy + row * p.len, x + row * p.len, lo, hi, p.mean[k], p.k1[k], p.k2[k],
                      p.k3[k], p.prelu ? &pre : nullptr);
  });
}

// scale/shift of the forward for index k: gamma * invstd and beta (affine=False: invstd and 0).
void set_affine(Plan& p, size_t k, int c, double invstd, const float* gamma, const float* beta) {
  p.scale[k] = (gamma ? double(gamma[c]) : 1.0) * invstd;
  p.shift[k] = beta ? double(beta[c]) : 0.0;
}

}  // namespace

Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                  float* running_var, const float* x, const float* gamma, const float* beta,
                                  const NormShape& s, const NormPrelu* prelu) {
  const char* op = "batch_norm3d_forward_train";
  VX_TRY(check_shape(op, s));
  if (!y || !x) return fail(Status::InvalidArgument, "%s: null y or x", op);
  const int64_t m = int64_t(s.n) * s.spatial, len = s.spatial;
  if (m < 2)
    return fail(Status::InvalidArgument, "%s: expected more than 1 value per channel (n*spatial = 1)", op);
  Plan p;
  VX_TRY(make_plan(op, p, s, false, prelu, false));
  for (int c = 0; c < s.c; ++c) p.mean[size_t(c)] = x[int64_t(c) * len];  // centers: a value of the channel
  std::vector<double> part;
  VX_TRY(block_sums(op, part, p, x, nullptr, p.mean));
  const int64_t nb = blocks_per_row(len, kBlock);
  const double mom = s.momentum;
  for (int c = 0; c < s.c; ++c) {
    double sd = 0, sq = 0;
    for (int n = 0; n < s.n; ++n) {
      sd += row_sum(part, int64_t(n) * s.c + c, nb, 0);
      sq += row_sum(part, int64_t(n) * s.c + c, nb, 1);
    }
    const double mu = double(x[int64_t(c) * len]) + sd / double(m);
    const double ss = std::fmax(sq - sd * sd / double(m), 0.0);  // sum of squared deviations
    const double invstd = 1.0 / std::sqrt(ss / double(m) + double(s.eps));
    if (save_mean) save_mean[c] = static_cast<float>(mu);
    if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
    if (running_mean) running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mu);
    if (running_var) running_var[c] = static_cast<float>((1.0 - mom) * running_var[c] + mom * ss / double(m - 1));
    p.mean[size_t(c)] = mu;
    set_affine(p, size_t(c), c, invstd, gamma, beta);
  }
  normalize(y, x, p);
  return Status::Ok;
}

Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* running_mean, const float* running_var, const NormShape& s,
                                 const NormPrelu* prelu) {
  const char* op = "batch_norm3d_forward_eval";
  VX_TRY(check_shape(op, s));
  if (!y || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "%s: null y, x or running statistics", op);
  Plan p;
  VX_TRY(make_plan(op, p, s, false, prelu, false));
  for (int c = 0; c < s.c; ++c) {
    p.mean[size_t(c)] = running_mean[c];
    set_affine(p, size_t(c), c, 1.0 / std::sqrt(double(running_var[c]) + double(s.eps)), gamma, beta);
  }
  normalize(y, x, p);
  return Status::Ok;
}

Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                             const float* gamma, const float* save_mean, const float* save_invstd,
                             const NormShape& s, const NormPrelu* prelu) {
  const char* op = "batch_norm3d_backward";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "%s: null dy, x or saved statistics", op);
  if (!dx && !dgamma && !dbeta && !(prelu && prelu->dslope)) return Status::Ok;
  const int64_t nb = blocks_per_row(s.spatial, kBlock);
  const double m = double(int64_t(s.n) * s.spatial);
  Plan p;
  VX_TRY(make_plan(op, p, s, false, prelu, true));
  for (int c = 0; c < s.c; ++c) {
    p.mean[size_t(c)] = save_mean[c];
    set_affine(p, size_t(c), c, save_invstd[c], gamma, prelu ? prelu->beta : nullptr);
  }
  std::vector<double> part;
  VX_TRY(block_sums(op, part, p, x, dy, p.mean));
  const int stride = prelu ? 3 : 2;
  for (int c = 0; c < s.c; ++c) {
    double sdy = 0, sdyx = 0;  // sum(g), sum(g * (x - mean)), g: the gradient reaching the norm's output
    for (int n = 0; n < s.n; ++n) {
      sdy += row_sum(part, int64_t(n) * s.c + c, nb, 0, stride);
      sdyx += row_sum(part, int64_t(n) * s.c + c, nb, 1, stride);
    }
    const double inv = save_invstd[c], g = gamma ? double(gamma[c]) : 1.0;
    if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdy);
    if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdyx * inv);
    // dx = g * inv * (dy - sum(dy) / m - xhat * sum(dy * xhat) / m)
    p.k1[size_t(c)] = g * inv;
    p.k2[size_t(c)] = -g * inv * inv * inv * sdyx / m;
    p.k3[size_t(c)] = -g * inv * sdy / m;
  }
  add_slope_grad(p, part);
  if (dx) input_grad(dx, dy, x, p);
  return Status::Ok;
}

Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                  const float* gamma, const float* running_mean, const float* running_var,
                                  const NormShape& s, const NormPrelu* prelu) {
  const char* op = "batch_norm3d_backward_eval";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "%s: null dy, x or running statistics", op);
  const int64_t nb = blocks_per_row(s.spatial, kBlock);
  Plan p;
  VX_TRY(make_plan(op, p, s, false, prelu, true));
  std::vector<double> inv(size_t(s.c));
  for (int c = 0; c < s.c; ++c) {
    inv[size_t(c)] = 1.0 / std::sqrt(double(running_var[c]) + double(s.eps));
    p.mean[size_t(c)] = running_mean[c];
    set_affine(p, size_t(c), c, inv[size_t(c)], gamma, prelu ? prelu->beta : nullptr);
    p.k1[size_t(c)] = (gamma ? double(gamma[c]) : 1.0) * inv[size_t(c)];
  }
  if (dgamma || dbeta || (prelu && prelu->dslope)) {
    std::vector<double> part;
    VX_TRY(block_sums(op, part, p, x, dy, p.mean));
    const int stride = prelu ? 3 : 2;
    for (int c = 0; c < s.c; ++c) {
      double sdy = 0, sdyx = 0;
      for (int n = 0; n < s.n; ++n) {
        sdy += row_sum(part, int64_t(n) * s.c + c, nb, 0, stride);
        sdyx += row_sum(part, int64_t(n) * s.c + c, nb, 1, stride);
      }
      if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdy);
      if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdyx * inv[size_t(c)]);
    }
    add_slope_grad(p, part);
  }
  if (dx) input_grad(dx, dy, x, p);  // k2 = k3 = 0: the statistics are constants
  return Status::Ok;
}

Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x, const float* gamma,
                               const float* beta, const NormShape& s, const NormPrelu* prelu) {
  const char* op = "instance_norm3d_forward";
  VX_TRY(check_shape(op, s));
  if (!y || !x) return fail(Status::InvalidArgument, "%s: null y or x", op);
  if (s.spatial < 2)
    return fail(Status::InvalidArgument, "%s: expected more than 1 spatial element (spatial = 1)", op);
  const int64_t len = s.spatial, nb = blocks_per_row(len, kBlock);
  Plan p;
  VX_TRY(make_plan(op, p, s, true, prelu, false));
  for (int64_t row = 0; row < p.rows; ++row) p.mean[size_t(row)] = x[row * len];
  std::vector<double> part;
  VX_TRY(block_sums(op, part, p, x, nullptr, p.mean));
  for (int64_t row = 0; row < p.rows; ++row) {
    const int c = static_cast<int>(row % s.c);
    const double sd = row_sum(part, row, nb, 0), sq = row_sum(part, row, nb, 1);
    const double mu = double(x[row * len]) + sd / double(len);
    const double var = std::fmax(sq - sd * sd / double(len), 0.0) / double(len);
    const double invstd = 1.0 / std::sqrt(var + double(s.eps));
    if (save_mean) save_mean[row] = static_cast<float>(mu);
    if (save_invstd) save_invstd[row] = static_cast<float>(invstd);
    p.mean[size_t(row)] = mu;
    set_affine(p, size_t(row), c, invstd, gamma, beta);
  }
  normalize(y, x, p);
  return Status::Ok;
}

Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                const float* gamma, const float* save_mean, const float* save_invstd,
                                const NormShape& s, const NormPrelu* prelu) {
  const char* op = "instance_norm3d_backward";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "%s: null dy, x or saved statistics", op);
  if (!dx && !dgamma && !dbeta && !(prelu && prelu->dslope)) return Status::Ok;
  const int64_t nb = blocks_per_row(s.spatial, kBlock);
  const double m = double(s.spatial);
  Plan p;
  VX_TRY(make_plan(op, p, s, true, prelu, true));
  for (int64_t row = 0; row < p.rows; ++row) {
    p.mean[size_t(row)] = save_mean[row];
    set_affine(p, size_t(row), int(row % s.c), save_invstd[row], gamma, prelu ? prelu->beta : nullptr);
  }
  std::vector<double> part;
  VX_TRY(block_sums(op, part, p, x, dy, p.mean));
  const int stride = prelu ? 3 : 2;
  std::vector<double> sdg(size_t(s.c), 0.0), sdb(size_t(s.c), 0.0);
  for (int64_t row = 0; row < p.rows; ++row) {
    const int c = static_cast<int>(row % s.c);
    const double sdy = row_sum(part, row, nb, 0, stride), sdyx = row_sum(part, row, nb, 1, stride);
    const double inv = save_invstd[row], g = gamma ? double(gamma[c]) : 1.0;
    sdb[size_t(c)] += sdy;
    sdg[size_t(c)] += sdyx * inv;
    p.k1[size_t(row)] = g * inv;
    p.k2[size_t(row)] = -g * inv * inv * inv * sdyx / m;
    p.k3[size_t(row)] = -g * inv * sdy / m;
  }
  for (int c = 0; c < s.c; ++c) {
    if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdb[size_t(c)]);
    if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdg[size_t(c)]);
  }
  add_slope_grad(p, part);
  if (dx) input_grad(dx, dy, x, p);
  return Status::Ok;
}

}  // namespace vx
