// batch_norm3d and instance_norm3d over float32 NCDHW activations (see norm.h).
// Statistics take one pass: every fixed block of a (n, c) row sums (x - K) and (x - K)^2 in double,
// K being the first value of the channel (batch norm) or row (instance norm) so that a large mean does
// not cancel the variance; partials are summed in block order, so results do not depend on the thread
// count. The elementwise passes evaluate each output in double and round once: an output near zero
// (x close to the mean, or a gradient whose terms cancel) keeps its relative precision.
#include "norm.h"

#include <cmath>
#include <new>
#include <vector>

#include "parallel.h"

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

// Two sums per block of every row: acc(row, i, a, b) adds value i's terms to a and b. Four
// independent accumulator chains per block (fixed lane = i % 4) keep the adds pipelined.
// part[2 * item] and part[2 * item + 1] receive the block's two sums.
template <class Acc>
Status block_sums(const char* op, std::vector<double>& part, int64_t rows, int64_t len, const Acc& acc) {
  const int64_t items = rows * blocks_per_row(len, kBlock);
  try {
    part.assign(static_cast<size_t>(2 * items), 0.0);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %lld partial sums", op, static_cast<long long>(items));
  }
  parallel_for_blocks(rows, len, kBlock, kGrain, [&](int64_t item, int64_t row, int64_t lo, int64_t hi) {
    double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    int64_t i = lo;
    for (; i + 4 <= hi; i += 4)
      for (int j = 0; j < 4; ++j) acc(row, i + j, a[j], b[j]);
    for (; i < hi; ++i) acc(row, i, a[0], b[0]);
    part[static_cast<size_t>(2 * item)] = (a[0] + a[1]) + (a[2] + a[3]);
    part[static_cast<size_t>(2 * item + 1)] = (b[0] + b[1]) + (b[2] + b[3]);
  });
  return Status::Ok;
}

// Sum of sums `which` (0 or 1) over the blocks of row `row`, in block order.
double row_sum(const std::vector<double>& part, int64_t row, int64_t nb, int which) {
  double s = 0;
  for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>(2 * (row * nb + b) + which)];
  return s;
}

// y[row] = (x[row] - mean[row]) * scale[row] + shift[row], per (n, c) row; `at` maps row -> index.
template <class At>
void normalize(float* y, const float* x, int64_t rows, int64_t len, const double* mean, const double* scale,
               const double* shift, const At& at) {
  parallel_for_blocks(rows, len, kBlock, kGrain, [&](int64_t, int64_t row, int64_t lo, int64_t hi) {
    const int64_t k = at(row);
    const double m = mean[k], sc = scale[k], sh = shift[k];
    const float* xr = x + row * len;
    float* yr = y + row * len;
    for (int64_t i = lo; i < hi; ++i) yr[i] = static_cast<float>((double(xr[i]) - m) * sc + sh);
  });
}

// dx = k1 * dy + k2 * (x - mean) + k3 per row: the input gradient of a normalization whose statistics
// depend on x (k2, k3 != 0) or not (k2 = k3 = 0).
template <class At>
void input_grad(float* dx, const float* dy, const float* x, int64_t rows, int64_t len, const double* mean,
                const double* k1, const double* k2, const double* k3, const At& at) {
  parallel_for_blocks(rows, len, kBlock, kGrain, [&](int64_t, int64_t row, int64_t lo, int64_t hi) {
    const int64_t k = at(row);
    const double m = mean[k], a = k1[k], b = k2[k], c = k3[k];
    const float* xr = x + row * len;
    const float* gr = dy + row * len;
    float* dr = dx + row * len;
    for (int64_t i = lo; i < hi; ++i) dr[i] = static_cast<float>(a * gr[i] + b * (double(xr[i]) - m) + c);
  });
}

template <class T>
Status alloc(const char* op, std::vector<T>& v, size_t n) {
  try {
    v.assign(n, T(0));
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "%s: no memory for %zu values", op, n);
  }
  return Status::Ok;
}

}  // namespace

Status batch_norm3d_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                  float* running_var, const float* x, const float* gamma, const float* beta,
                                  const NormShape& s) {
  const char* op = "batch_norm3d_forward_train";
  VX_TRY(check_shape(op, s));
  if (!y || !x) return fail(Status::InvalidArgument, "%s: null y or x", op);
  const int64_t m = int64_t(s.n) * s.spatial, rows = int64_t(s.n) * s.c, len = s.spatial;
  if (m < 2)
    return fail(Status::InvalidArgument, "%s: expected more than 1 value per channel (n*spatial = 1)", op);
  std::vector<double> part;
  VX_TRY(block_sums(op, part, rows, len, [&](int64_t row, int64_t i, double& a, double& b) {
    const double d = double(x[row * len + i]) - double(x[(row % s.c) * len]);
    a += d;
    b += d * d;
  }));
  std::vector<double> mean, scale, shift;
  VX_TRY(alloc(op, mean, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, scale, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, shift, static_cast<size_t>(s.c)));
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
    mean[c] = mu;
    scale[c] = (gamma ? double(gamma[c]) : 1.0) * invstd;
    shift[c] = beta ? double(beta[c]) : 0.0;
    if (save_mean) save_mean[c] = static_cast<float>(mu);
    if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
    if (running_mean) running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mu);
    if (running_var) running_var[c] = static_cast<float>((1.0 - mom) * running_var[c] + mom * ss / double(m - 1));
  }
  normalize(y, x, rows, len, mean.data(), scale.data(), shift.data(), [&](int64_t row) { return row % s.c; });
  return Status::Ok;
}

