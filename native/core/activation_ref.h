// Reference twins of activation.h: plain single-threaded loops templated on the element type.
// Scalar parameters (slope, p) keep the types of the optimized signatures.
#pragma once
#include <cmath>
#include <cstdint>

#include "activation.h"
#include "rng.h"

namespace vx {

namespace ref_detail {

inline Status check_count(const char* op, int64_t count, const void* a, const void* b) {
  if (count < 0) return fail(Status::InvalidArgument, "%s: count %lld < 0", op, static_cast<long long>(count));
  if (count > 0 && (!a || !b)) return fail(Status::InvalidArgument, "%s: null buffer", op);
  return Status::Ok;
}

inline Status check_ncs(const char* op, int n, int c, int64_t spatial) {
  if (n < 1 || c < 1 || spatial < 1)
    return fail(Status::InvalidArgument, "%s: n=%d c=%d spatial=%lld must all be >= 1", op, n, c,
                static_cast<long long>(spatial));
  return Status::Ok;
}

}  // namespace ref_detail

template <class T>
Status relu_forward_ref(T* y, const T* x, int64_t count) {
  VX_TRY(ref_detail::check_count("relu_forward", count, y, x));
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
  return Status::Ok;
}

template <class T>
Status relu_backward_ref(T* dx, const T* dy, const T* x, int64_t count) {
  VX_TRY(ref_detail::check_count("relu_backward", count, dy, x));
  if (!dx) return Status::Ok;
  for (int64_t i = 0; i < count; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
  return Status::Ok;
}

template <class T>
Status prelu_forward_ref(T* y, const T* x, const T* a, int n, int c, int64_t spatial, int num_a) {
  VX_TRY(ref_detail::check_ncs("prelu_forward", n, c, spatial));
  if (num_a != 1 && num_a != c)
    return fail(Status::InvalidArgument, "prelu_forward: num_a=%d must be 1 or c=%d", num_a, c);
  if (!y || !x || !a) return fail(Status::InvalidArgument, "prelu_forward: null buffer");
  for (int in = 0; in < n; ++in)
    for (int ic = 0; ic < c; ++ic) {
      const T slope = a[num_a == 1 ? 0 : ic];
      const int64_t base = (int64_t(in) * c + ic) * spatial;
      for (int64_t i = 0; i < spatial; ++i) y[base + i] = x[base + i] > T(0) ? x[base + i] : slope * x[base + i];
    }
  return Status::Ok;
}

template <class T>
Status prelu_backward_ref(T* dx, T* da, const T* dy, const T* x, const T* a, int n, int c, int64_t spatial,
                          int num_a) {
  VX_TRY(ref_detail::check_ncs("prelu_backward", n, c, spatial));
  if (num_a != 1 && num_a != c)
    return fail(Status::InvalidArgument, "prelu_backward: num_a=%d must be 1 or c=%d", num_a, c);
  if (!dy || !x || !a) return fail(Status::InvalidArgument, "prelu_backward: null buffer");
  for (int in = 0; in < n; ++in)
    for (int ic = 0; ic < c; ++ic) {
      const int k = num_a == 1 ? 0 : ic;
      const int64_t base = (int64_t(in) * c + ic) * spatial;
      for (int64_t i = 0; i < spatial; ++i) {
        const T xv = x[base + i], g = dy[base + i];
        if (dx) dx[base + i] = xv > T(0) ? g : a[k] * g;
        if (da && !(xv > T(0))) da[k] += g * xv;
      }
    }
  return Status::Ok;
}

template <class T>
Status leaky_relu_forward_ref(T* y, const T* x, int64_t count, float slope) {
  VX_TRY(ref_detail::check_count("leaky_relu_forward", count, y, x));
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : T(slope) * x[i];
  return Status::Ok;
}

template <class T>
Status leaky_relu_backward_ref(T* dx, const T* dy, const T* x, int64_t count, float slope) {
  VX_TRY(ref_detail::check_count("leaky_relu_backward", count, dy, x));
  if (!dx) return Status::Ok;
  for (int64_t i = 0; i < count; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(slope) * dy[i];
  return Status::Ok;
}

template <class T>
Status sigmoid_forward_ref(T* y, const T* x, int64_t count) {
  VX_TRY(ref_detail::check_count("sigmoid_forward", count, y, x));
  for (int64_t i = 0; i < count; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
  return Status::Ok;
}

template <class T>
Status sigmoid_backward_ref(T* dx, const T* dy, const T* y, int64_t count) {
  VX_TRY(ref_detail::check_count("sigmoid_backward", count, dy, y));
  if (!dx) return Status::Ok;
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
  return Status::Ok;
}

template <class T>
Status softmax_forward_ref(T* y, const T* x, int n, int c, int64_t spatial) {
  VX_TRY(ref_detail::check_ncs("softmax_forward", n, c, spatial));
  if (!y || !x) return fail(Status::InvalidArgument, "softmax_forward: null buffer");
  for (int in = 0; in < n; ++in)
    for (int64_t i = 0; i < spatial; ++i) {
      const int64_t base = int64_t(in) * c * spatial + i;
      T mx = x[base];
      for (int k = 1; k < c; ++k) mx = std::fmax(mx, x[base + k * spatial]);
      T sum = 0;
      for (int k = 0; k < c; ++k) sum += std::exp(x[base + k * spatial] - mx);
      for (int k = 0; k < c; ++k) y[base + k * spatial] = std::exp(x[base + k * spatial] - mx) / sum;
    }
  return Status::Ok;
}

template <class T>
Status softmax_backward_ref(T* dx, const T* dy, const T* y, int n, int c, int64_t spatial) {
  VX_TRY(ref_detail::check_ncs("softmax_backward", n, c, spatial));
  if (!dy || !y) return fail(Status::InvalidArgument, "softmax_backward: null buffer");
  if (!dx) return Status::Ok;
  for (int in = 0; in < n; ++in)
    for (int64_t i = 0; i < spatial; ++i) {
      const int64_t base = int64_t(in) * c * spatial + i;
      T dot = 0;
      for (int k = 0; k < c; ++k) dot += dy[base + k * spatial] * y[base + k * spatial];
      for (int k = 0; k < c; ++k) dx[base + k * spatial] = y[base + k * spatial] * (dy[base + k * spatial] - dot);
    }
  return Status::Ok;
}

template <class T>
Status output_activation_forward_ref(T* y, const T* x, OutputActivation a, int n, int c, int64_t spatial) {
  VX_TRY(ref_detail::check_ncs("output_activation_forward", n, c, spatial));
  if (!y || !x) return fail(Status::InvalidArgument, "output_activation_forward: null buffer");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None:
      for (int64_t i = 0; i < count; ++i) y[i] = x[i];
      return Status::Ok;
    case OutputActivation::Sigmoid: return sigmoid_forward_ref(y, x, count);
    case OutputActivation::Softmax: return softmax_forward_ref(y, x, n, c, spatial);
  }
  return fail(Status::InvalidArgument, "output_activation_forward: unknown activation %d", static_cast<int>(a));
}

template <class T>
Status output_activation_backward_ref(T* dx, const T* dy, const T* y, OutputActivation a, int n, int c, int64_t spatial) {
  VX_TRY(ref_detail::check_ncs("output_activation_backward", n, c, spatial));
  if (!dx || !dy || !y) return fail(Status::InvalidArgument, "output_activation_backward: null buffer");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None:
      for (int64_t i = 0; i < count; ++i) dx[i] = dy[i];
      return Status::Ok;
    case OutputActivation::Sigmoid: return sigmoid_backward_ref(dx, dy, y, count);
    case OutputActivation::Softmax: return softmax_backward_ref(dx, dy, y, n, c, spatial);
  }
  return fail(Status::InvalidArgument, "output_activation_backward: unknown activation %d", static_cast<int>(a));
}

template <class T>
Status add_forward_ref(T* y, const T* a, const T* b, int64_t count) {
  VX_TRY(ref_detail::check_count("add_forward", count, a, b));
  if (count > 0 && !y) return fail(Status::InvalidArgument, "add_forward: null y");
  for (int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
  return Status::Ok;
}

template <class T>
Status dropout_forward_ref(T* y, T* mask, const T* x, int64_t count, float p, uint64_t seed, uint64_t step) {
  VX_TRY(ref_detail::check_count("dropout_forward", count, y, x));
  if (!(p >= 0.0f && p < 1.0f)) return fail(Status::InvalidArgument, "dropout_forward: p=%g not in [0, 1)", p);
  const T scale = T(1) / (T(1) - T(p));
  for (int64_t i = 0; i < count; ++i) {
    const T mk = philox_uniform(seed, step, static_cast<uint64_t>(i)) >= p ? scale : T(0);
    if (mask) mask[i] = mk;
    y[i] = x[i] * mk;
  }
  return Status::Ok;
}

template <class T>
Status dropout_backward_ref(T* dx, const T* dy, const T* mask, int64_t count) {
  VX_TRY(ref_detail::check_count("dropout_backward", count, dy, mask));
  if (!dx) return Status::Ok;
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * mask[i];
  return Status::Ok;
}

}  // namespace vx
