// Losses and Gaussian latent ops over float32 buffers (see loss.h).
// Every sum is kept in double per fixed block (and, inside a block, in four chains chosen by the
// absolute index mod 4), then added in block order: the loss is bit-identical for any thread count.
// dice_loss takes two passes over memory: the first validates the labels and computes the softmax and
// the per-(n, c) sums; the second writes the gradient. For two classes (the usual case) neither pass
// stores the softmax: each recomputes it from the logits with one exponential per position, which
// costs less than writing and reading it back. For other class counts the first pass keeps it in grad
// and the second turns it into the gradient in place. Both are vmath.h vector kernels (AVX2 or the
// baseline, same bits); a sum's lane is its index mod 8 instead of mod 4 there.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "parallel.h"
#include "rng.h"
#include "softmax_tile.h"
#include "vmath.h"

namespace vx {

namespace {

constexpr int64_t kBlock = 1 << 14;  // values per reduction block (elementwise losses)
constexpr int64_t kGrain = 1 << 15;  // values per parallel chunk at least
constexpr int64_t kSpan = 1 << 13;   // spatial positions per dice work item
constexpr int64_t kTile = 256;       // spatial positions per dice tile (stack scratch); multiple of 8
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


// --- Dice kernels (vmath.h: one body, compiled for AVX2 and the baseline) ----------------------------------
// Per (work item, class), kAcc doubles: 8 lanes of sum(p * g), 8 lanes of sum(p), and the count of g;
// a position's lane is its index mod 8 (items and tiles start at multiples of 8).
using vm::f8;
using vm::d4;
using vm::i8;
using vm::kLanes;
constexpr int kAcc = 2 * vm::kLanes + 1;

struct DiceArgs {
  float* grad = nullptr;          // pass 2 output (may be null: loss only)
  const float* logits = nullptr;  // [n, c, spatial]
  const float* labels = nullptr;  // [n, spatial]
  int c = 0;
  int64_t spatial = 0;
  float* pstore = nullptr;        // c != 2: where pass 1 keeps p (grad or heap), or null (stack tiles)
  int64_t tile = kTile;           // c != 2: positions per tile
  double* part = nullptr;         // pass 1: kAcc per (item, class)
  int64_t* bad = nullptr;         // pass 1: first invalid label index per item, or -1
  const double* coef_a = nullptr; // pass 2 (c != 2): d(loss)/dp = a - b * g per (n, class)
  const double* coef_b = nullptr;
  const float* diff = nullptr;    // pass 2 (c == 2): dp_0 - dp_1 per (n, label)
};

VXM_INLINE double lane_sum(const double* l) { return vm::sum_lanes(vm::loadd(l), vm::loadd(l + 4)); }
VXM_INLINE void add_lanes(double* acc, const d4& lo, const d4& hi) {
  vm::stored(acc, vm::loadd(acc) + lo);
  vm::stored(acc + 4, vm::loadd(acc + 4) + hi);
}
VXM_INLINE int32_t lanes_sum(const i8& v) {
  int32_t s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}
VXM_INLINE bool any_lane(const i8& m) {
  int32_t s = 0;
  for (int j = 0; j < kLanes; ++j) s |= m[j];
  return s != 0;
}

// Labels that are not a class: not in [0, c) (NaN included) or not integral. Tail lanes are valid.
VXM_INLINE i8 bad_labels(const f8& l, float cf, int64_t n) {
  const i8 in = (l >= vm::splat(0.0f)) & (l < vm::splat(cf));
  const f8 lc = vm::select(in, l, vm::splat(0.0f));  // converted only where in range
  const i8 ok = in & (vm::to_float(vm::to_int(lc)) == lc);
  return n < kLanes ? ~ok & vm::first_lanes(n) : ~ok;
}
// Records the first invalid label of positions [lo, hi) of sample `in` (the scalar twin of bad_labels).
inline void record_bad(const DiceArgs& d, int64_t item, int64_t in, int64_t lo, int64_t hi) {
  const float* lb = d.labels + in * d.spatial;
  for (int64_t s = lo; s < hi; ++s) {
    const float l = lb[s];
    if (!(l >= 0.0f && l < float(d.c)) || static_cast<float>(static_cast<int>(l)) != l) {
      d.bad[item] = in * d.spatial + s;
      return;
    }
  }
}

// Two classes: p_1 = 1 / (1 + e) or e / (1 + e) with e = exp(-|x_1 - x_0|), one exponential per position
// (bit-identical to the general max-subtracted softmax, whose larger exponential is exp(0) = 1).
VXM_INLINE void softmax2(const f8& x0, const f8& x1, f8* p0, f8* p1) {
  const f8 dlt = x1 - x0, one = vm::splat(1.0f);
  const f8 e = vm::exp_neg(-vm::abs(dlt)), inv = one / (one + e), small = e * inv;
  const i8 first = dlt > vm::splat(0.0f);
  *p0 = vm::select(first, small, inv);
  *p1 = vm::select(first, inv, small);
}

// Pass 1 for c == 2, one work item: labels checked, softmax recomputed (nothing stored), sums kept in
// registers.
VXM_INLINE void dice2_sums_impl(const DiceArgs& d, int64_t item, int64_t in, int64_t lo, int64_t hi) {
  const float* x0p = d.logits + in * 2 * d.spatial;
  const float* x1p = x0p + d.spatial;
  const float* lb = d.labels + in * d.spatial;
  const f8 zero = vm::splat(0.0f), one = vm::splat(1.0f);
  d4 i0l = vm::splatd(0.0), i0h = i0l, i1l = i0l, i1h = i0l, s0l = i0l, s0h = i0l, s1l = i0l, s1h = i0l;
  i8 n0 = vm::splati(0), n1 = n0;
  for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
    const int64_t t1 = std::min(hi, t0 + kTile);
    i8 bad = vm::splati(0);
    for (int64_t i = t0; i < t1; i += kLanes) bad |= bad_labels(vm::load_n(lb + i, t1 - i), 2.0f, t1 - i);
    if (any_lane(bad)) return record_bad(d, item, in, t0, t1);
    for (int64_t i = t0; i < t1; i += kLanes) {
      const int64_t m = t1 - i;
      f8 p0, p1;
      softmax2(vm::load_n(x0p + i, m), vm::load_n(x1p + i, m), &p0, &p1);
      const f8 l = vm::load_n(lb + i, m);
      i8 g0 = l == zero, g1 = l == one;
      if (m < kLanes) {  // tail: lanes past the end count for nothing
        const i8 v = vm::first_lanes(m);
        p0 = vm::select(v, p0, zero);
        p1 = vm::select(v, p1, zero);
        g0 &= v;
        g1 &= v;
      }
      s0l += vm::lo_d(p0);
      s0h += vm::hi_d(p0);
      s1l += vm::lo_d(p1);
      s1h += vm::hi_d(p1);
      const f8 q0 = vm::select(g0, p0, zero), q1 = vm::select(g1, p1, zero);
      i0l += vm::lo_d(q0);
      i0h += vm::hi_d(q0);
      i1l += vm::lo_d(q1);
      i1h += vm::hi_d(q1);
      n0 -= g0;  // masks are -1
      n1 -= g1;
    }
  }
  double* acc = d.part + item * 2 * kAcc;
  add_lanes(acc, i0l, i0h);
  add_lanes(acc + kLanes, s0l, s0h);
  acc[2 * kLanes] += lanes_sum(n0);
  add_lanes(acc + kAcc, i1l, i1h);
  add_lanes(acc + kAcc + kLanes, s1l, s1h);
  acc[kAcc + 2 * kLanes] += lanes_sum(n1);
}
VXM_DISPATCH(dice2_sums, (const DiceArgs& d, int64_t item, int64_t in, int64_t lo, int64_t hi), (d, item, in, lo, hi))

// Pass 2 for c == 2: grad_0 = p_0 p_1 (dp_0 - dp_1) = -grad_1, the difference taken per label in double
// and rounded once, so that it stays accurate where dp_0 and dp_1 nearly cancel.
VXM_INLINE void dice2_grad_impl(const DiceArgs& d, int64_t in, int64_t lo, int64_t hi) {
  const float* x0p = d.logits + in * 2 * d.spatial;
  const float* x1p = x0p + d.spatial;
  const float* lb = d.labels + in * d.spatial;
  float* g0p = d.grad + in * 2 * d.spatial;
  float* g1p = g0p + d.spatial;
  const f8 t0 = vm::splat(d.diff[2 * in]), t1 = vm::splat(d.diff[2 * in + 1]), zero = vm::splat(0.0f);
  for (int64_t i = lo; i < hi; i += kLanes) {
    const int64_t m = hi - i;
    f8 p0, p1;
    softmax2(vm::load_n(x0p + i, m), vm::load_n(x1p + i, m), &p0, &p1);
    const f8 g = (p0 * p1) * vm::select(vm::load_n(lb + i, m) == zero, t0, t1);
    vm::store_n(g0p + i, g, m);
    vm::store_n(g1p + i, -g, m);
  }
}
VXM_DISPATCH(dice2_grad, (const DiceArgs& d, int64_t in, int64_t lo, int64_t hi), (d, in, lo, hi))

// Pass 1 for any c: per tile, labels checked, max, exponentials and their sum, p = e / sum stored
// (pstore or stack scratch), and the sums.
VXM_INLINE void dice_sums_impl(const DiceArgs& d, int64_t item, int64_t in, int64_t lo, int64_t hi) {
  constexpr int64_t kV = kTile / kLanes;
  f8 inv[kV], lab[kV];
  float scratch[kScratch];
  const int c = d.c;
  const int64_t S = d.spatial;
  const float* xb = d.logits + in * c * S;
  const float* lb = d.labels + in * S;
  const f8 zero = vm::splat(0.0f);
  double* pp = d.part + item * c * kAcc;
  for (int64_t t0 = lo; t0 < hi; t0 += d.tile) {
    const int64_t len = std::min(d.tile, hi - t0), nv = (len + kLanes - 1) / kLanes;
    i8 bad = vm::splati(0);
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t m = len - v * kLanes;
      const f8 l = vm::load_n(lb + t0 + v * kLanes, m);
      bad |= bad_labels(l, float(c), m);
      lab[v] = m < kLanes ? vm::select(vm::first_lanes(m), l, vm::splat(-1.0f)) : l;  // tail: no class
    }
    if (any_lane(bad)) return record_bad(d, item, in, t0, t0 + len);
    float* pb = d.pstore ? d.pstore + in * c * S + t0 : scratch;
    const int64_t ps = d.pstore ? S : len;  // channel stride of pb
    softmax_tile_exp<kV>(xb + t0, S, pb, ps, c, len, inv);  // the model's own softmax (activation.cpp)
    for (int k = 0; k < c; ++k) {
      const f8 kf = vm::splat(float(k));
      d4 il = vm::splatd(0.0), ih = il, sl = il, sh = il;
      i8 cnt = vm::splati(0);
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t m = len - v * kLanes;
        f8 p = vm::load_n(pb + k * ps + v * kLanes, m) * inv[v];
        vm::store_n(pb + k * ps + v * kLanes, p, m);
        if (m < kLanes) p = vm::select(vm::first_lanes(m), p, zero);
        const i8 g = lab[v] == kf;
        const f8 q = vm::select(g, p, zero);
        sl += vm::lo_d(p);
        sh += vm::hi_d(p);
        il += vm::lo_d(q);
        ih += vm::hi_d(q);
        cnt -= g;
      }
      double* acc = pp + k * kAcc;
      add_lanes(acc, il, ih);
      add_lanes(acc + kLanes, sl, sh);
      acc[2 * kLanes] += lanes_sum(cnt);
    }
  }
}
VXM_DISPATCH(dice_sums, (const DiceArgs& d, int64_t item, int64_t in, int64_t lo, int64_t hi), (d, item, in, lo, hi))

