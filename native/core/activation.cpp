// Activations, channel softmax, residual add and dropout over float32 NCDHW buffers (see activation.h).
// Elementwise loops are split over the thread pool; the one reduction (prelu's slope gradient) is
// summed per fixed block in double, so results do not depend on the thread count.
#include "activation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "parallel.h"
#include "rng.h"

namespace vx {

namespace {

constexpr int64_t kGrain = 1 << 15;   // elementwise values per parallel chunk at least
constexpr int64_t kBlock = 1 << 13;   // values per reduction block
constexpr int64_t kSoftTile = 256;    // spatial positions per softmax tile (stack scratch)

Status check_count(const char* op, int64_t count, const void* a, const void* b) {
  if (count < 0) return fail(Status::InvalidArgument, "%s: count %lld < 0", op, static_cast<long long>(count));
  if (count > 0 && (!a || !b)) return fail(Status::InvalidArgument, "%s: null buffer", op);
  return Status::Ok;
}

Status check_ncs(const char* op, int n, int c, int64_t spatial) {
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, n, c,
                static_cast<long long>(spatial));
  return Status::Ok;
}

// c ? a : b without a branch. GCC turns some float selects into jumps, which inputs of random sign
// mispredict half of the time (measured 5-20x slower for prelu/leaky_relu backward).
inline float select(bool c, float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  const uint32_t r = (ua & m) | (ub & ~m);
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

template <class Fn>
void elementwise(int64_t count, const Fn& fn) {
  parallel_for(count, kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) fn(i);
  });
}

// Softmax over channels for tiles of spatial positions: items are (n, tile) pairs.
template <class Fn>
void for_softmax_tiles(int n, int c, int64_t spatial, const Fn& fn) {
  parallel_for_blocks(n, spatial, kSoftTile, std::max<int64_t>(kSoftTile, kGrain / c),
                      [&](int64_t, int64_t row, int64_t lo, int64_t hi) { fn(row, lo, hi); });
}

}  // namespace

Status relu_forward(float* y, const float* x, int64_t count) {
  VX_TRY(check_count("relu_forward", count, y, x));
  elementwise(count, [&](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; });
  return Status::Ok;
}

Status relu_backward(float* dx, const float* dy, const float* x, int64_t count) {
  VX_TRY(check_count("relu_backward", count, dy, x));
  if (!dx) return Status::Ok;
  elementwise(count, [=](int64_t i) { dx[i] = select(x[i] > 0.0f, dy[i], 0.0f); });
  return Status::Ok;
}

Status prelu_forward(float* y, const float* x, const float* a, int n, int c, int64_t spatial, int num_a) {
  VX_TRY(check_ncs("prelu_forward", n, c, spatial));
  if (num_a != 1 && num_a != c)
    return fail(Status::InvalidArgument, "prelu_forward: num_a=%d must be 1 or c=%d", num_a, c);
  if (!y || !x || !a) return fail(Status::InvalidArgument, "prelu_forward: null buffer");
  parallel_for_blocks(int64_t(n) * c, spatial, kBlock, kGrain, [&](int64_t, int64_t row, int64_t lo, int64_t hi) {
    const float slope = a[num_a == 1 ? 0 : row % c];
    const float* xr = x + row * spatial;
    float* yr = y + row * spatial;
    // max(x, 0) + a * min(x, 0) is exact and branch-free (random signs defeat the branch predictor).
    for (int64_t i = lo; i < hi; ++i) yr[i] = std::max(xr[i], 0.0f) + slope * std::min(xr[i], 0.0f);
  });
  return Status::Ok;
}

