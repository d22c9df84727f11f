// Activations, channel softmax, residual add and dropout over float32 NCDHW buffers (see activation.h).
// Elementwise loops are split over the thread pool; the one reduction (prelu's slope gradient) is
// summed per fixed block in double, so results do not depend on the thread count. prelu, sigmoid and
// softmax run as vmath.h vector kernels (AVX2 or baseline, same bits), with vm::exp_neg for e^x.
#include "activation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "parallel.h"
#include "rng.h"
#include "softmax_tile.h"
#include "vmath.h"

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

// --- Vector kernels (vmath.h): one body, compiled for AVX2 and the baseline ---------------------------------
using vm::f8;
using vm::d4;
using vm::kLanes;

struct PreluArgs {
  float* out;          // y (forward) or dx (backward, may be null)
  double* part;        // backward: per-block sums of dy * min(x, 0), or null when no slope gradient
  const float* dy;     // backward only
  const float* x;
  const float* a;
  int c;
  int64_t spatial;
  int num_a;
  float slope(int64_t row) const { return a[num_a == 1 ? 0 : row % c]; }
};

VXM_INLINE void prelu_forward_block_impl(const PreluArgs& p, int64_t row, int64_t lo, int64_t hi) {
  const f8 slope = vm::splat(p.slope(row)), zero = vm::splat(0.0f);
  const float* xr = p.x + row * p.spatial;
  float* yr = p.out + row * p.spatial;
  for (int64_t i = lo; i < hi; i += kLanes) {
    const f8 v = vm::load_n(xr + i, hi - i);
    vm::store_n(yr + i, vm::select(v > zero, v, slope * v), hi - i);
  }
}
VXM_DISPATCH(prelu_forward_block, (const PreluArgs& p, int64_t row, int64_t lo, int64_t hi), (p, row, lo, hi))

// One pass over the block for both gradients: dx = x > 0 ? dy : a * dy, and the block's
// sum of dy * min(x, 0) (products exact in double, one accumulator per lane i % 8).
template <bool kDx, bool kDa>
VXM_INLINE void prelu_backward_loop(const PreluArgs& p, int64_t item, int64_t row, int64_t lo, int64_t hi) {
  const f8 slope = vm::splat(p.slope(row)), zero = vm::splat(0.0f);
  const float* xr = p.x + row * p.spatial;
  const float* gr = p.dy + row * p.spatial;
  float* dr = p.out + row * p.spatial;
  d4 acc_lo = vm::splatd(0.0), acc_hi = vm::splatd(0.0);
  for (int64_t i = lo; i < hi; i += kLanes) {
    const f8 v = vm::load_n(xr + i, hi - i), g = vm::load_n(gr + i, hi - i);  // tail lanes: 0
    const auto pos = v > zero;
    if (kDx) vm::store_n(dr + i, vm::select(pos, g, slope * g), hi - i);
    if (kDa) {
      const f8 neg = vm::select(pos, zero, v);
      acc_lo += vm::lo_d(g) * vm::lo_d(neg);
      acc_hi += vm::hi_d(g) * vm::hi_d(neg);
    }
  }
  if (kDa) p.part[item] = vm::sum_lanes(acc_lo, acc_hi);
}
VXM_INLINE void prelu_backward_block_impl(const PreluArgs& p, int64_t item, int64_t row, int64_t lo, int64_t hi) {
  if (p.out && p.part) prelu_backward_loop<true, true>(p, item, row, lo, hi);
  else if (p.out) prelu_backward_loop<true, false>(p, item, row, lo, hi);
  else prelu_backward_loop<false, true>(p, item, row, lo, hi);
}
VXM_DISPATCH(prelu_backward_block, (const PreluArgs& p, int64_t item, int64_t row, int64_t lo, int64_t hi),
             (p, item, row, lo, hi))

// exp(-|x|) never overflows, and e / (1 + e) keeps tiny outputs (x << 0) relatively precise.
VXM_INLINE void sigmoid_range_impl(float* y, const float* x, int64_t lo, int64_t hi) {
  const f8 one = vm::splat(1.0f), zero = vm::splat(0.0f);
  for (int64_t i = lo; i < hi; i += kLanes) {
    const f8 v = vm::load_n(x + i, hi - i);
    const f8 e = vm::exp_neg(-vm::abs(v)), inv = one / (one + e);
    vm::store_n(y + i, vm::select(v >= zero, inv, e * inv), hi - i);
  }
}
VXM_DISPATCH(sigmoid_range, (float* y, const float* x, int64_t lo, int64_t hi), (y, x, lo, hi))

struct SoftmaxArgs {
  float* out;        // y (forward) or dx (backward)
  const float* in;   // x (forward) or y (backward)
  const float* dy;   // backward only
  int c;
  int64_t spatial;
};

// Channel-major sweeps over a tile keep every access contiguous; out holds the exponentials until they
// are scaled by 1/sum.
VXM_INLINE void softmax_forward_tile_impl(const SoftmaxArgs& a, int64_t in, int64_t lo, int64_t hi) {
  constexpr int kV = kSoftTile / kLanes;
  f8 inv[kV];
  const int64_t len = hi - lo, nv = (len + kLanes - 1) / kLanes, S = a.spatial;
  float* yb = a.out + in * a.c * S + lo;
  softmax_tile_exp<kV>(a.in + in * a.c * S + lo, S, yb, S, a.c, len, inv);
  for (int k = 0; k < a.c; ++k)
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t o = k * S + v * kLanes;
      vm::store_n(yb + o, vm::load_n(yb + o, len - v * kLanes) * inv[v], len - v * kLanes);
    }
}
VXM_DISPATCH(softmax_forward_tile, (const SoftmaxArgs& a, int64_t in, int64_t lo, int64_t hi), (a, in, lo, hi))

