// Philox4x32-10 streams (see rng.h for the exact definition shared with CUDA, WASM and the NumPy fixtures).
#include "rng.h"

#include <cmath>

#include "parallel.h"

namespace vx {

namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Random123's multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
constexpr double kTwoPow32Inv = 1.0 / 4294967296.0;
constexpr double kTwoPi = 2.0 * 3.14159265358979323846;  // exactly 2 * (double)pi

inline void block(uint64_t seed, uint64_t step, uint64_t b, uint32_t out[4]) {
  const uint32_t ctr[4] = {static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), static_cast<uint32_t>(step),
                           static_cast<uint32_t>(step >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

// Box-Muller on one lane pair, in double, as rng.h specifies.
inline void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const double u1 = (static_cast<double>(a) + 1.0) * kTwoPow32Inv;
  const double u2 = static_cast<double>(b) * kTwoPow32Inv;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double t = kTwoPi * u2;
  z0 = static_cast<float>(r * std::cos(t));
  z1 = static_cast<float>(r * std::sin(t));
}

inline float to_uniform(uint32_t u) { return static_cast<float>(u >> 8) * (1.0f / 16777216.0f); }

constexpr int64_t kFillGrain = 1 << 12;  // blocks (of 4 values) per parallel chunk at least

// Writes elements offset..offset+count of a stream to out; make(words, values) turns the four words
// of one block into its four values. Every element depends only on its index, so the split into
// chunks (and the thread count) cannot change the result.
template <class Make>
void fill_blocks(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset, Make make) {
  if (count <= 0 || !out) return;
  const uint64_t first = offset / 4, last = (offset + static_cast<uint64_t>(count) - 1) / 4;
  const int64_t nblocks = static_cast<int64_t>(last - first + 1);
  parallel_for(nblocks, kFillGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const uint64_t b = first + static_cast<uint64_t>(k);
      uint32_t w[4];
      block(seed, step, b, w);
      float v[4];
      make(w, v);
      for (int j = 0; j < 4; ++j) {
        const uint64_t i = b * 4 + static_cast<uint64_t>(j);
        if (i >= offset && i - offset < static_cast<uint64_t>(count)) out[i - offset] = v[j];
      }
    }
  });
}

}  // namespace

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = static_cast<uint32_t>(p1);
    c2 = n2;
    c3 = static_cast<uint32_t>(p0);
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

uint32_t philox_u32(uint64_t seed, uint64_t step, uint64_t i) {
  uint32_t w[4];
  block(seed, step, i / 4, w);
  return w[i % 4];
}

float philox_uniform(uint64_t seed, uint64_t step, uint64_t i) { return to_uniform(philox_u32(seed, step, i)); }

float philox_normal(uint64_t seed, uint64_t step, uint64_t i) {
  uint32_t w[4];
  block(seed, step, i / 4, w);
  const int pair = static_cast<int>(i % 4) / 2;
  float z0, z1;
  box_muller(w[2 * pair], w[2 * pair + 1], z0, z1);
  return (i % 2 == 0) ? z0 : z1;
}

void philox_normal_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset) {
  fill_blocks(out, count, seed, step, offset, [](const uint32_t w[4], float v[4]) {
    box_muller(w[0], w[1], v[0], v[1]);
    box_muller(w[2], w[3], v[2], v[3]);
  });
}

void philox_uniform_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset) {
  fill_blocks(out, count, seed, step, offset, [](const uint32_t w[4], float v[4]) {
    for (int j = 0; j < 4; ++j) v[j] = to_uniform(w[j]);
  });
}

}  // namespace vx
