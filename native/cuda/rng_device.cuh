// Device Philox4x32-10: the stream of native/core/rng.h, element for element (same counter layout,
// key, lane order, uniform and Box-Muller definitions; Box-Muller in double like the CPU).
#pragma once
#include <cstdint>

namespace vx {
namespace cuda {

__device__ inline void philox_block_dev(uint64_t seed, uint64_t step, uint64_t b, uint32_t out[4]) {
  uint32_t c0 = uint32_t(b), c1 = uint32_t(b >> 32), c2 = uint32_t(step), c3 = uint32_t(step >> 32);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

__device__ inline float philox_uniform_dev(uint64_t seed, uint64_t step, uint64_t i) {
  uint32_t w[4];
  philox_block_dev(seed, step, i / 4, w);
  return float(w[i % 4] >> 8) * (1.0f / 16777216.0f);
}

__device__ inline float philox_normal_dev(uint64_t seed, uint64_t step, uint64_t i) {
  uint32_t w[4];
  philox_block_dev(seed, step, i / 4, w);
  const int pair = int(i % 4) / 2;
  const double u1 = (double(w[2 * pair]) + 1.0) * (1.0 / 4294967296.0);
  const double u2 = double(w[2 * pair + 1]) * (1.0 / 4294967296.0);
  const double r = sqrt(-2.0 * log(u1));
  const double t = (2.0 * 3.14159265358979323846) * u2;
  return (i % 2 == 0) ? float(r * cos(t)) : float(r * sin(t));
}

}  // namespace cuda
}  // namespace vx
