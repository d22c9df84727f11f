// Fixed-width vectors, e^x, and run-time ISA dispatch for the memory-bound kernels (activation, loss,
// norm). Each kernel is written once against f8 (8 floats) and d4 (4 doubles):
// - GCC/Clang/Emscripten: vector extensions, which lower to what the enclosing function's target
//   offers (one ymm register under AVX2, two xmm under the baseline SSE2, two q/v128 registers on
//   arm64/WASM SIMD); elsewhere a plain-array fallback of the same operations.
// - VXM_DISPATCH compiles a kernel body twice on x86-64 (AVX2 and the baseline) and calls the one this
//   CPU supports. The AVX2 build enables no FMA, and every lane performs the same IEEE operations in the
//   same order in both builds, so which one runs never changes a result (tests compare the bits).
// Reductions keep one accumulator per lane (a fixed function of the element index) and add the lanes
// in a fixed order, so they stay independent of the thread count too.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
// Every function that takes or returns an f8 is always_inline, so no call ever passes one by value
// across an ABI boundary: GCC's note that 32-byte vectors change the ABI without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include "simd.h"

#if defined(__GNUC__)
#define VXM_VECTOR_EXT 1
#else
#define VXM_VECTOR_EXT 0
#endif
#define VXM_INLINE VX_ALWAYS_INLINE  // simd.h: the same run-time ISA dispatch conditions as conv_engine
#define VXM_X86 VX_X86_DISPATCH

namespace vx {
namespace vm {

constexpr int kLanes = 8;  // floats per f8

#if VXM_VECTOR_EXT
typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));  // lane masks of f8 (-1 or 0) and integers
typedef uint32_t u8 __attribute__((vector_size(32)));
typedef double d4 __attribute__((vector_size(32)));

VXM_INLINE f8 splat(float s) { return f8{s, s, s, s, s, s, s, s}; }
VXM_INLINE d4 splatd(double s) { return d4{s, s, s, s}; }
VXM_INLINE i8 splati(int32_t s) { return i8{s, s, s, s, s, s, s, s}; }
VXM_INLINE i8 as_int(const f8& v) { return (i8)v; }  // same-size vector casts reinterpret the bits
VXM_INLINE f8 as_float(const i8& v) { return (f8)v; }
// Lanes 0..3 and 4..7 of v, widened (exactly) to double. Spelled lane by lane: GCC turns this into one
// vcvtps2pd ymm under AVX2, where __builtin_convertvector of a half goes through the stack.
VXM_INLINE d4 lo_d(const f8& v) { return d4{double(v[0]), double(v[1]), double(v[2]), double(v[3])}; }
VXM_INLINE d4 hi_d(const f8& v) { return d4{double(v[4]), double(v[5]), double(v[6]), double(v[7])}; }
// (lo, hi) rounded to float, lanes in order.
VXM_INLINE f8 narrow(const d4& lo, const d4& hi) {
  return f8{float(lo[0]), float(lo[1]), float(lo[2]), float(lo[3]),
            float(hi[0]), float(hi[1]), float(hi[2]), float(hi[3])};
}
VXM_INLINE f8 to_float(const i8& v) { return __builtin_convertvector(v, f8); }
// Truncation toward zero; only for lanes known to be in int32 range (others give unspecified values).
VXM_INLINE i8 to_int(const f8& v) { return __builtin_convertvector(v, i8); }
#else
// Plain arrays with the same operations, for compilers without vector extensions (MSVC).
template <class T, int N>
struct Vec {
  T v[N];
  T& operator[](int i) { return v[i]; }
  T operator[](int i) const { return v[i]; }
};
typedef Vec<float, 8> f8;
typedef Vec<int32_t, 8> i8;
typedef Vec<uint32_t, 8> u8;
typedef Vec<double, 4> d4;
#define VXM_BINOP(T, N, OP)                                                  \
  inline Vec<T, N> operator OP(Vec<T, N> a, Vec<T, N> b) {                   \
    for (int i = 0; i < N; ++i) a.v[i] = a.v[i] OP b.v[i];                   \
    return a;                                                                \
  }                                                                          \
  inline Vec<T, N> operator OP(Vec<T, N> a, T s) {                           \
    for (int i = 0; i < N; ++i) a.v[i] = a.v[i] OP s;                        \
    return a;                                                                \
  }                                                                          \
  inline Vec<T, N>& operator OP##=(Vec<T, N>& a, Vec<T, N> b) { return a = a OP b; }