Status batch_norm3d_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* running_mean, const float* running_var, const NormShape& s) {
  const char* op = "batch_norm3d_forward_eval";
  VX_TRY(check_shape(op, s));
  if (!y || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "%s: null y, x or running statistics", op);
  std::vector<double> mean, scale, shift;
  VX_TRY(alloc(op, mean, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, scale, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, shift, static_cast<size_t>(s.c)));
  for (int c = 0; c < s.c; ++c) {
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(s.eps));
    mean[c] = running_mean[c];
    scale[c] = (gamma ? double(gamma[c]) : 1.0) * invstd;
    shift[c] = beta ? double(beta[c]) : 0.0;
  }
  normalize(y, x, int64_t(s.n) * s.c, s.spatial, mean.data(), scale.data(), shift.data(),
            [&](int64_t row) { return row % s.c; });
  return Status::Ok;
}

Status batch_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                             const float* gamma, const float* save_mean, const float* save_invstd,
                             const NormShape& s) {
  const char* op = "batch_norm3d_backward";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "%s: null dy, x or saved statistics", op);
  if (!dx && !dgamma && !dbeta) return Status::Ok;
  const int64_t rows = int64_t(s.n) * s.c, len = s.spatial, nb = blocks_per_row(len, kBlock);
  const double m = double(int64_t(s.n) * s.spatial);
  std::vector<double> part;
  VX_TRY(block_sums(op, part, rows, len, [&](int64_t row, int64_t i, double& a, double& b) {
    const double g = dy[row * len + i];
    a += g;
    b += g * (double(x[row * len + i]) - double(save_mean[row % s.c]));
  }));
  std::vector<double> k1, k2, k3, mean;
  VX_TRY(alloc(op, k1, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, k2, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, k3, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, mean, static_cast<size_t>(s.c)));
  for (int c = 0; c < s.c; ++c) {
    mean[c] = save_mean[c];
    double sdy = 0, sdyx = 0;  // sum(dy), sum(dy * (x - mean))
    for (int n = 0; n < s.n; ++n) {
      sdy += row_sum(part, int64_t(n) * s.c + c, nb, 0);
      sdyx += row_sum(part, int64_t(n) * s.c + c, nb, 1);
    }
    const double inv = save_invstd[c], g = gamma ? double(gamma[c]) : 1.0;
    if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdy);
    if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdyx * inv);
    // dx = g * inv * (dy - sum(dy) / m - xhat * sum(dy * xhat) / m)
    k1[c] = g * inv;
    k2[c] = -g * inv * inv * inv * sdyx / m;
    k3[c] = -g * inv * sdy / m;
  }
  if (dx)
    input_grad(dx, dy, x, rows, len, mean.data(), k1.data(), k2.data(), k3.data(),
               [&](int64_t row) { return row % s.c; });
  return Status::Ok;
}

Status batch_norm3d_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                  const float* gamma, const float* running_mean, const float* running_var,
                                  const NormShape& s) {
  const char* op = "batch_norm3d_backward_eval";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !running_mean || !running_var)
    return fail(Status::InvalidArgument, "%s: null dy, x or running statistics", op);
  const int64_t rows = int64_t(s.n) * s.c, len = s.spatial, nb = blocks_per_row(len, kBlock);
  std::vector<double> k1, zero, mean;
  VX_TRY(alloc(op, k1, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, zero, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, mean, static_cast<size_t>(s.c)));
  std::vector<double> inv;
  VX_TRY(alloc(op, inv, static_cast<size_t>(s.c)));
  for (int c = 0; c < s.c; ++c) {
    inv[c] = 1.0 / std::sqrt(double(running_var[c]) + double(s.eps));
    k1[c] = (gamma ? double(gamma[c]) : 1.0) * inv[c];
    mean[c] = running_mean[c];
  }
  if (dgamma || dbeta) {
    std::vector<double> part;
    VX_TRY(block_sums(op, part, rows, len, [&](int64_t row, int64_t i, double& a, double& b) {
      const double g = dy[row * len + i];
      a += g;
      b += g * (double(x[row * len + i]) - double(running_mean[row % s.c]));
    }));
    for (int c = 0; c < s.c; ++c) {
      double sdy = 0, sdyx = 0;
      for (int n = 0; n < s.n; ++n) {
        sdy += row_sum(part, int64_t(n) * s.c + c, nb, 0);
        sdyx += row_sum(part, int64_t(n) * s.c + c, nb, 1);
      }
      if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdy);
      if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdyx * inv[c]);
    }
  }
  if (dx)
    input_grad(dx, dy, x, rows, len, mean.data(), k1.data(), zero.data(), zero.data(),
               [&](int64_t row) { return row % s.c; });
  return Status::Ok;
}

