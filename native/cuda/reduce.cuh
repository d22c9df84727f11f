// Deterministic per-channel reductions over [n, c, spatial] in two fixed-order stages (per-chunk
// partials, then per-channel sums), accumulated in double. Rows of contiguous values (instance norm,
// Dice per (n, c)) are the case n = 1, c = rows.
#pragma once
#include "allocator.h"
#include "common.cuh"
#include "cuda_check.h"

namespace vx {
namespace cuda {

struct D2 {
  double a = 0, b = 0;
  __device__ D2& operator+=(const D2& o) { a += o.a; b += o.b; return *this; }
};
struct D3 {
  double a = 0, b = 0, c = 0;
  __device__ D3& operator+=(const D3& o) { a += o.a; b += o.b; c += o.c; return *this; }
};
__device__ inline double shfl_down(double v, int o) { return __shfl_down_sync(0xffffffffu, v, o); }
__device__ inline D2 shfl_down(D2 v, int o) { return D2{shfl_down(v.a, o), shfl_down(v.b, o)}; }
__device__ inline D3 shfl_down(D3 v, int o) { return D3{shfl_down(v.a, o), shfl_down(v.b, o), shfl_down(v.c, o)}; }

template <class T>
__device__ inline T block_reduce(T v) {
  __shared__ T warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += shfl_down(v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  T r{};
  if (warp == 0) {
    if (lane < kThreads / 32) r = warp_sums[lane];
    for (int o = 16; o > 0; o >>= 1) r += shfl_down(r, o);
  }
  __syncthreads();
  return r;
}

// f(ch, flat_index) -> Acc for every element of channel ch. Channels stride by gridDim.y (at most
// 65535), so any channel count works (linear bias gradients have c = out features).
template <class Acc, class F>
__global__ void chan_partial_kernel(Acc* part, int chunks, int n, int c, int64_t spatial, F f) {
  const int chunk = blockIdx.x;
  const int64_t m = int64_t(n) * spatial, per = (m + chunks - 1) / chunks;
  const int64_t lo = chunk * per, hi = lo + per < m ? lo + per : m;
  for (int ch = blockIdx.y; ch < c; ch += gridDim.y) {  // uniform per block: block_reduce stays legal
    Acc acc{};
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
      const int64_t b = j / spatial, s = j - b * spatial;
      acc += f(ch, (b * c + ch) * spatial + s);
    }
    acc = block_reduce(acc);
    if (threadIdx.x == 0) part[int64_t(ch) * chunks + chunk] = acc;
  }
}

// fin(ch, total) runs once per channel with the channel's sum.
template <class Acc, class Fin>
__global__ void chan_final_kernel(const Acc* part, int chunks, int c, Fin fin) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  Acc a{};
  for (int k = 0; k < chunks; ++k) a += part[int64_t(ch) * chunks + k];
  fin(ch, a);
}

inline int reduce_chunks(int n, int c, int64_t spatial) {
  const int64_t m = int64_t(n) * spatial;
  int64_t chunks = m / 8192;
  const int64_t cap = c >= 512 ? 1 : 512 / c;  // keep the grid near a few hundred blocks
  if (chunks > cap) chunks = cap;
  if (chunks > 256) chunks = 256;
  return chunks < 1 ? 1 : int(chunks);
}

template <class Acc, class F, class Fin>
Status reduce_channels(int n, int c, int64_t spatial, F f, Fin fin, cudaStream_t st) {
  const int chunks = reduce_chunks(n, c, spatial);
  Scratch sc(st);
  void* p = nullptr;
  VX_TRY(sc.get(sizeof(Acc) * size_t(c) * size_t(chunks), &p));
  chan_partial_kernel<Acc, F><<<dim3(unsigned(chunks), unsigned(c < 65535 ? c : 65535)), kThreads, 0, st>>>(static_cast<Acc*>(p), chunks, n, c, spatial, f);
  chan_final_kernel<Acc, Fin><<<unsigned((c + kThreads - 1) / kThreads), kThreads, 0, st>>>(static_cast<Acc*>(p), chunks, c, fin);
  VXC_LAUNCH("reduce_channels");
  return Status::Ok;
}

// Sum of f(i) over [0, count) into *out (device double), fixed order.
template <class F>
__global__ void flat_partial_kernel(double* part, int64_t count, F f) {
  double acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) acc += f(i);
  acc = block_reduce(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}
template <int Unused = 0>
__global__ void flat_final_kernel(double* out, const double* part, int parts, double scale) {
  double a = 0;
  if (threadIdx.x == 0) {
    for (int k = 0; k < parts; ++k) a += part[k];
    *out = a * scale;
  }
}
template <class F>
Status reduce_flat(double* out, int64_t count, double scale, F f, cudaStream_t st) {
  int parts = int(blocks_for(count, 8));
  if (parts > 1024) parts = 1024;
  Scratch sc(st);
  void* p = nullptr;
  VX_TRY(sc.get(sizeof(double) * size_t(parts), &p));
  flat_partial_kernel<F><<<unsigned(parts), kThreads, 0, st>>>(static_cast<double*>(p), count, f);
  flat_final_kernel<><<<1, 32, 0, st>>>(out, static_cast<double*>(p), parts, scale);
  VXC_LAUNCH("reduce_flat");
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
