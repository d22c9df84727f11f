// CUDA twins of native/core/activation.h (elementwise ops, channel softmax, dropout, residual add).
#include "kernels.h"
#include "reduce.cuh"
#include "rng_device.cuh"

namespace vx {
namespace cuda {

namespace {

__global__ void k_relu_f(float* y, const float* x, int64_t n) { VXC_GRID_LOOP(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f; }
__global__ void k_relu_b(float* dx, const float* dy, const float* x, int64_t n) {
  VXC_GRID_LOOP(i, n) dx[i] = x[i] > 0.f ? dy[i] : 0.f;
}
__global__ void k_leaky_f(float* y, const float* x, int64_t n, float s) { VXC_GRID_LOOP(i, n) y[i] = x[i] > 0.f ? x[i] : s * x[i]; }
__global__ void k_leaky_b(float* dx, const float* dy, const float* x, int64_t n, float s) {
  VXC_GRID_LOOP(i, n) dx[i] = x[i] > 0.f ? dy[i] : s * dy[i];
}
__global__ void k_sigmoid_f(float* y, const float* x, int64_t n) { VXC_GRID_LOOP(i, n) y[i] = 1.f / (1.f + expf(-x[i])); }
__global__ void k_sigmoid_b(float* dx, const float* dy, const float* y, int64_t n) {
  VXC_GRID_LOOP(i, n) dx[i] = dy[i] * y[i] * (1.f - y[i]);
}
__global__ void k_add(float* y, const float* a, const float* b, int64_t n) { VXC_GRID_LOOP(i, n) y[i] = a[i] + b[i]; }
__global__ void k_add_inplace(float* y, const float* a, int64_t n) { VXC_GRID_LOOP(i, n) y[i] += a[i]; }
__global__ void k_scale(float* y, float s, int64_t n) { VXC_GRID_LOOP(i, n) y[i] *= s; }
__global__ void k_prelu_f(float* y, const float* x, const float* a, int c, int64_t spatial, int num_a, int64_t n) {
  VXC_GRID_LOOP(i, n) {
    const float slope = a[num_a == 1 ? 0 : int((i / spatial) % c)];
    y[i] = x[i] > 0.f ? x[i] : slope * x[i];
  }
}
__global__ void k_prelu_b(float* dx, const float* dy, const float* x, const float* a, int c, int64_t spatial, int num_a,
                          int64_t n) {
  VXC_GRID_LOOP(i, n) {
    const float slope = a[num_a == 1 ? 0 : int((i / spatial) % c)];
    dx[i] = x[i] > 0.f ? dy[i] : slope * dy[i];
  }
}
// One thread per (n, spatial) position, looping over channels (stride `spatial`).
__global__ void k_softmax_f(float* y, const float* x, int c, int64_t spatial, int64_t positions) {
  VXC_GRID_LOOP(p, positions) {
    const int64_t base = (p / spatial) * c * spatial + p % spatial;
    float mx = x[base];
    for (int k = 1; k < c; ++k) mx = fmaxf(mx, x[base + k * spatial]);
    float sum = 0.f;
    for (int k = 0; k < c; ++k) sum += expf(x[base + k * spatial] - mx);
    const float inv = 1.f / sum;
    for (int k = 0; k < c; ++k) y[base + k * spatial] = expf(x[base + k * spatial] - mx) * inv;
  }
}
__global__ void k_softmax_b(float* dx, const float* dy, const float* y, int c, int64_t spatial, int64_t positions) {
  VXC_GRID_LOOP(p, positions) {
    const int64_t base = (p / spatial) * c * spatial + p % spatial;
    float dot = 0.f;
    for (int k = 0; k < c; ++k) dot += dy[base + k * spatial] * y[base + k * spatial];
    for (int k = 0; k < c; ++k) dx[base + k * spatial] = y[base + k * spatial] * (dy[base + k * spatial] - dot);
  }
}
__global__ void k_dropout_f(float* y, float* mask, const float* x, int64_t n, float p, const uint64_t* seed_step, uint64_t mul,
                            uint64_t add) {
  const uint64_t seed = seed_step[0], step = seed_step[1] * mul + add;
  const float scale = float(1.0 / (1.0 - double(p)));  // as the CPU rounds it (1.f / (1.f - p) may differ by an ulp)
  VXC_GRID_LOOP(i, n) {
    const float mk = philox_uniform_dev(seed, step, uint64_t(i)) >= p ? scale : 0.f;
    if (mask) mask[i] = mk;
    y[i] = x[i] * mk;
  }
}
__global__ void k_mul(float* dx, const float* dy, const float* m, int64_t n) { VXC_GRID_LOOP(i, n) dx[i] = dy[i] * m[i]; }

struct PreluDa {  // contribution of one element to da: dy * x where x <= 0
  const float *dy, *x;
  __device__ double operator()(int, int64_t k) const { return x[k] > 0.f ? 0.0 : double(dy[k]) * double(x[k]); }
};
struct AddTo {
  float* out;
  __device__ void operator()(int ch, double v) const { out[ch] += float(v); }
};
struct Value {
  const float* v;
  __device__ double operator()(int, int64_t k) const { return double(v[k]); }
};
struct Store {
  double* out;
  __device__ void operator()(int ch, double v) const { out[ch] = v; }
};
__global__ void k_sum_into(float* out, const double* v, int c) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0;
    for (int k = 0; k < c; ++k) s += v[k];
    out[0] += float(s);
  }
}

#define VXC_CHECK_COUNT(op, count)                                                                     \
  if ((count) < 1) return fail(Status::InvalidArgument, op ": count %lld < 1", (long long)(count));

}  // namespace

Status relu_forward(float* y, const float* x, int64_t n, cudaStream_t st) {
  VXC_CHECK_COUNT("relu_forward", n);
  k_relu_f<<<blocks_for(n), kThreads, 0, st>>>(y, x, n);
  VXC_LAUNCH("relu_forward");
  return Status::Ok;
}
Status relu_backward(float* dx, const float* dy, const float* x, int64_t n, cudaStream_t st) {
  VXC_CHECK_COUNT("relu_backward", n);
  k_relu_b<<<blocks_for(n), kThreads, 0, st>>>(dx, dy, x, n);
  VXC_LAUNCH("relu_backward");
  return Status::Ok;
}
Status leaky_relu_forward(float* y, const float* x, int64_t n, float s, cudaStream_t st) {
  VXC_CHECK_COUNT("leaky_relu_forward", n);
  k_leaky_f<<<blocks_for(n), kThreads, 0, st>>>(y, x, n, s);
  VXC_LAUNCH("leaky_relu_forward");
  return Status::Ok;
}
Status leaky_relu_backward(float* dx, const float* dy, const float* x, int64_t n, float s, cudaStream_t st) {
  VXC_CHECK_COUNT("leaky_relu_backward", n);
  k_leaky_b<<<blocks_for(n), kThreads, 0, st>>>(dx, dy, x, n, s);
  VXC_LAUNCH("leaky_relu_backward");
  return Status::Ok;
}
Status sigmoid_forward(float* y, const float* x, int64_t n, cudaStream_t st) {
  VXC_CHECK_COUNT("sigmoid_forward", n);
  k_sigmoid_f<<<blocks_for(n), kThreads, 0, st>>>(y, x, n);
  VXC_LAUNCH("sigmoid_forward");
  return Status::Ok;
}
Status sigmoid_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t st) {
  VXC_CHECK_COUNT("sigmoid_backward", n);
  k_sigmoid_b<<<blocks_for(n), kThreads, 0, st>>>(dx, dy, y, n);
  VXC_LAUNCH("sigmoid_backward");
  return Status::Ok;
}
Status add_forward(float* y, const float* a, const float* b, int64_t n, cudaStream_t st) {
  VXC_CHECK_COUNT("add_forward", n);
  k_add<<<blocks_for(n), kThreads, 0, st>>>(y, a, b, n);
  VXC_LAUNCH("add_forward");
  return Status::Ok;
}
Status add_inplace(float* y, const float* a, int64_t n, cudaStream_t st) {
  if (n < 1) return Status::Ok;
  k_add_inplace<<<blocks_for(n), kThreads, 0, st>>>(y, a, n);
  VXC_LAUNCH("add_inplace");
  return Status::Ok;
}
Status scale_inplace(float* y, float s, int64_t n, cudaStream_t st) {
  if (n < 1) return Status::Ok;
  k_scale<<<blocks_for(n), kThreads, 0, st>>>(y, s, n);
  VXC_LAUNCH("scale_inplace");
  return Status::Ok;
}

