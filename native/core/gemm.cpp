// GEMM (packing + register-blocked micro-kernel with runtime ISA choice), per-thread scratch and work
// planning shared by the linear kernels and conv_engine. See gemm.h.
//
// Blocking follows the usual Goto/BLIS scheme: B is packed into kc x NR panels (one stays in L1 across a
// column of micro-tiles), A into MR x kc panels (an MC x kc block stays in L2), and the micro-kernel keeps
// an R x NR block of C (R <= MR) in vector registers. The micro-kernel is one template compiled several
// times: once per x86 ISA via __attribute__((target)) and once portably.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "parallel.h"

#include "simd.h"

#if VX_X86_DISPATCH
#include <cpuid.h>
#endif
#include "vmath.h"

namespace vx {

int64_t checked_elements(const int64_t* f, int count) {
  int64_t p = 1;
  for (int i = 0; i < count; ++i) {
    if (f[i] < 1) return -1;
    if (p > kMaxTensorElements / f[i]) return -1;
    p *= f[i];
  }
  return p;
}

// ------------------------------------------------------------------------------------------------------------
namespace {

using simd::vf4;
using simd::vf8;
using simd::vf16;

using MicroFn = void (*)(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                         int64_t csc, int n, bool beta, const float* bias);

// C[i, j] = (beta ? C[i, j] : 0) + bias[i] + sum_k a[k*MR + i] * b[k*NR + j] for i < R, j < n.
// R rows of an MR-row A panel (R < MR only on the last panel, so small M wastes no multiplications);
// the B panel is always NR wide (zero-padded), n <= NR columns are stored.
// ROWS: vector j of row k of B is the VL floats at brows[k] + voff[j] instead of b[k*NR + j*VL ..] (the
// same arithmetic in the same order: the same bits).
template <class V, int VL, int MR, int NV, int R, bool ROWS = false>
VX_ALWAYS_INLINE void micro_body(int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                                 int64_t csc, int n, bool beta, const float* bias,
                                 const float* const* brows = nullptr, const int64_t* voff = nullptr) {
  constexpr int NR = VL * NV;
  V acc[R][NV];
  VX_UNROLL for (int i = 0; i < R; ++i) {
    VX_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  }
  int64_t off[NV];
  VX_UNROLL for (int j = 0; j < NV; ++j) off[j] = ROWS ? voff[j] : j * VL;
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = ROWS ? brows[k] : b;
    V bv[NV];
    VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], bk + off[j], sizeof(V));
    VX_UNROLL for (int i = 0; i < R; ++i) {
      const float ai = a[i];
      VX_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] += bv[j] * ai;
    }
    a += MR;
    if (!ROWS) b += NR;
  }
  if (csc == 1 && n == NR) {
    VX_UNROLL for (int i = 0; i < R; ++i) {
      float* ci = c + i * rsc;
      const float bi = bias ? bias[i] : 0.0f;
      VX_UNROLL for (int j = 0; j < NV; ++j) {
        V v = acc[i][j] + bi;
        if (beta) {
          V old;
          std::memcpy(&old, ci + j * VL, sizeof(V));
          v += old;
        }
        std::memcpy(ci + j * VL, &v, sizeof(V));
      }
    }
  } else {
    float t[R][NR];
    std::memcpy(t, acc, sizeof t);
    for (int i = 0; i < R; ++i) {
      const float bi = bias ? bias[i] : 0.0f;
      for (int j = 0; j < n; ++j) {
        float* p = c + i * rsc + j * csc;
        *p = (beta ? *p : 0.0f) + (t[i][j] + bi);
      }
    }
  }
}

template <class V, int VL, int MR, int NV, bool ROWS = false>
VX_ALWAYS_INLINE void micro_rows(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                                 int64_t csc, int n, bool beta, const float* bias,
                                 const float* const* brows = nullptr, const int64_t* voff = nullptr) {
  static_assert(MR >= 1 && MR <= 8, "micro_rows handles MR <= 8");
  switch (m) {
#define VX_ROWS_CASE(r)                                                                                      \
  case r:                                                                                                    \
    if constexpr (r <= MR) micro_body<V, VL, MR, NV, r, ROWS>(kc, a, b, c, rsc, csc, n, beta, bias, brows, voff); \
    break;
    VX_ROWS_CASE(1)
    VX_ROWS_CASE(2)
    VX_ROWS_CASE(3)
    VX_ROWS_CASE(4)
    VX_ROWS_CASE(5)
    VX_ROWS_CASE(6)
    VX_ROWS_CASE(7)
    VX_ROWS_CASE(8)
#undef VX_ROWS_CASE
    default:
      break;
  }
}

