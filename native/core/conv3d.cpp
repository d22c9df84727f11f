// conv3d: shape validation and the optimized float kernels (see conv3d.h).
//
// Forward and backward-weight run on conv_engine (staged-input implicit GEMM, and a dot-product kernel for
// the weight gradient whose sums do not depend on the thread count; see conv_engine.h) with conv3d as a
// single-class problem. Backward-data is the transposed convolution of dy and is computed by
// conv_transpose3d_forward, a gather (see conv_transpose3d.cpp).
#include "conv3d.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <new>
#include <vector>

#include "conv_engine.h"
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

// conv3d as conv_engine's single-class problem: grid = output, input index t*stride + (u - pad).
// Kept per calling thread so that steady state allocates nothing.
Status conv3d_problem(const Conv3dShape& s, const ConvProblem** out) {
  thread_local ConvProblem p;
  try {
    p.clear();
    p.batch = s.n, p.cin = s.cin, p.cout = s.cout;
    const int k[3] = {s.kd, s.kh, s.kw}, st[3] = {s.sd, s.sh, s.sw}, pad[3] = {s.pd, s.ph, s.pw};
    const int in[3] = {s.id, s.ih, s.iw}, o[3] = {s.od, s.oh, s.ow};
    EngineClass c;
    for (int a = 0; a < 3; ++a) {
      p.in[a] = in[a], p.step[a] = st[a], p.out[a] = o[a], p.k[a] = k[a];
      for (int u = 0; u < k[a]; ++u) {
        p.off[a].push_back(int64_t(u) - pad[a]);
        p.ktap[a].push_back(u);
      }
      c.n[a] = o[a], c.ntap[a] = k[a];
    }
    p.transposed_weight = false;
    p.classes.push_back(c);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "conv3d: out of memory for the problem tables");
  }
  *out = &p;
  return Status::Ok;
}

}  // namespace

Status conv3d_forward(float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                      const ConvEpilogue* ep) {
  VX_TRY(conv3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  const ConvProblem* p;
  VX_TRY(conv3d_problem(s, &p));
  return conv_engine_forward("conv3d_forward", y, x, w, b, *p, ep);
}

Status conv3d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const Conv3dShape& s) {
  VX_TRY(conv3d_check(s));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "conv3d_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "conv3d_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "conv3d_backward: w is null (needed for dx)");

  if (db) channel_sum_add(db, dy, s.n, s.cout, int64_t(s.od) * s.oh * s.ow);

  if (dw) {
    const ConvProblem* p;
    VX_TRY(conv3d_problem(s, &p));
    VX_TRY(conv_engine_weight_grad("conv3d_backward", dw, dy, x, *p));
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