Status prelu_forward(float* y, const float* x, const float* a, int n, int c, int64_t spatial, int num_a, cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "prelu_forward: n=%d c=%d spatial=%lld", n, c, (long long)spatial);
  if (num_a != 1 && num_a != c) return fail(Status::InvalidArgument, "prelu_forward: num_a=%d must be 1 or c=%d", num_a, c);
  const int64_t count = int64_t(n) * c * spatial;
  k_prelu_f<<<blocks_for(count), kThreads, 0, st>>>(y, x, a, c, spatial, num_a, count);
  VXC_LAUNCH("prelu_forward");
  return Status::Ok;
}

Status prelu_backward(float* dx, float* da, const float* dy, const float* x, const float* a, int n, int c, int64_t spatial,
                      int num_a, cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "prelu_backward: n=%d c=%d spatial=%lld", n, c, (long long)spatial);
  if (num_a != 1 && num_a != c) return fail(Status::InvalidArgument, "prelu_backward: num_a=%d must be 1 or c=%d", num_a, c);
  const int64_t count = int64_t(n) * c * spatial;
  if (dx) {
    k_prelu_b<<<blocks_for(count), kThreads, 0, st>>>(dx, dy, x, a, c, spatial, num_a, count);
    VXC_LAUNCH("prelu_backward");
  }
  if (!da) return Status::Ok;
  if (num_a == c) return reduce_channels<double>(n, c, spatial, PreluDa{dy, x}, AddTo{da}, st);
  Scratch sc(st);
  void* tmp = nullptr;
  VX_TRY(sc.get(sizeof(double) * size_t(c), &tmp));
  VX_TRY(reduce_channels<double>(n, c, spatial, PreluDa{dy, x}, Store{static_cast<double*>(tmp)}, st));
  k_sum_into<<<1, 1, 0, st>>>(da, static_cast<const double*>(tmp), c);
  VXC_LAUNCH("prelu_backward da");
  return Status::Ok;
}