// Portable kernel: 4-float vectors. arm64 has 32 vector registers, so 4 x 16 (16 accumulators); the x86
// baseline (SSE2, 16 registers) 6 x 8 (12 accumulators); WASM SIMD 4 x 8: V8 keeps a couple of the 16
// xmm registers for itself and spills a 6 x 8 tile (measured: 4 x 8 decodes the quarter model 1.6x
// faster than 6 x 8, 5 x 8 spills too).
#if defined(__aarch64__) || defined(_M_ARM64)
constexpr int kPortableMR = 4, kPortableNV = 4;
#elif defined(__EMSCRIPTEN__)
constexpr int kPortableMR = 4, kPortableNV = 2;
#else
constexpr int kPortableMR = 6, kPortableNV = 2;
#endif

void micro_portable(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc, int64_t csc,
                    int n, bool beta, const float* bias) {
  micro_rows<vf4, 4, kPortableMR, kPortableNV>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
void micro_rows_portable(int m, int64_t kc, const float* a, const float* const* brows, const int64_t* voff,
                         float* c, int64_t rsc, int64_t csc, int n, bool beta, const float* bias) {
  micro_rows<vf4, 4, kPortableMR, kPortableNV, true>(m, kc, a, nullptr, c, rsc, csc, n, beta, bias, brows, voff);
}

#if VX_X86_DISPATCH
__attribute__((target("avx2,fma"))) void micro_avx2(int m, int64_t kc, const float* a, const float* b,
                                                    float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                    const float* bias) {
  micro_rows<vf8, 8, 6, 2>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
__attribute__((target("avx2,fma"))) void micro_rows_avx2(int m, int64_t kc, const float* a,
                                                         const float* const* brows, const int64_t* voff,
                                                         float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                         const float* bias) {
  micro_rows<vf8, 8, 6, 2, true>(m, kc, a, nullptr, c, rsc, csc, n, beta, bias, brows, voff);
}
__attribute__((target("avx512f"))) void micro_avx512(int m, int64_t kc, const float* a, const float* b,
                                                     float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                     const float* bias) {
  micro_rows<vf16, 16, 6, 2>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
__attribute__((target("avx512f"))) void micro_rows_avx512(int m, int64_t kc, const float* a,
                                                          const float* const* brows, const int64_t* voff,
                                                          float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                          const float* bias) {
  micro_rows<vf16, 16, 6, 2, true>(m, kc, a, nullptr, c, rsc, csc, n, beta, bias, brows, voff);
}
#endif

struct Kernel {
  MicroFn fn;
  GemmMicroRowsFn rows_fn;
  int mr, nr, vl;
  const char* name;
  const char* isa;
};

const Kernel kPortable = {micro_portable, micro_rows_portable, kPortableMR, 4 * kPortableNV, 4,
#if VX_X86_DISPATCH
                          "sse2 6x8", "sse2"};
#else
                          kPortableNV == 4 ? "portable 4x16" : kPortableMR == 4 ? "portable 4x8" : "portable 6x8",
                          "portable"};
#endif
#if VX_X86_DISPATCH
const Kernel kAvx2 = {micro_avx2, micro_rows_avx2, 6, 16, 8, "avx2+fma 6x16", "avx2"};
const Kernel kAvx512 = {micro_avx512, micro_rows_avx512, 6, 32, 16, "avx512f 6x32", "avx512f"};
#endif

bool supported(const Kernel& k) {
#if VX_X86_DISPATCH
  __builtin_cpu_init();
  if (&k == &kAvx512) return __builtin_cpu_supports("avx512f");
  if (&k == &kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return &k == &kPortable;
}

#if VX_X86_DISPATCH
// AMD family 19h with AVX-512 is Zen 4, which executes a 512-bit operation as two 256-bit halves: the
// AVX-512 kernels do the same arithmetic per cycle as the AVX2 ones, with panels twice as wide (more
// padding on small layers, column panels that span rows of 16-wide layers). Measured on an EPYC of that
// family (bench/probe-isa.ts, interleaved in one process, 2 threads): the quarter training step took
// 0.91-0.95x the time with the AVX2 kernels (medians of per-round ratios, wall and CPU), the half decode
// and training step 0.96-0.99x; so automatic selection prefers AVX2 there. setCpuIsa('avx512f') still
// selects AVX-512.
bool avx512_double_pumped() {
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__builtin_cpu_is("amd") || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned base = (a >> 8) & 0xF, ext = (a >> 20) & 0xFF;
  return (base == 0xF ? base + ext : base) == 0x19;
}
#endif

const Kernel* auto_kernel() {
#if VX_X86_DISPATCH
  if (supported(kAvx512) && !(supported(kAvx2) && avx512_double_pumped())) return &kAvx512;
  if (supported(kAvx2)) return &kAvx2;
#endif
  return &kPortable;
}

const Kernel*& current_kernel() {
  static const Kernel* k = auto_kernel();
  return k;
}

// Cache blocking (floats). KC x NR of B = 16 KiB for NR = 16 (L1); MC x KC of A = 120 KiB (L2);
// KC x NC of B = 1 MiB (L2/L3).
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 120;  // multiple of every MR above (4, 6)
constexpr int64_t kNC = 1024;

// A block (mc x kc at a) into MR-row panels: panel p holds rows p*MR.. as dst[p*MR*kc + k*MR + i].
// Rows past mc in the last panel are never read (the micro-kernel computes only the valid rows).
void pack_a(float* dst, const float* a, int64_t rsa, int64_t csa, int64_t mc, int64_t kc, int mr) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - i0));
    float* d = dst + i0 * kc;
    if (csa == 1) {
      for (int i = 0; i < rows; ++i) {
        const float* s = a + (i0 + i) * rsa;
        for (int64_t k = 0; k < kc; ++k) d[k * mr + i] = s[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int i = 0; i < rows; ++i) d[k * mr + i] = a[(i0 + i) * rsa + k * csa];
    }
  }
}