Status instance_norm3d_forward(float* y, float* save_mean, float* save_invstd, const float* x, const float* gamma,
                               const float* beta, const NormShape& s) {
  const char* op = "instance_norm3d_forward";
  VX_TRY(check_shape(op, s));
  if (!y || !x) return fail(Status::InvalidArgument, "%s: null y or x", op);
  if (s.spatial < 2)
    return fail(Status::InvalidArgument, "%s: expected more than 1 spatial element (spatial = 1)", op);
  const int64_t rows = int64_t(s.n) * s.c, len = s.spatial, nb = blocks_per_row(len, kBlock);
  std::vector<double> part;
  VX_TRY(block_sums(op, part, rows, len, [&](int64_t row, int64_t i, double& a, double& b) {
    const double d = double(x[row * len + i]) - double(x[row * len]);
    a += d;
    b += d * d;
  }));
  std::vector<double> mean, scale, shift;
  VX_TRY(alloc(op, mean, static_cast<size_t>(rows)));
  VX_TRY(alloc(op, scale, static_cast<size_t>(rows)));
  VX_TRY(alloc(op, shift, static_cast<size_t>(rows)));
  for (int64_t row = 0; row < rows; ++row) {
    const int c = static_cast<int>(row % s.c);
    const double sd = row_sum(part, row, nb, 0), sq = row_sum(part, row, nb, 1);
    const double mu = double(x[row * len]) + sd / double(len);
    const double var = std::fmax(sq - sd * sd / double(len), 0.0) / double(len);
    const double invstd = 1.0 / std::sqrt(var + double(s.eps));
    mean[row] = mu;
    scale[row] = (gamma ? double(gamma[c]) : 1.0) * invstd;
    shift[row] = beta ? double(beta[c]) : 0.0;
    if (save_mean) save_mean[row] = static_cast<float>(mu);
    if (save_invstd) save_invstd[row] = static_cast<float>(invstd);
  }
  normalize(y, x, rows, len, mean.data(), scale.data(), shift.data(), [](int64_t row) { return row; });
  return Status::Ok;
}

Status instance_norm3d_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                const float* gamma, const float* save_mean, const float* save_invstd,
                                const NormShape& s) {
  const char* op = "instance_norm3d_backward";
  VX_TRY(check_shape(op, s));
  if (!dy || !x || !save_mean || !save_invstd)
    return fail(Status::InvalidArgument, "%s: null dy, x or saved statistics", op);
  if (!dx && !dgamma && !dbeta) return Status::Ok;
  const int64_t rows = int64_t(s.n) * s.c, len = s.spatial, nb = blocks_per_row(len, kBlock);
  const double m = double(len);
  std::vector<double> part;
  VX_TRY(block_sums(op, part, rows, len, [&](int64_t row, int64_t i, double& a, double& b) {
    const double g = dy[row * len + i];
    a += g;
    b += g * (double(x[row * len + i]) - double(save_mean[row]));
  }));
  std::vector<double> k1, k2, k3, mean;
  VX_TRY(alloc(op, k1, static_cast<size_t>(rows)));
  VX_TRY(alloc(op, k2, static_cast<size_t>(rows)));
  VX_TRY(alloc(op, k3, static_cast<size_t>(rows)));
  VX_TRY(alloc(op, mean, static_cast<size_t>(rows)));
  std::vector<double> sdg, sdb;
  VX_TRY(alloc(op, sdg, static_cast<size_t>(s.c)));
  VX_TRY(alloc(op, sdb, static_cast<size_t>(s.c)));
  for (int64_t row = 0; row < rows; ++row) {
    const int c = static_cast<int>(row % s.c);
    const double sdy = row_sum(part, row, nb, 0), sdyx = row_sum(part, row, nb, 1);
    const double inv = save_invstd[row], g = gamma ? double(gamma[c]) : 1.0;
    mean[row] = save_mean[row];
    sdb[c] += sdy;
    sdg[c] += sdyx * inv;
    k1[row] = g * inv;
    k2[row] = -g * inv * inv * inv * sdyx / m;
    k3[row] = -g * inv * sdy / m;
  }
  for (int c = 0; c < s.c; ++c) {
    if (dbeta) dbeta[c] = static_cast<float>(double(dbeta[c]) + sdb[c]);
    if (dgamma) dgamma[c] = static_cast<float>(double(dgamma[c]) + sdg[c]);
  }
  if (dx)
    input_grad(dx, dy, x, rows, len, mean.data(), k1.data(), k2.data(), k3.data(), [](int64_t row) { return row; });
  return Status::Ok;
}

}  // namespace vx