Status softmax_forward(float* y, const float* x, int n, int c, int64_t spatial, cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "softmax_forward: bad shape");
  const int64_t pos = int64_t(n) * spatial;
  k_softmax_f<<<blocks_for(pos), kThreads, 0, st>>>(y, x, c, spatial, pos);
  VXC_LAUNCH("softmax_forward");
  return Status::Ok;
}
Status softmax_backward(float* dx, const float* dy, const float* y, int n, int c, int64_t spatial, cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "softmax_backward: bad shape");
  const int64_t pos = int64_t(n) * spatial;
  k_softmax_b<<<blocks_for(pos), kThreads, 0, st>>>(dx, dy, y, c, spatial, pos);
  VXC_LAUNCH("softmax_backward");
  return Status::Ok;
}

Status output_activation_forward(float* y, const float* x, OutputActivation a, int n, int c, int64_t spatial, cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "output_activation_forward: bad shape");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None:
      if (y == x) return Status::Ok;
      return check(cudaMemcpyAsync(y, x, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, st), "output_activation_forward");
    case OutputActivation::Sigmoid: return sigmoid_forward(y, x, count, st);
    case OutputActivation::Softmax: return softmax_forward(y, x, n, c, spatial, st);
  }
  return fail(Status::InvalidArgument, "output_activation_forward: unknown activation %d", static_cast<int>(a));
}

Status output_activation_backward(float* dx, const float* dy, const float* y, OutputActivation a, int n, int c, int64_t spatial,
                                  cudaStream_t st) {
  if (n < 1 || c < 1 || spatial < 1) return fail(Status::InvalidArgument, "output_activation_backward: bad shape");
  if (dx == dy || dx == y) return fail(Status::InvalidArgument, "output_activation_backward: dx must not alias dy or y");
  const int64_t count = int64_t(n) * c * spatial;
  switch (a) {
    case OutputActivation::None:
      return check(cudaMemcpyAsync(dx, dy, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, st), "output_activation_backward");
    case OutputActivation::Sigmoid: return sigmoid_backward(dx, dy, y, count, st);
    case OutputActivation::Softmax: return softmax_backward(dx, dy, y, n, c, spatial, st);
  }
  return fail(Status::InvalidArgument, "output_activation_backward: unknown activation %d", static_cast<int>(a));
}

Status dropout_forward(float* y, float* mask, const float* x, int64_t count, float p, const uint64_t* seed_step, uint64_t mul,
                       uint64_t add, cudaStream_t st) {
  VXC_CHECK_COUNT("dropout_forward", count);
  if (!(p >= 0.f && p < 1.f)) return fail(Status::InvalidArgument, "dropout_forward: p=%g not in [0, 1)", p);
  k_dropout_f<<<blocks_for(count), kThreads, 0, st>>>(y, mask, x, count, p, seed_step, mul, add);
  VXC_LAUNCH("dropout_forward");
  return Status::Ok;
}
Status dropout_backward(float* dx, const float* dy, const float* mask, int64_t count, cudaStream_t st) {
  VXC_CHECK_COUNT("dropout_backward", count);
  if (!dx) return Status::Ok;
  k_mul<<<blocks_for(count), kThreads, 0, st>>>(dx, dy, mask, count);
  VXC_LAUNCH("dropout_backward");
  return Status::Ok;
}

Status channel_sum(double* out, const float* v, int n, int c, int64_t spatial, cudaStream_t st) {
  return reduce_channels<double>(n, c, spatial, Value{v}, Store{out}, st);
}

}  // namespace cuda
}  // namespace vx
