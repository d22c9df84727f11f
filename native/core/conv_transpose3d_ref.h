// Reference conv_transpose3d: the definition as a scatter (each input voxel adds w * x to the output
// voxels its taps reach: y[n, co, i*s - p + a] += x[n, ci, i] * w[ci, co, a]), single-threaded, templated
// on the element type. Same signatures, validation and gradient semantics as conv_transpose3d.h. Being a
// scatter, it is an independent formulation from the optimized gather.
#pragma once
#include <cstdint>

#include "conv3d_ref.h"
#include "conv_transpose3d.h"

namespace vx {

template <class T>
Status conv_transpose3d_forward_ref(T* y, const T* x, const T* w, const T* b, const Conv3dShape& s,
                                    const ConvEpilogue* ep = nullptr) {
  VX_TRY(conv_transpose3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv_transpose3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  const int64_t osp = int64_t(s.od) * s.oh * s.ow;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t i = 0; i < osp; ++i) y[(n * s.cout + co) * osp + i] = b ? b[co] : T(0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t z = 0; z < s.id; ++z)
        for (int64_t yy = 0; yy < s.ih; ++yy)
          for (int64_t xx = 0; xx < s.iw; ++xx) {
            const T v = x[(((n * s.cin + ci) * s.id + z) * s.ih + yy) * s.iw + xx];
            for (int64_t co = 0; co < s.cout; ++co)
              for (int64_t a = 0; a < s.kd; ++a)
                for (int64_t bb = 0; bb < s.kh; ++bb)
                  for (int64_t c = 0; c < s.kw; ++c) {
                    const int64_t oz = z * s.sd - s.pd + a, oy = yy * s.sh - s.ph + bb, ox = xx * s.sw - s.pw + c;
                    if (oz < 0 || oz >= s.od || oy < 0 || oy >= s.oh || ox < 0 || ox >= s.ow) continue;
                    y[(((n * s.cout + co) * s.od + oz) * s.oh + oy) * s.ow + ox] +=
                        w[(((ci * s.cout + co) * s.kd + a) * s.kh + bb) * s.kw + c] * v;
                  }
          }
  conv_epilogue_ref(y, s.n, s.cout, osp, ep);
  return Status::Ok;
}

// Backward by the chain rule applied to each term of the scatter above.
template <class T>
Status conv_transpose3d_backward_ref(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                                     const Conv3dShape& s) {
  VX_TRY(conv_transpose3d_check(s));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "conv_transpose3d_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "conv_transpose3d_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "conv_transpose3d_backward: w is null (needed for dx)");
  const int64_t osp = int64_t(s.od) * s.oh * s.ow;
  if (db)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t co = 0; co < s.cout; ++co)
        for (int64_t i = 0; i < osp; ++i) db[co] += dy[(n * s.cout + co) * osp + i];
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t z = 0; z < s.id; ++z)
        for (int64_t yy = 0; yy < s.ih; ++yy)
          for (int64_t xx = 0; xx < s.iw; ++xx) {
            const int64_t xi = (((n * s.cin + ci) * s.id + z) * s.ih + yy) * s.iw + xx;
            T gx = T(0);
            for (int64_t co = 0; co < s.cout; ++co)
              for (int64_t a = 0; a < s.kd; ++a)
                for (int64_t bb = 0; bb < s.kh; ++bb)
                  for (int64_t c = 0; c < s.kw; ++c) {
                    const int64_t oz = z * s.sd - s.pd + a, oy = yy * s.sh - s.ph + bb, ox = xx * s.sw - s.pw + c;
                    if (oz < 0 || oz >= s.od || oy < 0 || oy >= s.oh || ox < 0 || ox >= s.ow) continue;
                    const int64_t wi = (((ci * s.cout + co) * s.kd + a) * s.kh + bb) * s.kw + c;
                    const T g = dy[(((n * s.cout + co) * s.od + oz) * s.oh + oy) * s.ow + ox];
                    if (dx) gx += w[wi] * g;
                    if (dw) dw[wi] += x[xi] * g;
                  }
            if (dx) dx[xi] = gx;
          }
  return Status::Ok;
}

}  // namespace vx
