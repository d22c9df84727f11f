// conv_transpose3d: shape validation and the optimized float kernels (see conv_transpose3d.h).
//
// The forward pass (and with it conv3d's backward-data) is a gather: along each axis the output positions
// o split into residue classes q = o mod stride, and class q only meets the taps a = q + p (mod stride),
// reading input t + (q + p - a) / stride for o = q + stride * t. Within one class (qd, qh, qw) the transposed convolution is therefore a
// stride-1 correlation over the class's sub-grid with its own taps; conv_engine runs all classes over one
// staged input (conv_engine.h): no multiplications by the structural zeros of a dilated input (8x fewer
// than the naive gather for stride 2 in 3-D) and no col2im scatter-add. Each output voxel is written
// exactly once.
// conv3d's backward-data is this same forward (conv3d.cpp calls it); this op's backward-data is conv3d
// forward and its backward-weight is conv3d's backward-weight with the roles of x and dy swapped.
#include "conv_transpose3d.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <vector>

#include "conv_engine.h"
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

// conv_transpose3d as conv_engine's problem: one class per output residue (qd, qh, qw) (see the top of the
// file), each a stride-1 gather over its own sub-grid. Kept per calling thread (no steady-state allocation).
Status conv_transpose3d_problem(const Conv3dShape& s, const ConvProblem** out) {
  thread_local ConvProblem p;
  thread_local std::vector<int64_t> first[3], count[3];
  try {
    p.clear();
    p.batch = s.n, p.cin = s.cin, p.cout = s.cout;
    const int64_t k[3] = {s.kd, s.kh, s.kw}, st[3] = {s.sd, s.sh, s.sw}, pad[3] = {s.pd, s.ph, s.pw};
    const int64_t in[3] = {s.id, s.ih, s.iw}, o[3] = {s.od, s.oh, s.ow};
    for (int a = 0; a < 3; ++a) {
      p.in[a] = in[a], p.step[a] = 1, p.out[a] = o[a], p.k[a] = k[a];
      first[a].assign(size_t(st[a]) + 1, 0);
      count[a].assign(size_t(st[a]), 0);
      for (int64_t q = 0; q < st[a]; ++q) {
        count[a][size_t(q)] = q < o[a] ? (o[a] - q + st[a] - 1) / st[a] : 0;
        first[a][size_t(q)] = int64_t(p.off[a].size());
        for (int64_t t = (q + pad[a]) % st[a]; t < k[a]; t += st[a]) {
          p.ktap[a].push_back(t);
          p.off[a].push_back((q + pad[a] - t) / st[a]);  // exact: q + pad - t is a multiple of the stride
        }
      }
      first[a][size_t(st[a])] = int64_t(p.off[a].size());
    }
    p.transposed_weight = true;
    for (int64_t qd = 0; qd < st[0]; ++qd)
      for (int64_t qh = 0; qh < st[1]; ++qh)
        for (int64_t qw = 0; qw < st[2]; ++qw) {
          const int64_t q[3] = {qd, qh, qw};
          EngineClass c;
          for (int a = 0; a < 3; ++a) {
            const size_t i = size_t(q[a]);
            c.n[a] = count[a][i];
            c.q[a] = q[a];
            c.ostep[a] = st[a];
            c.first[a] = first[a][i];
            c.ntap[a] = first[a][i + 1] - first[a][i];
          }
          p.classes.push_back(c);
        }
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "conv_transpose3d: out of memory for the class tables");
  }
  *out = &p;
  return Status::Ok;
}

}  // namespace

Status conv_transpose3d_forward(float* y, const float* x, const float* w, const float* b,
                                const Conv3dShape& s, const ConvEpilogue* ep) {
  VX_TRY(conv_transpose3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv_transpose3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  const ConvProblem* p;
  VX_TRY(conv_transpose3d_problem(s, &p));
  return conv_engine_forward("conv_transpose3d_forward", y, x, w, b, *p, ep);
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
  // Both stage dy with the same geometry: the weight gradient reuses the forward's staged copy.
  StageReuseScope reuse;
  if (dx) VX_TRY(conv3d_forward(dx, dy, w, nullptr, c));
  // dw[ci, co, a] += sum x[n, ci, i] * dy[n, co, i*s - p + a]: conv3d's weight gradient with x as its
  // output gradient and dy as its input.
  if (dw) VX_TRY(conv3d_backward(nullptr, dw, nullptr, x, dy, nullptr, c));
  return Status::Ok;
}

}  // namespace vx
