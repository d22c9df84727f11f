// Philox4x32-10 streams: Random123 known answers, the stream layout of rng.h, Box-Muller normals,
// offsets and thread-count independence of the fills.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.h"
#include "parallel.h"
#include "rng.h"

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// rng.h's normal, written out independently from philox_u32.
float normal_from_words(uint64_t seed, uint64_t step, uint64_t i) {
  const uint64_t pair = (i % 4) / 2 * 2;
  const uint32_t a = vx::philox_u32(seed, step, i / 4 * 4 + pair);
  const uint32_t b = vx::philox_u32(seed, step, i / 4 * 4 + pair + 1);
  const double u1 = (double(a) + 1.0) * std::ldexp(1.0, -32);
  const double u2 = double(b) * std::ldexp(1.0, -32);
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double t = 2.0 * 3.14159265358979323846 * u2;
  return static_cast<float>(i % 2 == 0 ? r * std::cos(t) : r * std::sin(t));
}

}  // namespace

// Random123's kat_vectors for philox4x32_10 (verified against several independent implementations).
TEST(philox_known_answers) {
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    uint32_t out[4];
    vx::philox4x32_10(k.ctr, k.key, out);
    for (int j = 0; j < 4; ++j) CHECK(out[j] == k.out[j]);
  }
}

// Element i: counter (i/4 lo, i/4 hi, step lo, step hi), key (seed lo, seed hi), lane i % 4.
TEST(philox_stream_layout) {
  const uint64_t seed = 0x0123456789abcdefULL, step = 0x100000002ULL;
  const uint64_t idx[] = {0, 1, 2, 3, 4, 7, 1000003, (1ULL << 33) + 5};
  for (uint64_t i : idx) {
    const uint64_t b = i / 4;
    const uint32_t ctr[4] = {uint32_t(b), uint32_t(b >> 32), uint32_t(step), uint32_t(step >> 32)};
    const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    uint32_t out[4];
    vx::philox4x32_10(ctr, key, out);
    CHECK(vx::philox_u32(seed, step, i) == out[i % 4]);
  }
  // Seed, step and index each change the stream.
  CHECK(vx::philox_u32(1, 0, 0) != vx::philox_u32(0, 0, 0));
  CHECK(vx::philox_u32(0, 1, 0) != vx::philox_u32(0, 0, 0));
  CHECK(vx::philox_u32(1ULL << 32, 0, 0) != vx::philox_u32(0, 0, 0));
  CHECK(vx::philox_u32(0, 1ULL << 32, 0) != vx::philox_u32(0, 0, 0));
}

// Golden values from an independent pure-Python implementation of rng.h's comment (ints + math
// module), the same definition the NumPy fixtures use.
TEST(philox_golden_python) {
  const uint64_t seed = 0x0123456789abcdefULL, step = 0x100000002ULL;
  struct G {
    uint64_t i;
    uint32_t word, normal_bits;
  };
  const G g[] = {{0, 0x20f4d595, 0x3fdc44ba}, {1, 0xe9627d16, 0xbf889638}, {2, 0x7bbaeeb8, 0x3f5779ae},
                 {3, 0xdf7a77a7, 0xbf5d1077}, {4, 0x57d0d554, 0x3ef6d61c}, {5, 0x3250ff87, 0x3fb0c80b},
                 {6, 0x7d0b63b7, 0xbf7237df}, {7, 0x6522b829, 0x3f3bbc2a}, {(1ULL << 33) + 5, 0xf3ebfa89, 0xbe215392}};
  for (const G& e : g) {
    CHECK(vx::philox_u32(seed, step, e.i) == e.word);
    CHECK(float_bits(vx::philox_normal(seed, step, e.i)) == e.normal_bits);
    CHECK(vx::philox_uniform(seed, step, e.i) == float(e.word >> 8) * std::ldexp(1.0f, -24));
  }
}

