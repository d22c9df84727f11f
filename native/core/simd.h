// Portable SIMD vocabulary shared by the hot kernels (gemm.cpp, conv_engine.cpp): GCC/Clang vector types
// that lower to whatever the enclosing function's target offers (a 32-byte vector is one ymm under AVX2,
// two xmm under SSE2, two q-registers under NEON, two v128 under WASM SIMD), and the macros for
// compiling one template several times with __attribute__((target)) and choosing at run time.
#pragma once
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__EMSCRIPTEN__) && !defined(VX_PORTABLE_ONLY)
#define VX_X86_DISPATCH 1
#else
#define VX_X86_DISPATCH 0
#endif

#if defined(__GNUC__)
#define VX_ALWAYS_INLINE inline __attribute__((always_inline))
#define VX_NOINLINE __attribute__((noinline))
#define VX_PRAGMA(x) _Pragma(#x)
#define VX_UNROLL VX_PRAGMA(GCC unroll 16)
#else
#define VX_ALWAYS_INLINE inline
#define VX_NOINLINE __declspec(noinline)
#define VX_UNROLL
#endif

namespace vx {
namespace simd {

#if defined(__GNUC__)
typedef float vf4 __attribute__((vector_size(16)));
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));
#else
// Plain arrays for compilers without vector extensions (MSVC); correct, left to the auto-vectorizer.
struct vf4 {
  float v[4];
  vf4& operator+=(const vf4& o) {
    for (int i = 0; i < 4; ++i) v[i] += o.v[i];
    return *this;
  }
};
inline vf4 operator*(const vf4& a, float s) {
  vf4 r;
  for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] * s;
  return r;
}
inline vf4 operator*(const vf4& a, const vf4& b) {
  vf4 r;
  for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] * b.v[i];
  return r;
}
inline vf4 operator+(const vf4& a, float s) {
  vf4 r;
  for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] + s;
  return r;
}
#endif

}  // namespace simd
}  // namespace vx
