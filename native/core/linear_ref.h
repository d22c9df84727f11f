// Reference linear (y = x W^T + b) in plain loops, single-threaded, templated on the element type. Same
// signatures, validation and gradient semantics as linear.h (dx =, dw and db +=, null gradients skipped).
#pragma once
#include <cstdint>

#include "linear.h"

namespace vx {

template <class T>
Status linear_forward_ref(T* y, const T* x, const T* w, const T* b, int n, int in, int out) {
  VX_TRY(linear_check(n, in, out));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "linear_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      T acc = b ? b[o] : T(0);
      for (int64_t k = 0; k < in; ++k) acc += x[i * in + k] * w[o * in + k];
      y[i * out + o] = acc;
    }
  return Status::Ok;
}

template <class T>
Status linear_backward_ref(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int n, int in, int out) {
  VX_TRY(linear_check(n, in, out));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "linear_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "linear_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "linear_backward: w is null (needed for dx)");
  for (int64_t i = 0; i < n; ++i) {
    if (dx)
      for (int64_t k = 0; k < in; ++k) {
        T acc = T(0);
        for (int64_t o = 0; o < out; ++o) acc += dy[i * out + o] * w[o * in + k];
        dx[i * in + k] = acc;
      }
    for (int64_t o = 0; o < out; ++o) {
      const T g = dy[i * out + o];
      if (db) db[o] += g;
      if (dw)
        for (int64_t k = 0; k < in; ++k) dw[o * in + k] += g * x[i * in + k];
    }
  }
  return Status::Ok;
}

}  // namespace vx