Status prelu_backward(float* dx, float* da, const float* dy, const float* x, const float* a, int n, int c,
                      int64_t spatial, int num_a) {
  VX_TRY(check_ncs("prelu_backward", n, c, spatial));
  if (num_a != 1 && num_a != c)
    return fail(Status::InvalidArgument, "prelu_backward: num_a=%d must be 1 or c=%d", num_a, c);
  if (!dy || !x || !a) return fail(Status::InvalidArgument, "prelu_backward: null buffer");
  if (!dx && !da) return Status::Ok;
  const int64_t rows = int64_t(n) * c, nb = blocks_per_row(spatial, kBlock);
  std::vector<double> part;
  if (da) {
    try {
      part.assign(static_cast<size_t>(rows * nb), 0.0);
    } catch (const std::bad_alloc&) {
      return fail(Status::OutOfMemory, "prelu_backward: no memory for %lld partial sums",
                  static_cast<long long>(rows * nb));
    }
  }
  parallel_for_blocks(rows, spatial, kBlock, kGrain, [&](int64_t item, int64_t row, int64_t lo, int64_t hi) {
    const float slope = a[num_a == 1 ? 0 : row % c];
    const float* xr = x + row * spatial;
    const float* gr = dy + row * spatial;
    if (dx) {
      float* dr = dx + row * spatial;
      for (int64_t i = lo; i < hi; ++i) dr[i] = select(xr[i] > 0.0f, gr[i], slope * gr[i]);
    }
    if (da) {
      // sum over x <= 0 of dy * x (the select keeps it branch-free), in four chains by i % 4.
      double acc[4] = {0, 0, 0, 0};
      for (int64_t i = lo; i < hi; ++i) acc[i & 3] += double(gr[i]) * double(select(xr[i] > 0.0f, 0.0f, xr[i]));
      part[static_cast<size_t>(item)] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
  });
  if (da) {
    if (num_a == 1) {
      double s = 0;
      for (double v : part) s += v;
      da[0] = static_cast<float>(double(da[0]) + s);
    } else {
      for (int k = 0; k < c; ++k) {
        double s = 0;
        for (int in = 0; in < n; ++in)
          for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>((int64_t(in) * c + k) * nb + b)];
        da[k] = static_cast<float>(double(da[k]) + s);
      }
    }
  }
  return Status::Ok;
}

Status leaky_relu_forward(float* y, const float* x, int64_t count, float slope) {
  VX_TRY(check_count("leaky_relu_forward", count, y, x));
  elementwise(count, [=](int64_t i) { y[i] = std::max(x[i], 0.0f) + slope * std::min(x[i], 0.0f); });
  return Status::Ok;
}

Status leaky_relu_backward(float* dx, const float* dy, const float* x, int64_t count, float slope) {
  VX_TRY(check_count("leaky_relu_backward", count, dy, x));
  if (!dx) return Status::Ok;
  elementwise(count, [=](int64_t i) { dx[i] = select(x[i] > 0.0f, dy[i], slope * dy[i]); });
  return Status::Ok;
}

Status sigmoid_forward(float* y, const float* x, int64_t count) {
  VX_TRY(check_count("sigmoid_forward", count, y, x));
  // exp(-|x|) never overflows, and e / (1 + e) keeps tiny outputs (x << 0) relatively precise.
  elementwise(count, [&](int64_t i) {
    const float v = x[i], e = std::exp(-std::fabs(v)), inv = 1.0f / (1.0f + e);
    y[i] = select(v >= 0.0f, inv, e * inv);
  });
  return Status::Ok;
}

Status sigmoid_backward(float* dx, const float* dy, const float* y, int64_t count) {
  VX_TRY(check_count("sigmoid_backward", count, dy, y));
  if (!dx) return Status::Ok;
  elementwise(count, [&](int64_t i) { dx[i] = dy[i] * y[i] * (1.0f - y[i]); });
  return Status::Ok;
}

