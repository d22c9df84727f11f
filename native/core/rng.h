// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11; Random123's constants), so that
// CPU, CUDA and WASM draw identical streams. A stream is keyed by (seed, step); element i of a stream
// uses block counter (i / 4, 0, step_lo, step_hi) with key (seed_lo, seed_hi) and lane i % 4, hence
// any element can be computed independently, in any order, on any device.
#pragma once
#include <cstdint>

namespace vx {

// One Philox4x32-10 block: out = philox(ctr, key).
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// Raw 32-bit value of element i of stream (seed, step).
uint32_t philox_u32(uint64_t seed, uint64_t step, uint64_t i);

// Uniform in [0, 1): (u32 >> 8) * 2^-24, exactly representable in float.
float philox_uniform(uint64_t seed, uint64_t step, uint64_t i);

// Standard normal by Box-Muller on lane pairs (0,1) and (2,3) of a block: with a = lane 2j, b = lane
// 2j+1 of block i/4, u1 = (a + 1) * 2^-32 in (0, 1], u2 = b * 2^-32, r = sqrt(-2 ln u1),
// lane 2j -> r cos(2 pi u2), lane 2j+1 -> r sin(2 pi u2); computed in double, rounded to float.
float philox_normal(uint64_t seed, uint64_t step, uint64_t i);

// Fill out[0..count) with elements offset..offset+count of the stream (multithreaded).
void philox_normal_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset = 0);
void philox_uniform_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset = 0);

}  // namespace vx