// dx = y * (dy - sum_k dy_k y_k), in double (the difference cancels where dy is nearly uniform).
VXM_INLINE void softmax_backward_tile_impl(const SoftmaxArgs& a, int64_t in, int64_t lo, int64_t hi) {
  constexpr int kV = kSoftTile / kLanes;
  d4 dot_lo[kV], dot_hi[kV];
  const int64_t len = hi - lo, nv = (len + kLanes - 1) / kLanes, S = a.spatial, base = in * a.c * S + lo;
  for (int64_t v = 0; v < nv; ++v) dot_lo[v] = dot_hi[v] = vm::splatd(0.0);
  for (int k = 0; k < a.c; ++k)
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t o = base + k * S + v * kLanes, n = len - v * kLanes;
      const f8 g = vm::load_n(a.dy + o, n), y = vm::load_n(a.in + o, n);
      dot_lo[v] += vm::lo_d(g) * vm::lo_d(y);
      dot_hi[v] += vm::hi_d(g) * vm::hi_d(y);
    }
  for (int k = 0; k < a.c; ++k)
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t o = base + k * S + v * kLanes, n = len - v * kLanes;
      const f8 g = vm::load_n(a.dy + o, n), y = vm::load_n(a.in + o, n);
      vm::store_n(a.out + o,
                  vm::narrow(vm::lo_d(y) * (vm::lo_d(g) - dot_lo[v]), vm::hi_d(y) * (vm::hi_d(g) - dot_hi[v])), n);
    }
}
VXM_DISPATCH(softmax_backward_tile, (const SoftmaxArgs& a, int64_t in, int64_t lo, int64_t hi), (a, in, lo, hi))

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
  const PreluArgs p{y, nullptr, nullptr, x, a, c, spatial, num_a};
  parallel_for_blocks(int64_t(n) * c, spatial, kBlock, kGrain,
                      [&](int64_t, int64_t row, int64_t lo, int64_t hi) { prelu_forward_block(p, row, lo, hi); });
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
  const PreluArgs p{dx, da ? part.data() : nullptr, dy, x, a, c, spatial, num_a};
  parallel_for_blocks(rows, spatial, kBlock, kGrain, [&](int64_t item, int64_t row, int64_t lo, int64_t hi) {
    prelu_backward_block(p, item, row, lo, hi);
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
  parallel_for(count, kGrain, [&](int64_t lo, int64_t hi) { sigmoid_range(y, x, lo, hi); });
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
  const SoftmaxArgs a{y, x, nullptr, c, spatial};
  for_softmax_tiles(n, c, spatial, [&](int64_t in, int64_t lo, int64_t hi) { softmax_forward_tile(a, in, lo, hi); });
  return Status::Ok;
}

Status softmax_backward(float* dx, const float* dy, const float* y, int n, int c, int64_t spatial) {
  VX_TRY(check_ncs("softmax_backward", n, c, spatial));
  if (!dy || !y) return fail(Status::InvalidArgument, "softmax_backward: null buffer");
  if (!dx) return Status::Ok;
  const SoftmaxArgs a{dx, y, dy, c, spatial};
  for_softmax_tiles(n, c, spatial, [&](int64_t in, int64_t lo, int64_t hi) { softmax_backward_tile(a, in, lo, hi); });
  return Status::Ok;
}

const char* output_activation_name(OutputActivation a) {
  switch (a) {
    case OutputActivation::None: return "none";
    case OutputActivation::Sigmoid: return "sigmoid";
    case OutputActivation::Softmax: return "softmax";
  }
  return "?";
}

bool parse_output_activation(const char* name, OutputActivation* out) {
  for (OutputActivation a : {OutputActivation::None, OutputActivation::Sigmoid, OutputActivation::Softmax})
    if (name && std::strcmp(name, output_activation_name(a)) == 0) {
      *out = a;
      return true;
    }
  return false;
}

Status output_activation_forward(float* y, const float* x, OutputActivation a, int n, int c, int64_t spatial) {
  VX_TRY(check_ncs("output_activation_forward", n, c, spatial));
  if (!y || !x) return fail(Status::InvalidArgument, "output_activation_forward: null buffer");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None:
      if (y != x) elementwise(count, [&](int64_t i) { y[i] = x[i]; });
      return Status::Ok;
    case OutputActivation::Sigmoid: return sigmoid_forward(y, x, count);
    case OutputActivation::Softmax: return softmax_forward(y, x, n, c, spatial);
  }
  return fail(Status::InvalidArgument, "output_activation_forward: unknown activation %d", static_cast<int>(a));
}

Status output_activation_backward(float* dx, const float* dy, const float* y, OutputActivation a, int n, int c,
                                  int64_t spatial) {
  VX_TRY(check_ncs("output_activation_backward", n, c, spatial));
  if (!dx || !dy || !y) return fail(Status::InvalidArgument, "output_activation_backward: null buffer");
  if (dx == dy || dx == y) return fail(Status::InvalidArgument, "output_activation_backward: dx must not alias dy or y");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None: elementwise(count, [&](int64_t i) { dx[i] = dy[i]; }); return Status::Ok;
    case OutputActivation::Sigmoid: return sigmoid_backward(dx, dy, y, count);
    case OutputActivation::Softmax: return softmax_backward(dx, dy, y, n, c, spatial);
  }
  return fail(Status::InvalidArgument, "output_activation_backward: unknown activation %d", static_cast<int>(a));
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