// B block (kc x nc at b) into NR-column panels: dst[(j0/NR)*NR*kc + k*NR + j], zero-padded to NR.
void pack_b(float* dst, const float* b, int64_t rsb, int64_t csb, int64_t kc, int64_t nc, int nr) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - j0));
    float* d = dst + j0 * kc;
    if (csb == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = b + k * rsb + j0;
        float* dk = d + k * nr;
        for (int j = 0; j < cols; ++j) dk[j] = s[j];
        for (int j = cols; j < nr; ++j) dk[j] = 0.0f;
      }
    } else {
      for (int j = 0; j < cols; ++j) {
        const float* s = b + (j0 + j) * csb;
        for (int64_t k = 0; k < kc; ++k) d[k * nr + j] = s[k * rsb];
      }
      if (cols < nr)
        for (int64_t k = 0; k < kc; ++k)
          for (int j = cols; j < nr; ++j) d[k * nr + j] = 0.0f;
    }
  }
}

}  // namespace

const char* gemm_kernel_name() { return current_kernel()->name; }
int gemm_mr() { return current_kernel()->mr; }
int gemm_nr() { return current_kernel()->nr; }
int gemm_vl() { return current_kernel()->vl; }
const char* gemm_kernel_isa() { return current_kernel()->isa; }
GemmMicroFn gemm_micro_kernel() { return current_kernel()->fn; }
GemmMicroRowsFn gemm_micro_rows_kernel() { return current_kernel()->rows_fn; }

bool gemm_select_kernel(const char* name) {
  if (!name) {
    current_kernel() = auto_kernel();
    return true;
  }
  const Kernel* all[] = {
#if VX_X86_DISPATCH
      &kAvx512, &kAvx2,
#endif
      &kPortable};
  for (const Kernel* k : all) {
    if (std::strcmp(k->isa, name) == 0 || (k == &kPortable && std::strcmp(name, "portable") == 0)) {
      if (!supported(*k)) return false;
      current_kernel() = k;
      return true;
    }
  }
  return false;
}

bool cpu_select_isa(const char* name) {
  const Kernel* before = current_kernel();
  if (!gemm_select_kernel(name)) return false;
  const bool baseline = current_kernel() == &kPortable;
  if (!vm::select_isa(name ? (baseline ? "sse2" : "avx2") : nullptr) && name && !baseline) {
    current_kernel() = before;  // an AVX2 GEMM without the AVX2 element-wise build: refuse both
    return false;
  }
  return true;
}

namespace {

// The GEMM driver.
bool gemm_impl(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b,
               int64_t rsb, int64_t csb, float* c, int64_t rsc, int64_t csc, bool accumulate,
               const float* row_bias) {
  if (m <= 0 || n <= 0) return true;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) {
      const float bi = row_bias ? row_bias[i] : 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        float* p = c + i * rsc + j * csc;
        *p = (accumulate ? *p : 0.0f) + bi;
      }
    }
    return true;
  }
  const Kernel& kern = *current_kernel();
  const int mr = kern.mr, nr = kern.nr;
  const int64_t kc_max = std::min(k, kKC);
  const int64_t mc_max = std::min(m, kMC);
  const int64_t nc_max = std::min(n, kNC);
  float* pa = scratch(kScratchPackA, kc_max * ((mc_max + mr - 1) / mr * mr));
  float* pb = scratch(kScratchPackB, kc_max * ((nc_max + nr - 1) / nr * nr));
  if (!pa || !pb) return false;

  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = std::min(kKC, k - pc);
      const bool first = pc == 0;
      pack_b(pb, b + pc * rsb + jc * csb, rsb, csb, kc, nc, nr);
      for (int64_t ic = 0; ic < m; ic += kMC) {
        const int64_t mc = std::min(kMC, m - ic);
        pack_a(pa, a + ic * rsa + pc * csa, rsa, csa, mc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int ncols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int nrows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
            float* ct = c + (ic + ir) * rsc + (jc + jr) * csc;
            kern.fn(nrows, kc, pa + ir * kc, pb + jr * kc, ct, rsc, csc, ncols, accumulate || !first,
                    first && row_bias ? row_bias + ic + ir : nullptr);
          }
        }
      }
    }
  }
  return true;
}

}  // namespace

