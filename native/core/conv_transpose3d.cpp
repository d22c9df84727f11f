// conv_transpose3d: shape validation and the optimized float kernels (see conv_transpose3d.h).
//
// The forward pass (and with it conv3d's backward-data) is a gather: along each axis the output positions
// o split into residue classes q = o mod stride, and class q only meets the taps a = q + p (mod stride),
// reading input t + (q + p - a) / stride for o = q + stride * t. Within one class (qd, qh, qw) the transposed convolution is therefore a
// stride-1 correlation over the class's sub-grid with its own taps, which runs as an implicit GEMM like
// conv3d forward (or as conv_direct for a handful of output channels): no multiplications by the
// structural zeros of a dilated input (8x fewer than the naive gather for stride 2 in 3-D) and no col2im
// scatter-add. The GEMM's C tile is then stored to the class's strided positions (each output voxel is
// written exactly once). Work items are (tile, sample, class[, channel block]).
// conv3d's backward-data is this same forward (conv3d.cpp calls it); this op's backward-data is conv3d
// forward and its backward-weight is conv3d's backward-weight with the roles of x and dy swapped.
#include "conv_transpose3d.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <vector>

#include "gemm.h"
#include "parallel.h"

namespace vx {

Status conv_transpose3d_shape(Conv3dShape& s) {
  int o[3];
  VX_TRY(conv_validate("conv_transpose3d", true, s, o));
  s.od = o[0];
  s.oh = o[1];
  s.ow = o[2];
  return Status::Ok;
}

Status conv_transpose3d_check(const Conv3dShape& s) {
  int o[3];
  VX_TRY(conv_validate("conv_transpose3d", true, s, o));
  if (s.od != o[0] || s.oh != o[1] || s.ow != o[2])
    return fail(Status::InvalidArgument,
                "conv_transpose3d: output (od, oh, ow) = (%d, %d, %d) but the shape gives (%d, %d, %d); fill "
                "it with conv_transpose3d_shape",
                s.od, s.oh, s.ow, o[0], o[1], o[2]);
  return Status::Ok;
}

namespace {

// Residue classes of one axis (see the top of the file).
struct AxisClasses {
  std::vector<int64_t> count;  // [stride]: output positions o < out with o mod stride == q
  std::vector<int64_t> begin;  // [stride + 1]: class q's taps are tap[begin[q] .. begin[q + 1])
  std::vector<int64_t> tap;    // kernel index a
  std::vector<int64_t> off;    // (q + p - a) / stride: input index = t + off