#define VXM_CMP(T, N, M, OP)                                                 \
  inline Vec<M, N> operator OP(Vec<T, N> a, Vec<T, N> b) {                   \
    Vec<M, N> r;                                                             \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] OP b.v[i] ? M(-1) : M(0);    \
    return r;                                                                \
  }
#define VXM_ARITH(T, N, M) \
  VXM_BINOP(T, N, +) VXM_BINOP(T, N, -) VXM_BINOP(T, N, *) VXM_BINOP(T, N, /) \
  VXM_CMP(T, N, M, <) VXM_CMP(T, N, M, >) VXM_CMP(T, N, M, <=) VXM_CMP(T, N, M, >=) VXM_CMP(T, N, M, ==)
VXM_ARITH(float, 8, int32_t)
VXM_ARITH(double, 4, int64_t)
VXM_BINOP(int32_t, 8, +) VXM_BINOP(int32_t, 8, -) VXM_BINOP(int32_t, 8, &) VXM_BINOP(int32_t, 8, |)
VXM_BINOP(uint32_t, 8, +) VXM_BINOP(uint32_t, 8, -)
inline i8 operator~(i8 a) {
  for (int i = 0; i < 8; ++i) a.v[i] = ~a.v[i];
  return a;
}
inline f8 operator-(f8 a) {
  for (int i = 0; i < 8; ++i) a.v[i] = -a.v[i];
  return a;
}
inline i8 operator>>(i8 a, int s) {
  for (int i = 0; i < 8; ++i) a.v[i] >>= s;
  return a;
}
inline u8 operator<<(u8 a, int s) {
  for (int i = 0; i < 8; ++i) a.v[i] <<= s;
  return a;
}
#undef VXM_ARITH
#undef VXM_CMP
#undef VXM_BINOP
inline f8 splat(float s) { return f8{{s, s, s, s, s, s, s, s}}; }
inline d4 splatd(double s) { return d4{{s, s, s, s}}; }
inline i8 splati(int32_t s) { return i8{{s, s, s, s, s, s, s, s}}; }
inline i8 as_int(f8 v) {
  i8 r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline f8 as_float(i8 v) {
  f8 r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline d4 lo_d(f8 v) { return d4{{v.v[0], v.v[1], v.v[2], v.v[3]}}; }
inline d4 hi_d(f8 v) { return d4{{v.v[4], v.v[5], v.v[6], v.v[7]}}; }
inline f8 narrow(d4 lo, d4 hi) {
  f8 r;
  for (int i = 0; i < 4; ++i) {
    r.v[i] = static_cast<float>(lo.v[i]);
    r.v[i + 4] = static_cast<float>(hi.v[i]);
  }
  return r;
}
inline f8 to_float(i8 v) {
  f8 r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<float>(v.v[i]);
  return r;
}
inline i8 to_int(f8 v) {
  i8 r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<int32_t>(v.v[i]);
  return r;
}
#endif

VXM_INLINE u8 as_uint(const i8& v) {
  u8 r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
VXM_INLINE i8 from_uint(const u8& v) {
  i8 r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

VXM_INLINE f8 load(const float* p) {
  f8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
VXM_INLINE void store(float* p, const f8& v) { std::memcpy(p, &v, sizeof v); }
VXM_INLINE d4 loadd(const double* p) {
  d4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
VXM_INLINE void stored(double* p, const d4& v) { std::memcpy(p, &v, sizeof v); }
// The first n (< kLanes in a loop's tail, or kLanes) values at p; lanes past n are 0.
VXM_INLINE f8 load_n(const float* p, int64_t n) {
  if (n >= kLanes) return load(p);
  f8 v = splat(0.0f);
  std::memcpy(&v, p, static_cast<size_t>(n) * sizeof(float));
  return v;
}
VXM_INLINE void store_n(float* p, const f8& v, int64_t n) {
  if (n >= kLanes) return store(p, v);
  std::memcpy(p, &v, static_cast<size_t>(n) * sizeof(float));
}
// Mask of the lanes below n.
VXM_INLINE i8 first_lanes(int64_t n) {
  const i8 iota = {0, 1, 2, 3, 4, 5, 6, 7};
  return iota < splati(static_cast<int32_t>(n < kLanes ? n : kLanes));
}

// m ? a : b per lane (m from a comparison: all ones or all zeros).
VXM_INLINE f8 select(const i8& m, const f8& a, const f8& b) { return as_float((m & as_int(a)) | (~m & as_int(b))); }
// The same for doubles, m from comparing two d4.
#if VXM_VECTOR_EXT
template <class M>
VXM_INLINE d4 select_d(const M& m, const d4& a, const d4& b) {
  static_assert(sizeof(M) == sizeof(d4), "a mask of 4 64-bit lanes");
  return (d4)((m & (M)a) | (~m & (M)b));
}
#else
inline d4 select_d(const Vec<int64_t, 4>& m, const d4& a, const d4& b) {
  d4 r;
  for (int i = 0; i < 4; ++i) r.v[i] = m.v[i] ? a.v[i] : b.v[i];
  return r;
}
#endif
// max / min that keep a NaN of x (x < lo is false for NaN).
VXM_INLINE f8 max_keep_nan(const f8& x, const f8& lo) { return select(x < lo, lo, x); }
VXM_INLINE f8 abs(const f8& x) { return as_float(as_int(x) & splati(0x7fffffff)); }

// e^x for x <= 0 (and NaN, which stays NaN): what softmax, sigmoid and the Dice loss need. Cody-Waite
// reduction x = k ln2 + r, |r| <= ln2/2, and Cephes' degree-7 polynomial for e^r (max error about 1 ulp
// over the range, tested against std::exp); 2^k is applied in two halves so that results in the
// subnormal range are rounded once, like std::exp's. Below -104 the result is 0.
VXM_INLINE f8 exp_neg(const f8& x_in) {
  const f8 x = max_keep_nan(x_in, splat(-104.0f));
  const f8 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds |t| < 2^22 to an integer
  const f8 t = x * splat(1.44269504088896341f) + magic;
  const f8 kf = t - magic;
  const i8 k = as_int(t) - as_int(magic);  // the integer kf, in [-150, 0]
  f8 r = x - kf * splat(0.693359375f);     // ln2 split in two: kf * 0.693359375 is exact
  r = r - kf * splat(-2.12194440e-4f);
  const f8 z = r * r;
  f8 y = splat(1.9875691500e-4f);
  y = y * r + splat(1.3981999507e-3f);
  y = y * r + splat(8.3334519073e-3f);
  y = y * r + splat(4.1665795894e-2f);
  y = y * r + splat(1.6666665459e-1f);
  y = y * r + splat(5.0000001201e-1f);
  y = y * z + r + splat(1.0f);
  const i8 k1 = k >> 1, k2 = k - k1;  // each in [-75, 0]: 2^k1 and 2^k2 are normal floats
  const f8 s1 = as_float(from_uint(as_uint(k1 + splati(127)) << 23));
  const f8 s2 = as_float(from_uint(as_uint(k2 + splati(127)) << 23));
  return (y * s1) * s2;
}

// Sum of the 8 lanes of (lo, hi), always in this order: a reduction's fixed final step.
VXM_INLINE double sum_lanes(const d4& lo, const d4& hi) {
  return ((lo[0] + lo[1]) + (lo[2] + lo[3])) + ((hi[0] + hi[1]) + (hi[2] + hi[3]));
}

// --- Run-time choice --------------------------------------------------------------------------------------
// True when the AVX2 builds run. Detected once; select_isa overrides it for tests and benchmarks.
inline bool& avx2_flag() {
#if VXM_X86
  static bool on = __builtin_cpu_supports("avx2");
#else
  static bool on = false;
#endif
  return on;
}
inline bool use_avx2() { return avx2_flag(); }
// "avx2", "sse2" (the baseline build) or null (automatic). False, changing nothing, when this CPU or
// build lacks the ISA. Not to be called while kernels run.
inline bool select_isa(const char* name) {
#if VXM_X86
  const bool has = __builtin_cpu_supports("avx2");
  if (!name) return (avx2_flag() = has), true;
  if (std::strcmp(name, "avx2") == 0) return has && ((avx2_flag() = true), true);
  if (std::strcmp(name, "sse2") == 0) return (avx2_flag() = false), true;
  return false;
#else
  return !name;
#endif
}

}  // namespace vm
}  // namespace vx

// Defines `static void name params` that runs name##_impl args, the body compiled once for AVX2 and
// once for the baseline on x86-64 (name##_impl must be VXM_INLINE and call only VXM_INLINE helpers,
// not lambdas, so that all of it is compiled for the caller's target).
#if VXM_X86
#define VXM_DISPATCH(name, params, args)                                              \
  __attribute__((target("avx2"), noinline)) static void name##_avx2 params { name##_impl args; } \
  __attribute__((noinline)) static void name##_base params { name##_impl args; }      \
  static void name params {                                                           \
    if (::vx::vm::use_avx2())                                                         \
      name##_avx2 args;                                                               \
    else                                                                              \
      name##_base args;                                                               \
  }
#else
#define VXM_DISPATCH(name, params, args) \
  static void name params { name##_impl args; }
#endif
