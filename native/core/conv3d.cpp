// conv3d: shape validation and the optimized float kernels (see conv3d.h).
//
// Forward and backward-weight are implicit GEMMs over tiles of output positions: a tile's column block
// [cin*kd*kh*kw, positions] is built by im2col and multiplied by the weight (forward) or by dy
// (backward-weight). A forward with at most kDirectMaxRows output channels skips the column block
// (conv_direct): there its memory traffic would cost more than the arithmetic.
// Work items are (sample, tile[, channel block]) so every layer shape, including cin = 1 and cout = 2,
// keeps all threads busy. Backward-weight gives each chunk of items its own partial dw and sums the
// partials in chunk order, so dw is deterministic for a given thread count.
// Backward-data is the transposed convolution of dy and is computed by conv_transpose3d_forward, a
// gather (see conv_transpose3d.cpp).
#include "conv3d.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <new>
#include <vector>

#include "conv_transpose3d.h"
#include "gemm.h"
#include "parallel.h"

namespace vx {

Status conv_validate(const char* op, bool transposed, const Conv3dShape& s, int out[3]) {
  const struct {
    const char* name;
    int value;
  } positive[] = {{"n", s.n},   {"cin", s.cin}, {"cout", s.cout}, {"id", s.id}, {"ih", s.ih},
                  {"iw", s.iw}, {"kd", s.kd},   {"kh", s.kh},     {"kw", s.kw}, {"sd", s.sd},
                  {"sh", s.sh}, {"sw", s.sw}};
  for (const auto& f : positive) {
    if (f.value < 1) {
      const char* what = f.name[0] == 'k' ? "kernel " : f.name[0] == 's' ? "stride " : "";
      return fail(Status::InvalidArgument, "%s: %s%s=%d must be >= 1", op, what, f.name, f.value);
    }
  }
  const int in[3] = {s.id, s.ih, s.iw}, k[3] = {s.kd, s.kh, s.kw}, st[3] = {s.sd, s.sh, s.sw};
  const int pad[3] = {s.pd, s.ph, s.pw}, op_[3] = {s.opd, s.oph, s.opw};
  static const char* const axis[3] = {"d", "h", "w"};
  for (int a = 0; a < 3; ++a) {
    if (pad[a] < 0)
      return fail(Status::InvalidArgument, "%s: padding p%s=%d must be >= 0", op, axis[a], pad[a]);
    if (!transposed && op_[a] != 0)
      return fail(Status::InvalidArgument,
                  "%s: output_padding op%s=%d must be 0 (it applies to conv_transpose3d only)", op, axis[a],
                  op_[a]);
    if (transposed && (op_[a] < 0 || op_[a] >= st[a]))
      return fail(Status::InvalidArgument, "%s: output_padding op%s=%d must be >= 0 and < stride s%s=%d", op,
                  axis[a], op_[a], axis[a], st[a]);
    int64_t o;
    if (!transposed) {
      const int64_t padded = int64_t(in[a]) + 2 * int64_t(pad[a]);
      if (padded < k[a])
        return fail(Status::InvalidArgument,
                    "%s: kernel k%s=%d is larger than the padded input i%s+2*p%s=%lld (empty output)", op,
                    axis[a], k[a], axis[a], axis[a], static_cast<long long>(padded));
      o = (padded - k[a]) / st[a] + 1;
    } else {
      o = (int64_t(in[a]) - 1) * st[a] - 2 * int64_t(pad[a]) + k[a] + op_[a];
      if (o < 1)
        return fail(Status::InvalidArgument,
                    "%s: output o%s=(i%s-1)*s%s-2*p%s+k%s+op%s=%lld must be >= 1 (padding p%s=%d too large)",
                    op, axis[a], axis[a], axis[a], axis[a], axis[a], axis[a], static_cast<long long>(o),
                    axis[a], pad[a]);
    }
    if (o > INT_MAX)
      return fail(Status::InvalidArgument, "%s: output o%s=%lld exceeds the int range", op, axis[a],
                  static_cast<long long>(o));
    out[a] = static_cast<int>(o);
  }
  const int64_t xs[5] = {s.n, s.cin, s.id, s.ih, s.iw};
  const int64_t ys[5] = {s.n, s.cout, out[0], out[1], out[2]};
  const int64_t ws[5] = {s.cout, s.cin, s.kd, s.kh, s.kw};
  if (checked_elements(xs, 5) < 0)
    return fail(Status::InvalidArgument, "%s: input n*cin*id*ih*iw exceeds 2^36 elements", op);
  if (checked_elements(ys, 5) < 0)
    return fail(Status::InvalidArgument, "%s: output n*cout*od*oh*ow exceeds 2^36 elements", op);
  if (checked_elements(ws, 5) < 0)
    return fail(Status::InvalidArgument, "%s: weight cin*cout*kd*kh*kw exceeds 2^36 elements", op);
  return Status::Ok;
}

Status conv3d_shape(Conv3dShape& s) {
  int o[3];
  VX_TRY(conv_validate("conv3d", false, s, o));
  s.od = o[0];
  s.oh = o[1];
  s.ow = o[2];
  return Status::Ok;
}

Status conv3d_check(const Conv3dShape& s) {
  int o[3];
  VX_TRY(conv_validate("conv3d", false, s, o));
  if (s.od != o[0] || s.oh != o[1] || s.ow != o[2])
    return fail(Status::InvalidArgument,
                "conv3d: output (od, oh, ow) = (%d, %d, %d) but the shape gives (%d, %d, %d); fill it with "
                "conv3d_shape",
                s.od, s.oh, s.ow, o[0], o[1], o[2]);
  return Status::Ok;
}

namespace {

// Column-tile geometry of a conv3d: per-axis tap offsets off[u] = u - pad, step = stride.
struct Geometry {
  int64_t K, P, IS;  // rows of a column tile (cin*kd*kh*kw), output positions, input positions
  ColAxis ax[3];
};

Status make_geometry(const Conv3dShape& s, Geometry& g) {
  g.K = int64_t(s.cin) * s.kd * s.kh * s.kw;
  g.P = int64_t(s.od) * s.oh * s.ow;
  g.IS = int64_t(s.id) * s.ih * s.iw;
  const int k[3] = {s.kd, s.kh, s.kw}, st[3] = {s.sd, s.sh, s.sw}, pad[3] = {s.pd, s.ph, s.pw};
  const int in[3] = {s.id, s.ih, s.iw}, out[3] = {s.od, s.oh, s.ow};
  // Kept per calling thread (no allocation in steady state); ax[] points into it, so workers read the
  // caller's copy. Valid until this thread's next conv3d call.
  thread_local std::vector<int64_t> t_offs;
  try {
    t_offs.resize(size_t(k[0]) + k[1] + k[2]);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "conv3d: out of memory for tap offsets");
  }
  int64_t* o = t_offs.data();
  for (int a = 0; a < 3; ++a) {
    for (int u = 0; u < k[a]; ++u) o[u] = int64_t(u) - pad[a];
    g.ax[a] = ColAxis{out[a], in[a], st[a], k[a], o};
    o += k[a];
  }
  return Status::Ok;
}

Status out_of_memory(const char* op) { return fail(Status::OutOfMemory, "%s: out of memory for scratch", op); }

}  // namespace