// Pass 2 for any c: grad_k = p_k * (dp_k - sum_j p_j dp_j), dp_k = a_k - b_k [label == k]; grad holds p
// on entry. It is evaluated in double as p_k * (dp_k * sum_j p_j - sum_j p_j dp_j) = p_k * sum_j p_j
// (dp_k - dp_j): with the stored (float) p the terms still cancel exactly where the true ones do.
VXM_INLINE void dice_grad_impl(const DiceArgs& d, int64_t in, int64_t lo, int64_t hi) {
  constexpr int64_t kV = kTile / kLanes;
  d4 dot_lo[kV], dot_hi[kV], ps_lo[kV], ps_hi[kV];
  f8 lab[kV];
  const int c = d.c;
  const int64_t S = d.spatial;
  const double* a = d.coef_a + in * c;
  const double* b = d.coef_b + in * c;
  float* gb = d.grad + in * c * S;
  const float* lb = d.labels + in * S;
  const f8 zero = vm::splat(0.0f), one = vm::splat(1.0f);
  for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
    const int64_t len = std::min(kTile, hi - t0), nv = (len + kLanes - 1) / kLanes;
    for (int64_t v = 0; v < nv; ++v) {
      lab[v] = vm::load_n(lb + t0 + v * kLanes, len - v * kLanes);
      dot_lo[v] = dot_hi[v] = ps_lo[v] = ps_hi[v] = vm::splatd(0.0);
    }
    for (int k = 0; k < c; ++k) {
      const d4 ak = vm::splatd(a[k]), bk = vm::splatd(b[k]);
      const f8 kf = vm::splat(float(k));
      for (int64_t v = 0; v < nv; ++v) {
        const f8 p = vm::load_n(gb + k * S + t0 + v * kLanes, len - v * kLanes);
        const f8 g = vm::select(lab[v] == kf, one, zero);
        const d4 pl = vm::lo_d(p), ph = vm::hi_d(p);
        dot_lo[v] += pl * (ak - bk * vm::lo_d(g));
        dot_hi[v] += ph * (ak - bk * vm::hi_d(g));
        ps_lo[v] += pl;
        ps_hi[v] += ph;
      }
    }
    for (int k = 0; k < c; ++k) {
      const d4 ak = vm::splatd(a[k]), bk = vm::splatd(b[k]);
      const f8 kf = vm::splat(float(k));
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t m = len - v * kLanes;
        float* gp = gb + k * S + t0 + v * kLanes;
        const f8 p = vm::load_n(gp, m);
        const f8 g = vm::select(lab[v] == kf, one, zero);
        const d4 dl = ak - bk * vm::lo_d(g), dh = ak - bk * vm::hi_d(g);
        const d4 g_lo = vm::lo_d(p) * (dl * ps_lo[v] - dot_lo[v]), g_hi = vm::hi_d(p) * (dh * ps_hi[v] - dot_hi[v]);
        vm::store_n(gp, vm::narrow(g_lo, g_hi), m);
      }
    }
  }
}
VXM_DISPATCH(dice_grad, (const DiceArgs& d, int64_t in, int64_t lo, int64_t hi), (d, in, lo, hi))

}  // namespace

