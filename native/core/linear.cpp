// linear: the optimized float kernels (see linear.h). Each product is one blocked GEMM (gemm.h), split
// across threads along whichever output dimension has more micro-kernel panels; no product splits its
// reduction dimension, so results do not depend on the thread count.
#include "linear.h"

#include <algorithm>
#include <atomic>

#include "gemm.h"
#include "parallel.h"

namespace vx {

Status linear_check(int n, int in, int out) {
  if (n < 1) return fail(Status::InvalidArgument, "linear: n=%d must be >= 1", n);
  if (in < 1) return fail(Status::InvalidArgument, "linear: in=%d must be >= 1", in);
  if (out < 1) return fail(Status::InvalidArgument, "linear: out=%d must be >= 1", out);
  const int64_t x[2] = {n, in}, y[2] = {n, out}, w[2] = {out, in};
  if (checked_elements(x, 2) < 0) return fail(Status::InvalidArgument, "linear: x n*in exceeds 2^36 elements");
  if (checked_elements(y, 2) < 0) return fail(Status::InvalidArgument, "linear: y n*out exceeds 2^36 elements");
  if (checked_elements(w, 2) < 0) return fail(Status::InvalidArgument, "linear: w out*in exceeds 2^36 elements");
  return Status::Ok;
}

namespace {

// Runs fn(r0, r1, c0, c1) over disjoint blocks of an rows x cols output, in parallel along the dimension
// with more micro-kernel panels, with at least ~64K multiply-adds (depth k each) per chunk.
template <class F>
bool split_output(int64_t rows, int64_t cols, int64_t k, const F& fn) {
  const int64_t mr = gemm_mr(), nr = gemm_nr();
  const bool by_cols = (cols + nr - 1) / nr >= (rows + mr - 1) / mr;
  const int64_t step = by_cols ? nr : mr, other = by_cols ? rows : cols, len = by_cols ? cols : rows;
  const int64_t blocks = (len + step - 1) / step;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, step * other * k));
  std::atomic<bool> ok{true};
  parallel_for(blocks, grain, [&](int64_t lo, int64_t hi) {
    const int64_t a = lo * step, b = std::min(hi * step, len);
    if (!(by_cols ? fn(0, rows, a, b) : fn(a, b, 0, cols))) ok = false;
  });
  return ok;
}

Status oom(const char* op) { return fail(Status::OutOfMemory, "%s: out of memory for scratch", op); }

}  // namespace

Status linear_forward(float* y, const float* x, const float* w, const float* b, int n, int in, int out) {
  VX_TRY(linear_check(n, in, out));
  if (!y || !x || !w)
    return fail(Status::InvalidArgument, "linear_forward: %s is null", !y ? "y" : !x ? "x" : "w");
  // y = x (n x in) * w^T (in x out): w^T is w read with swapped strides.
  const bool ok = split_output(n, out, in, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (b)
      for (int64_t r = r0; r < r1; ++r) std::copy(b + c0, b + c1, y + r * out + c0);
    return gemm(r1 - r0, c1 - c0, in, x + r0 * in, in, 1, w + c0 * in, 1, in, y + r0 * out + c0, out, 1,
                b != nullptr, nullptr);
  });
  return ok ? Status::Ok : oom("linear_forward");
}

Status linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       int n, int in, int out) {
  VX_TRY(linear_check(n, in, out));
  if (!dx && !dw && !db) return Status::Ok;
  if (!dy) return fail(Status::InvalidArgument, "linear_backward: dy is null");
  if (dw && !x) return fail(Status::InvalidArgument, "linear_backward: x is null (needed for dw)");
  if (dx && !w) return fail(Status::InvalidArgument, "linear_backward: w is null (needed for dx)");
  if (db) channel_sum_add(db, dy, n, out, 1);
  if (dx) {
    // dx (n x in) = dy (n x out) * w (out x in)
    const bool ok = split_output(n, in, out, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
      return gemm(r1 - r0, c1 - c0, out, dy + r0 * out, out, 1, w + c0, in, 1, dx + r0 * in + c0, in, 1, false,
                  nullptr);
    });
    if (!ok) return oom("linear_backward");
  }
  if (dw) {
    // dw (out x in) += dy^T (out x n) * x (n x in)
    const bool ok = split_output(out, in, n, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
      return gemm(r1 - r0, c1 - c0, n, dy + r0, 1, out, x + c0, in, 1, dw + r0 * in + c0, in, 1, true, nullptr);
    });
    if (!ok) return oom("linear_backward");
  }
  return Status::Ok;
}

}  // namespace vx