Status conv3d_forward(float* y, const float* x, const float* w, const float* b, const Conv3dShape& s) {
  VX_TRY(conv3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  Geometry g;
  VX_TRY(make_geometry(s, g));
  const int64_t cin = s.cin, cout = s.cout, K = g.K, P = g.P;
  const TilePlan plan = plan_tiles(s.n, P, max_tile_positions(K), cout);
  const int64_t items = int64_t(s.n) * plan.tiles * plan.co_blocks;
  std::atomic<bool> oom{false};
  parallel_for(items, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t cb = it % plan.co_blocks, rest = it / plan.co_blocks;
      const int64_t tile = rest % plan.tiles, n = rest / plan.tiles;
      int64_t p0, p1, c0, c1;
      tile_range(P, plan.tiles, tile, &p0, &p1);
      co_range(cout, plan.co_blocks, cb, &c0, &c1);
      if (p1 <= p0 || c1 <= c0) continue;
      const int64_t pt = p1 - p0;
      if (c1 - c0 <= kDirectMaxRows) {
        if (!conv_direct(c1 - c0, w + c0 * K, K, b ? b + c0 : nullptr, x + n * cin * g.IS, cin, g.ax, p0, p1,
                         y + (n * cout + c0) * P + p0, P)) {
          oom = true;
          return;
        }
        continue;
      }
      float* col = scratch(kScratchCol, packed_b_size(K, pt));
      if (!col || !im2col_packed(col, x + n * cin * g.IS, cin, g.ax, p0, p1) ||
          !gemm_packed_b(c1 - c0, pt, K, w + c0 * K, K, 1, col, y + (n * cout + c0) * P + p0, P, 1, false,
                         b ? b + c0 : nullptr)) {
        oom = true;
        return;
      }
    }
  });
  return oom ? out_of_memory("conv3d_forward") : Status::Ok;
}