Status dice_loss(double* loss, float* grad, const float* logits, const float* labels, int n, int c, int64_t spatial,
                 const DiceOptions& o) {
  const char* op = "dice_loss";
  const float smooth_nr = o.smoothNr, smooth_dr = o.smoothDr, weight = o.weight;
  const Reduction r = o.reduction;
  if (!loss || !logits || !labels) return fail(Status::InvalidArgument, "%s: null loss, logits or labels", op);
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, n, c,
                static_cast<long long>(spatial));
  VX_TRY(check_reduction(op, r));

  DiceArgs d;
  d.grad = grad;
  d.logits = logits;
  d.labels = labels;
  d.c = c;
  d.spatial = spatial;
  // c != 2: the softmax lives in grad (stride spatial) when there is one, else in per-tile stack
  // scratch, or, for channel counts whose tile would not fit it, in a full heap buffer.
  std::vector<float> heap;
  if (c != 2) {
    d.pstore = grad;
    if (!grad && c > kScratch / vm::kLanes) {
      VX_TRY(alloc(op, heap, static_cast<size_t>(int64_t(n) * c * spatial), 0.0f));
      d.pstore = heap.data();
    }
    // A multiple of the vector width, so that every position keeps its accumulator lane either way.
    d.tile = d.pstore ? kTile : std::min<int64_t>(kTile, kScratch / c / vm::kLanes * vm::kLanes);
  }

  const int64_t nb = blocks_per_row(spatial, kSpan), items = int64_t(n) * nb;
  std::vector<double> part;
  std::vector<int64_t> bad;  // first invalid label index per item, or -1
  VX_TRY(alloc(op, part, static_cast<size_t>(items * c * kAcc), 0.0));
  VX_TRY(alloc(op, bad, static_cast<size_t>(items), int64_t(-1)));
  d.part = part.data();
  d.bad = bad.data();
  const int64_t min_chunk = std::max<int64_t>(kSpan, kGrain / c);

  parallel_for_blocks(n, spatial, kSpan, min_chunk, [&](int64_t item, int64_t in, int64_t lo, int64_t hi) {
    if (c == 2) dice2_sums(d, item, in, lo, hi);
    else dice_sums(d, item, in, lo, hi);
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
        const double* acc = part.data() + ((int64_t(in) * nb + b) * c + k) * kAcc;
        inter += lane_sum(acc);
        psum += lane_sum(acc + vm::kLanes);
        gsum += acc[2 * vm::kLanes];
      }
      const double num = 2.0 * inter + double(smooth_nr), den = gsum + psum + double(smooth_dr);
      total += 1.0 - num / den;
      coef_a[in * c + k] = scale * num / (den * den);
      coef_b[in * c + k] = scale * 2.0 / den;
    }
  *loss = total * scale;
  if (!grad) return Status::Ok;

  std::vector<float> diff;  // c == 2: per sample, dp_0 - dp_1 for label 0 and for label 1
  if (c == 2) {
    VX_TRY(alloc(op, diff, static_cast<size_t>(2 * n), 0.0f));
    for (int in = 0; in < n; ++in) {
      const double a0 = coef_a[2 * in], a1 = coef_a[2 * in + 1], b0 = coef_b[2 * in], b1 = coef_b[2 * in + 1];
      diff[2 * in] = static_cast<float>((a0 - b0) - a1);
      diff[2 * in + 1] = static_cast<float>(a0 - (a1 - b1));
    }
  }
  d.coef_a = coef_a.data();
  d.coef_b = coef_b.data();
  d.diff = diff.data();
  parallel_for_blocks(n, spatial, kSpan, min_chunk, [&](int64_t, int64_t in, int64_t lo, int64_t hi) {
    if (c == 2) dice2_grad(d, in, lo, hi);
    else dice_grad(d, in, lo, hi);
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
