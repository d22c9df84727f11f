// Device helpers shared by the .cu files: launch sizes, grid-stride loops, fixed-order block sums.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace vx {
namespace cuda {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t count, int per_thread = 1) {
  int64_t b = (count + int64_t(kThreads) * per_thread - 1) / (int64_t(kThreads) * per_thread);
  if (b < 1) b = 1;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return unsigned(b);
}

#define VXC_GRID_LOOP(i, count) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (count); i += int64_t(gridDim.x) * blockDim.x)

// Sum over the block in a fixed order (warp shuffles, then warp 0). blockDim.x must be kThreads.
template <class T>
__device__ inline T block_sum(T v) {
  __shared__ T warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  T r = T(0);
  if (warp == 0) {
    r = lane < kThreads / 32 ? warp_sums[lane] : T(0);
    for (int o = 16; o > 0; o >>= 1) r += __shfl_down_sync(0xffffffffu, r, o);
  }
  __syncthreads();
  return r;  // valid in thread 0
}

}  // namespace cuda
}  // namespace vx