Status softmax_forward(float* y, const float* x, int n, int c, int64_t spatial) {
  VX_TRY(check_ncs("softmax_forward", n, c, spatial));
  if (!y || !x) return fail(Status::InvalidArgument, "softmax_forward: null buffer");
  // Channel-major sweeps over a tile keep every access contiguous; y holds the exponentials until
  // they are scaled by 1/sum.
  for_softmax_tiles(n, c, spatial, [&](int64_t in, int64_t lo, int64_t hi) {
    float mx[kSoftTile], sum[kSoftTile];
    const int64_t len = hi - lo;
    const float* xb = x + in * c * spatial + lo;
    float* yb = y + in * c * spatial + lo;
    for (int64_t s = 0; s < len; ++s) mx[s] = xb[s];
    for (int k = 1; k < c; ++k)
      for (int64_t s = 0; s < len; ++s) mx[s] = std::max(mx[s], xb[k * spatial + s]);
    for (int64_t s = 0; s < len; ++s) sum[s] = 0.0f;
    for (int k = 0; k < c; ++k)
      for (int64_t s = 0; s < len; ++s) {
        const float e = std::exp(xb[k * spatial + s] - mx[s]);
        yb[k * spatial + s] = e;
        sum[s] += e;
      }
    for (int64_t s = 0; s < len; ++s) sum[s] = 1.0f / sum[s];
    for (int k = 0; k < c; ++k)
      for (int64_t s = 0; s < len; ++s) yb[k * spatial + s] *= sum[s];
  });
  return Status::Ok;
}

Status softmax_backward(float* dx, const float* dy, const float* y, int n, int c, int64_t spatial) {
  VX_TRY(check_ncs("softmax_backward", n, c, spatial));
  if (!dy || !y) return fail(Status::InvalidArgument, "softmax_backward: null buffer");
  if (!dx) return Status::Ok;
  for_softmax_tiles(n, c, spatial, [&](int64_t in, int64_t lo, int64_t hi) {
    double dot[kSoftTile];
    const int64_t len = hi - lo, base = in * c * spatial + lo;
    for (int64_t s = 0; s < len; ++s) dot[s] = 0.0;
    for (int k = 0; k < c; ++k)
      for (int64_t s = 0; s < len; ++s) dot[s] += double(dy[base + k * spatial + s]) * y[base + k * spatial + s];
    for (int k = 0; k < c; ++k)
      for (int64_t s = 0; s < len; ++s) {
        const int64_t j = base + k * spatial + s;
        dx[j] = static_cast<float>(double(y[j]) * (double(dy[j]) - dot[s]));
      }
  });
  return Status::Ok;
}

Status add_forward(float* y, const float* a, const float* b, int64_t count) {
  VX_TRY(check_count("add_forward", count, a, b));
  if (count > 0 && !y) return fail(Status::InvalidArgument, "add_forward: null y");
  elementwise(count, [&](int64_t i) { y[i] = a[i] + b[i]; });
  return Status::Ok;
}

Status dropout_forward(float* y, float* mask, const float* x, int64_t count, float p, uint64_t seed,
                       uint64_t step) {
  VX_TRY(check_count("dropout_forward", count, y, x));
  if (!(p >= 0.0f && p < 1.0f)) return fail(Status::InvalidArgument, "dropout_forward: p=%g not in [0, 1)", p);
  const float scale = static_cast<float>(1.0 / (1.0 - double(p)));
  constexpr int64_t kTile = 256;
  parallel_for(count, kGrain, [&](int64_t lo, int64_t hi) {
    float u[kTile];
    for (int64_t t = lo; t < hi; t += kTile) {
      const int64_t len = std::min(kTile, hi - t);
      // Runs serially here: nested inside a parallel region, and a tile is below the fill's grain.
      philox_uniform_fill(u, len, seed, step, static_cast<uint64_t>(t));
      for (int64_t j = 0; j < len; ++j) {
        const float mk = u[j] >= p ? scale : 0.0f;
        if (mask) mask[t + j] = mk;
        y[t + j] = x[t + j] * mk;
      }
    }
  });
  return Status::Ok;
}

Status dropout_backward(float* dx, const float* dy, const float* mask, int64_t count) {
  VX_TRY(check_count("dropout_backward", count, dy, mask));
  if (!dx) return Status::Ok;
  elementwise(count, [&](int64_t i) { dx[i] = dy[i] * mask[i]; });
  return Status::Ok;
}

}  // namespace vx