Status conv3d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const Conv3dShape& s) {
  VX_TRY(conv3d_check(s));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "conv3d_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "conv3d_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "conv3d_backward: w is null (needed for dx)");
  Geometry g;
  VX_TRY(make_geometry(s, g));
  const int64_t cin = s.cin, cout = s.cout, K = g.K, P = g.P;

  if (db) channel_sum_add(db, dy, s.n, cout, P);

  if (dw) {
    // dw[co, r] += sum_p dy[n, co, p] * col[r, p]: per tile, C (cout x K) += dy_tile (cout x pt) * col^T.
    const TilePlan plan = plan_tiles(s.n, P, max_tile_positions(K), 1);
    const int64_t items = int64_t(s.n) * plan.tiles;
    const int chunks = parallel_chunks(items, 1);
    const int64_t wsize = cout * K;
    float* part = scratch(kScratchCall0, chunks * wsize);
    if (!part) return out_of_memory("conv3d_backward");
    std::atomic<bool> oom{false};
    parallel_for(chunks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t ch = lo; ch < hi; ++ch) {
        float* pw = part + ch * wsize;
        std::memset(pw, 0, size_t(wsize) * sizeof(float));
        for (int64_t it = ch * items / chunks; it < (ch + 1) * items / chunks; ++it) {
          const int64_t tile = it % plan.tiles, n = it / plan.tiles;
          int64_t p0, p1;
          tile_range(P, plan.tiles, tile, &p0, &p1);
          if (p1 <= p0) continue;
          const int64_t pt = p1 - p0, ld = col_stride(pt);
          float* col = scratch(kScratchCol, K * ld);
          if (!col || !im2col_tile(col, ld, x + n * cin * g.IS, cin, g.ax, p0, p1) ||
              !gemm(cout, K, pt, dy + n * cout * P + p0, P, 1, col, 1, ld, pw, K, 1, true, nullptr)) {
            oom = true;
            return;
          }
        }
      }
    });
    if (oom) return out_of_memory("conv3d_backward");
    parallel_for(wsize, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        float acc = part[i];
        for (int ch = 1; ch < chunks; ++ch) acc += part[ch * wsize + i];
        dw[i] += acc;
      }
    });
  }

  if (dx) {
    // dx is the transposed convolution of dy with w: same stride and padding, and the output_padding
    // that gives back the input size (0 <= op < stride because od = floor((i + 2p - k) / s) + 1).
    Conv3dShape t;
    t.n = s.n;
    t.cin = s.cout;
    t.cout = s.cin;
    t.id = s.od, t.ih = s.oh, t.iw = s.ow;
    t.kd = s.kd, t.kh = s.kh, t.kw = s.kw;
    t.sd = s.sd, t.sh = s.sh, t.sw = s.sw;
    t.pd = s.pd, t.ph = s.ph, t.pw = s.pw;
    auto op = [](int i, int o, int st, int p, int k) {
      return static_cast<int>(int64_t(i) - ((int64_t(o) - 1) * st - 2 * int64_t(p) + k));
    };
    t.opd = op(s.id, s.od, s.sd, s.pd, s.kd);
    t.oph = op(s.ih, s.oh, s.sh, s.ph, s.kh);
    t.opw = op(s.iw, s.ow, s.sw, s.pw, s.kw);
    VX_TRY(conv_transpose3d_shape(t));
    if (t.od != s.id || t.oh != s.ih || t.ow != s.iw)
      return fail(Status::Internal, "conv3d_backward: transposed shape mismatch");
    VX_TRY(conv_transpose3d_forward(dx, dy, w, nullptr, t));
  }
  return Status::Ok;
}

}  // namespace vx