  void build(int64_t out, int64_t stride, int64_t pad, int64_t k) {
    count.assign(size_t(stride), 0);
    begin.assign(size_t(stride) + 1, 0);
    tap.clear();
    off.clear();
    for (int64_t q = 0; q < stride; ++q) {
      count[size_t(q)] = q < out ? (out - q + stride - 1) / stride : 0;
      begin[size_t(q)] = int64_t(tap.size());
      for (int64_t a = (q + pad) % stride; a < k; a += stride) {
        tap.push_back(a);
        off.push_back((q + pad - a) / stride);  // exact: q + pad - a is a multiple of stride
      }
    }
    begin[size_t(stride)] = int64_t(tap.size());
  }
  int64_t ntaps(int64_t q) const { return begin[size_t(q) + 1] - begin[size_t(q)]; }
};

}  // namespace

Status conv_transpose3d_forward(float* y, const float* x, const float* w, const float* b,
                                const Conv3dShape& s) {
  VX_TRY(conv_transpose3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv_transpose3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  const int64_t N = s.n, cin = s.cin, cout = s.cout;
  const int64_t kd = s.kd, kh = s.kh, kw = s.kw;
  const int64_t OH = s.oh, OW = s.ow, P = int64_t(s.od) * OH * OW;
  const int64_t IS = int64_t(s.id) * s.ih * s.iw;
  const int64_t st[3] = {s.sd, s.sh, s.sw};
  const int64_t classes = st[0] * st[1] * st[2];

  // Per-call tables, kept per calling thread so steady state allocates nothing.
  // Per-call tables, kept per calling thread so steady state allocates nothing. The workers must see the
  // caller's copies, so they are reached through plain pointers (a thread_local named inside a lambda
  // would be the worker's own).
  thread_local AxisClasses t_axc[3];
  thread_local std::vector<int64_t> t_woff;
  try {
    t_axc[0].build(s.od, s.sd, s.pd, kd);
    t_axc[1].build(s.oh, s.sh, s.ph, kh);
    t_axc[2].build(s.ow, s.sw, s.pw, kw);
    t_woff.assign(size_t(classes) + 1, 0);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "conv_transpose3d_forward: out of memory for class tables");
  }
  const AxisClasses* axc = t_axc;
  int64_t* woff = t_woff.data();  // [classes + 1]: class c's packed weight starts at woff[c]
  struct Class {
    int64_t q[3], n[3], taps[3], positions, ntap;
  };
  auto cls = [&](int64_t c) {
    Class r;
    r.q[2] = c % st[2];
    r.q[1] = (c / st[2]) % st[1];
    r.q[0] = c / (st[2] * st[1]);
    for (int a = 0; a < 3; ++a) {
      r.n[a] = axc[a].count[size_t(r.q[a])];
      r.taps[a] = axc[a].ntaps(r.q[a]);
    }
    r.positions = r.n[0] * r.n[1] * r.n[2];
    r.ntap = r.taps[0] * r.taps[1] * r.taps[2];
    return r;
  };
  int64_t kmax = 0, pmax = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const Class k = cls(c);
    woff[size_t(c) + 1] = woff[size_t(c)] + cout * cin * k.ntap;
    kmax = std::max(kmax, cin * k.ntap);
    pmax = std::max(pmax, k.positions);
  }