TEST(philox_uniform_range) {
  const int64_t count = 1 << 20;
  std::vector<float> u(count);
  vx::philox_uniform_fill(u.data(), count, 42, 7);
  double mean = 0, lo = 1, hi = 0;
  for (int64_t i = 0; i < count; i += 4099) CHECK(u[i] == vx::philox_uniform(42, 7, uint64_t(i)));
  for (int64_t i = 0; i < count; ++i) {
    mean += u[i];
    lo = std::fmin(lo, u[i]);
    hi = std::fmax(hi, u[i]);
  }
  mean /= double(count);
  CHECK(lo >= 0.0 && hi < 1.0);
  CHECK(std::fabs(mean - 0.5) < 5.0 * std::sqrt(1.0 / 12.0 / double(count)));
  // The largest word maps below 1: (2^24 - 1) * 2^-24.
  CHECK(float(0xffffffffu >> 8) * std::ldexp(1.0f, -24) < 1.0f);
}

TEST(philox_normal_matches_definition) {
  for (uint64_t i = 0; i < 4096; ++i) CHECK(vx::philox_normal(99, 3, i) == normal_from_words(99, 3, i));
}

TEST(philox_normal_moments) {
  const int64_t count = 1000000;
  std::vector<float> z(count);
  vx::philox_normal_fill(z.data(), count, 2024, 1);
  double s1 = 0, s2 = 0, s4 = 0, within1 = 0, lag = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double v = z[i];
    s1 += v;
    s2 += v * v;
    s4 += v * v * v * v;
    within1 += std::fabs(v) < 1.0 ? 1 : 0;
    if (i > 0) lag += v * z[i - 1];
  }
  const double n = double(count), mean = s1 / n, var = s2 / n - mean * mean;
  CHECK(std::fabs(mean) < 5.0 / std::sqrt(n));
  CHECK(std::fabs(var - 1.0) < 5.0 * std::sqrt(2.0 / n));
  CHECK(std::fabs(s4 / n - 3.0) < 5.0 * std::sqrt(96.0 / n));   // kurtosis of N(0, 1)
  CHECK(std::fabs(within1 / n - 0.682689492) < 0.003);
  CHECK(std::fabs(lag / n) < 5.0 / std::sqrt(n));               // neighbours (same Box-Muller pair too)
}

TEST(philox_fill_offset) {
  const int64_t count = 20000;
  std::vector<float> base(count + 5000), shifted(count), ubase(count + 5000), ushift(count);
  vx::philox_normal_fill(base.data(), int64_t(base.size()), 5, 9, 0);
  vx::philox_uniform_fill(ubase.data(), int64_t(ubase.size()), 5, 9, 0);
  for (uint64_t k : {0u, 1u, 2u, 3u, 5u, 4097u}) {
    vx::philox_normal_fill(shifted.data(), count, 5, 9, k);
    vx::philox_uniform_fill(ushift.data(), count, 5, 9, k);
    CHECK(std::memcmp(shifted.data(), base.data() + k, sizeof(float) * count) == 0);
    CHECK(std::memcmp(ushift.data(), ubase.data() + k, sizeof(float) * count) == 0);
  }
  for (int64_t i = 0; i < 64; ++i) CHECK(base[i] == vx::philox_normal(5, 9, uint64_t(i)));
  // A fill of 1 value at an odd offset, and count 0 (writes nothing).
  float one = 0;
  vx::philox_normal_fill(&one, 1, 5, 9, 4097);
  CHECK(one == base[4097]);
  float untouched = 123.0f;
  vx::philox_normal_fill(&untouched, 0, 5, 9, 0);
  CHECK(untouched == 123.0f);
}

TEST(philox_fill_thread_count_independent) {
  const int64_t count = 300001;
  std::vector<float> a(count), b(count), ua(count), ub(count);
  vx::set_num_threads(1);
  vx::philox_normal_fill(a.data(), count, 77, 11, 3);
  vx::philox_uniform_fill(ua.data(), count, 77, 11, 3);
  vx::set_num_threads(2);
  vx::philox_normal_fill(b.data(), count, 77, 11, 3);
  vx::philox_uniform_fill(ub.data(), count, 77, 11, 3);
  vx::set_num_threads(0);
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * count) == 0);
  CHECK(std::memcmp(ua.data(), ub.data(), sizeof(float) * count) == 0);
}

VX_TEST_MAIN()