bool gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b,
          int64_t rsb, int64_t csb, float* c, int64_t rsc, int64_t csc, bool accumulate,
          const float* row_bias) {
  return gemm_impl(m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc, accumulate, row_bias);
}

// ------------------------------------------------------------------------------------------------------------
float* scratch(ScratchSlot slot, int64_t count) {
  struct Buf {
    void* raw = nullptr;
    float* p = nullptr;
    int64_t cap = 0;
    ~Buf() { std::free(raw); }
  };
  thread_local Buf bufs[kScratchSlots];
  Buf& buf = bufs[slot];
  if (count <= buf.cap) return buf.p;
  if (count < 0) return nullptr;
  int64_t want = std::max(count, buf.cap + buf.cap / 2);
  const uint64_t limit = (SIZE_MAX - 64) / sizeof(float);
  if (static_cast<uint64_t>(want) > limit) want = count;
  if (static_cast<uint64_t>(want) > limit) return nullptr;
  void* raw = std::malloc(static_cast<size_t>(want) * sizeof(float) + 64);
  if (!raw && want > count) {
    want = count;
    raw = std::malloc(static_cast<size_t>(want) * sizeof(float) + 64);
  }
  if (!raw) return nullptr;
  std::free(buf.raw);
  buf.raw = raw;
  buf.p = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(raw) + 63) & ~uintptr_t(63));
  buf.cap = want;
  return buf.p;
}

// ------------------------------------------------------------------------------------------------------------

TilePlan plan_tiles(int64_t outer, int64_t positions, int64_t max_tile, int64_t cout) {
  TilePlan plan;
  const int64_t threads = std::max(1, num_threads());
  outer = std::max<int64_t>(outer, 1);
  positions = std::max<int64_t>(positions, 1);
  plan.tiles = std::max<int64_t>(1, (positions + max_tile - 1) / max_tile);
  if (threads > 1) {
    // Static chunks are equal only when the item count is a multiple of the thread count: cut a few
    // more (smaller) tiles to get there; a tile can hold a single position.
    for (int64_t t = plan.tiles; t < plan.tiles + threads && t <= positions; ++t) {
      if ((outer * t) % threads == 0) {
        plan.tiles = t;
        break;
      }
    }
    plan.tiles = std::min(plan.tiles, positions);
    const int64_t items = outer * plan.tiles;
    if (items < threads) {
      const int64_t mr = gemm_mr();
      plan.co_blocks = std::min((threads + items - 1) / items, (cout + mr - 1) / mr);
      plan.co_blocks = std::max<int64_t>(plan.co_blocks, 1);
    }
  }
  return plan;
}

void tile_range(int64_t positions, int64_t tiles, int64_t j, int64_t* p0, int64_t* p1) {
  const int64_t nr = gemm_nr();
  const int64_t q = positions / tiles, r = positions % tiles;
  const bool align = q >= 4 * nr;
  auto bound = [&](int64_t i) -> int64_t {
    if (i >= tiles) return positions;
    const int64_t v = i * q + std::min(i, r);
    return align ? v - v % nr : v;
  };
  *p0 = bound(j);
  *p1 = bound(j + 1);
}

void co_range(int64_t cout, int64_t blocks, int64_t j, int64_t* c0, int64_t* c1) {
  const int64_t mr = gemm_mr();
  const int64_t panels = (cout + mr - 1) / mr;
  auto bound = [&](int64_t i) -> int64_t {
    if (i >= blocks) return cout;
    return std::min(cout, (panels / blocks * i + std::min(i, panels % blocks)) * mr);
  };
  *c0 = bound(j);
  *c1 = bound(j + 1);
}

void channel_sum_add(float* db, const float* dy, int64_t n, int64_t channels, int64_t positions) {
  parallel_for(channels, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      // Eight independent lanes (vectorizable without reassociation), combined in a fixed order.
      double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < n; ++i) {
        const float* p = dy + (i * channels + c) * positions;
        int64_t q = 0;
        for (; q + 8 <= positions; q += 8)
          for (int l = 0; l < 8; ++l) s[l] += p[q + l];
        for (; q < positions; ++q) s[q % 8] += p[q];
      }
      db[c] += static_cast<float>(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
    }
  });
}

}  // namespace vx
