// Reference conv3d: the definition in plain loops, single-threaded, templated on the element type so that
// tests can run it in double. Same signatures, validation and gradient semantics as conv3d.h (dx =,
// dw and db +=, null gradients skipped); the optimized kernels are tested against it.
#pragma once
#include <cstdint>

#include "conv3d.h"

namespace vx {

// y = act(scale * y + shift) per output channel (ConvEpilogue), in T, after the plain forward.
template <class T>
void conv_epilogue_ref(T* y, int64_t n, int64_t cout, int64_t positions, const ConvEpilogue* ep) {
  if (!ep) return;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t co = 0; co < cout; ++co)
      for (int64_t p = 0; p < positions; ++p) {
        T& v = y[(i * cout + co) * positions + p];
        v = v * T(ep->scale ? ep->scale[co] : 1.0f) + T(ep->shift ? ep->shift[co] : 0.0f);
        if (ep->slope && v < T(0)) v *= T(ep->slope[co % ep->num_slopes]);
      }
}

template <class T>
Status conv3d_forward_ref(T* y, const T* x, const T* w, const T* b, const Conv3dShape& s,
                          const ConvEpilogue* ep = nullptr) {
  VX_TRY(conv3d_check(s));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "conv3d_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t z = 0; z < s.od; ++z)
        for (int64_t yy = 0; yy < s.oh; ++yy)
          for (int64_t xx = 0; xx < s.ow; ++xx) {
            T acc = b ? b[co] : T(0);
            for (int64_t ci = 0; ci < s.cin; ++ci)
              for (int64_t a = 0; a < s.kd; ++a)
                for (int64_t bb = 0; bb < s.kh; ++bb)
                  for (int64_t c = 0; c < s.kw; ++c) {
                    const int64_t iz = z * s.sd - s.pd + a, iy = yy * s.sh - s.ph + bb, ix = xx * s.sw - s.pw + c;
                    if (iz < 0 || iz >= s.id || iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw) continue;
                    acc += w[(((co * s.cin + ci) * s.kd + a) * s.kh + bb) * s.kw + c] *
                           x[(((n * s.cin + ci) * s.id + iz) * s.ih + iy) * s.iw + ix];
                  }
            y[(((n * s.cout + co) * s.od + z) * s.oh + yy) * s.ow + xx] = acc;
          }
  conv_epilogue_ref(y, s.n, s.cout, int64_t(s.od) * s.oh * s.ow, ep);
  return Status::Ok;
}

// Backward by the chain rule applied to each term of the forward sum (a scatter over the same loops).
template <class T>
Status conv3d_backward_ref(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const Conv3dShape& s) {
  VX_TRY(conv3d_check(s));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "conv3d_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "conv3d_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "conv3d_backward: w is null (needed for dx)");
  if (dx)
    for (int64_t i = 0, e = int64_t(s.n) * s.cin * s.id * s.ih * s.iw; i < e; ++i) dx[i] = T(0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t z = 0; z < s.od; ++z)
        for (int64_t yy = 0; yy < s.oh; ++yy)
          for (int64_t xx = 0; xx < s.ow; ++xx) {
            const T g = dy[(((n * s.cout + co) * s.od + z) * s.oh + yy) * s.ow + xx];
            if (db) db[co] += g;
            for (int64_t ci = 0; ci < s.cin; ++ci)
              for (int64_t a = 0; a < s.kd; ++a)
                for (int64_t bb = 0; bb < s.kh; ++bb)
                  for (int64_t c = 0; c < s.kw; ++c) {
                    const int64_t iz = z * s.sd - s.pd + a, iy = yy * s.sh - s.ph + bb, ix = xx * s.sw - s.pw + c;
                    if (iz < 0 || iz >= s.id || iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw) continue;
                    const int64_t wi = (((co * s.cin + ci) * s.kd + a) * s.kh + bb) * s.kw + c;
                    const int64_t xi = (((n * s.cin + ci) * s.id + iz) * s.ih + iy) * s.iw + ix;
                    if (dx) dx[xi] += w[wi] * g;
                    if (dw) dw[wi] += x[xi] * g;
                  }
          }
  return Status::Ok;
}

}  // namespace vx