  // Weights per class as a row-major [cout, cin * ntap] GEMM operand (rows in im2col_tile's order).
  float* wc = scratch(kScratchCall1, std::max<int64_t>(woff[size_t(classes)], 1));
  if (!wc) return fail(Status::OutOfMemory, "conv_transpose3d_forward: out of memory for packed weights");
  parallel_for(cout, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t co = lo; co < hi; ++co) {
      for (int64_t c = 0; c < classes; ++c) {
        const Class k = cls(c);
        float* d = wc + woff[size_t(c)] + co * cin * k.ntap;
        const int64_t* ta = axc[0].tap.data() + axc[0].begin[size_t(k.q[0])];
        const int64_t* tb = axc[1].tap.data() + axc[1].begin[size_t(k.q[1])];
        const int64_t* tc = axc[2].tap.data() + axc[2].begin[size_t(k.q[2])];
        for (int64_t ci = 0; ci < cin; ++ci) {
          const float* wk = w + (ci * cout + co) * kd * kh * kw;
          for (int64_t u = 0; u < k.taps[0]; ++u)
            for (int64_t v = 0; v < k.taps[1]; ++v)
              for (int64_t t = 0; t < k.taps[2]; ++t) *d++ = wk[(ta[u] * kh + tb[v]) * kw + tc[t]];
        }
      }
    }
  });

  const bool unit_stride = classes == 1;  // the single class is the whole output grid
  const TilePlan plan =
      plan_tiles(N * classes, pmax, max_tile_positions(kmax + (unit_stride ? 0 : cout)), cout);
  const int64_t items = plan.tiles * N * classes * plan.co_blocks;
  std::atomic<bool> oom{false};
  parallel_for(items, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      // Item order (tile, n, class, channel block): equal contiguous chunks get every class equally.
      int64_t r = it;
      const int64_t cb = r % plan.co_blocks;
      r /= plan.co_blocks;
      const int64_t c = r % classes;
      r /= classes;
      const int64_t n = r % N, tile = r / N;
      const Class k = cls(c);
      int64_t q0, q1, c0, c1;
      tile_range(k.positions, plan.tiles, tile, &q0, &q1);
      co_range(cout, plan.co_blocks, cb, &c0, &c1);
      if (q1 <= q0 || c1 <= c0) continue;
      const int64_t pt = q1 - q0, kc = cin * k.ntap, mc = c1 - c0;
      const float* bias = b ? b + c0 : nullptr;
      float* yn = y + n * cout * P;
      ColAxis ax[3];
      for (int a = 0; a < 3; ++a) {
        const AxisClasses& A = axc[a];
        ax[a] = ColAxis{k.n[a], a == 0 ? s.id : a == 1 ? s.ih : s.iw, 1, k.taps[a],
                        A.off.data() + A.begin[size_t(k.q[a])]};
      }
      // C (mc x pt) = packed class weights (mc x kc) * column tile (kc x pt), through im2col + gemm or,
      // for a handful of output channels, fused (conv_direct). With unit stride C is y itself; otherwise
      // a tile buffer whose columns are then stored to the class's strided positions.
      const float* a = wc + woff[size_t(c)] + c0 * kc;
      const float* xn = x + n * cin * IS;
      float* tile_buf = unit_stride ? nullptr : scratch(kScratchTile, mc * pt);
      float* cdst = unit_stride ? yn + c0 * P + q0 : tile_buf;
      const int64_t ldc = unit_stride ? P : pt;
      bool ok = cdst != nullptr;
      if (ok && mc <= kDirectMaxRows) {
        ok = conv_direct(mc, a, kc, bias, xn, cin, ax, q0, q1, cdst, ldc);
      } else if (ok) {
        float* col = kc > 0 ? scratch(kScratchCol, packed_b_size(kc, pt)) : nullptr;
        ok = (kc == 0 || (col && im2col_packed(col, xn, cin, ax, q0, q1))) &&
             gemm_packed_b(mc, pt, kc, a, kc, 1, col, cdst, ldc, 1, false, bias);
      }
      if (!ok) {
        oom = true;
        return;
      }
      if (unit_stride) continue;
      for (int64_t co = c0; co < c1; ++co) {
        const float* src = tile_buf + (co - c0) * pt;
        float* dst = yn + co * P;
        for_each_run(k.n[1], k.n[2], q0, q1, [&](int64_t tz, int64_t ty, int64_t tx0, int64_t len, int64_t j) {
          float* d = dst + ((k.q[0] + st[0] * tz) * OH + k.q[1] + st[1] * ty) * OW + k.q[2] + st[2] * tx0;
          for (int64_t t = 0; t < len; ++t) d[t * st[2]] = src[j + t];
        });
      }
    }
  });
  return oom ? fail(Status::OutOfMemory, "conv_transpose3d_forward: out of memory for scratch") : Status::Ok;
}

Status conv_transpose3d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                 const float* w, const Conv3dShape& s) {
  VX_TRY(conv_transpose3d_check(s));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "conv_transpose3d_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "conv_transpose3d_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "conv_transpose3d_backward: w is null (needed for dx)");

  if (db) channel_sum_add(db, dy, s.n, s.cout, int64_t(s.od) * s.oh * s.ow);

  // The conv3d that this op is the adjoint of: input dy (cout channels), output x-shaped (cin channels),
  // weight [cin, cout, k] read as conv3d's [cout', cin', k].
  Conv3dShape c;
  c.n = s.n;
  c.cin = s.cout;
  c.cout = s.cin;
  c.id = s.od, c.ih = s.oh, c.iw = s.ow;
  c.kd = s.kd, c.kh = s.kh, c.kw = s.kw;
  c.sd = s.sd, c.sh = s.sh, c.sw = s.sw;
  c.pd = s.pd, c.ph = s.ph, c.pw = s.pw;
  VX_TRY(conv3d_shape(c));
  if (c.od != s.id || c.oh != s.ih || c.ow != s.iw)
    return fail(Status::Internal, "conv_transpose3d_backward: adjoint shape mismatch");
  if (dx) VX_TRY(conv3d_forward(dx, dy, w, nullptr, c));
  // dw[ci, co, a] += sum x[n, ci, i] * dy[n, co, i*s - p + a]: conv3d's weight gradient with x as its
  // output gradient and dy as its input.
  if (dw) VX_TRY(conv3d_backward(nullptr, dw, nullptr, x, dy, nullptr, c));
  return Status::Ok;
}

}  // namespace vx
