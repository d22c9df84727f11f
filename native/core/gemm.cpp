// GEMM (packing + register-blocked micro-kernel with runtime ISA choice), im2col column tiles, per-thread
// scratch and work planning shared by the conv3d, conv_transpose3d and linear kernels. See gemm.h.
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
// Vector types. GCC/Clang vector extensions lower to whatever the enclosing function's target offers
// (a 32-byte vector is one ymm under AVX2, two xmm under SSE2, two q-registers under NEON).
namespace {

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
inline vf4 operator+(const vf4& a, float s) {
  vf4 r;
  for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] + s;
  return r;
}
#endif

// Smallest q with q*b >= a, for b > 0 and any sign of a.
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// A column tile is built (or, by the direct kernels, consumed) panel by panel: `width` consecutive output
// positions at a time. Within a panel the positions form runs of consecutive x.
struct Run {
  int64_t zb, yb;        // tz * step_z, ty * step_y
  int64_t tx0, len, jj;  // x positions tx0 .. tx0 + len - 1 at panel columns jj ..
};

// Runs of [p0, p1) cut at panel boundaries (panel q owns runs [first[q], first[q + 1])), and per x tap
// the output x range [xlo, xhi) that reads inside the input. Per-thread storage, reused.
struct PanelRuns {
  const Run* runs;
  const int64_t* first;
  const int64_t* xlo;
  const int64_t* xhi;
  int64_t panels;
};

bool build_panel_runs(int64_t width, const ColAxis ax[3], int64_t p0, int64_t p1, PanelRuns* out) {
  thread_local std::vector<Run> runs;
  thread_local std::vector<int64_t> first, xlo, xhi;
  const int64_t panels = (p1 - p0 + width - 1) / width;
  try {
    runs.clear();
    first.assign(size_t(panels) + 1, 0);
    xlo.resize(size_t(ax[2].ntaps));
    xhi.resize(size_t(ax[2].ntaps));
    for (int64_t q = 0; q < panels; ++q) {
      first[size_t(q)] = int64_t(runs.size());
      const int64_t e = std::min(p1, p0 + (q + 1) * width);
      for_each_run(ax[1].n, ax[2].n, p0 + q * width, e,
                   [&](int64_t tz, int64_t ty, int64_t tx0, int64_t len, int64_t j) {
                     runs.push_back(Run{tz * ax[0].step, ty * ax[1].step, tx0, len, j});
                   });
    }
    first[size_t(panels)] = int64_t(runs.size());
  } catch (const std::bad_alloc&) {
    return false;
  }
  for (int64_t u = 0; u < ax[2].ntaps; ++u) {
    const int64_t ox = ax[2].off[u], sx = ax[2].step;
    xlo[size_t(u)] = std::max<int64_t>(0, ceil_div(-ox, sx));
    xhi[size_t(u)] = std::max(xlo[size_t(u)], ceil_div(ax[2].in - ox, sx));
  }
  *out = PanelRuns{runs.data(), first.data(), xlo.data(), xhi.data(), panels};
  return true;
}

// Offset, within one channel plane, of the input row that each run of a panel reads for the taps with
// offsets (oz, oy); -1 where that row lies in the padding. Returns whether any run reads a real row.
// Rows do not depend on the channel, so the panel loops below run over channels innermost.
inline bool panel_row_offsets(int64_t* rowoff, const Run* r0, int nruns, const ColAxis ax[3], int64_t oz,
                              int64_t oy) {
  const int64_t id = ax[0].in, ih = ax[1].in, iw = ax[2].in;
  bool any = false;
  for (int i = 0; i < nruns; ++i) {
    const int64_t iz = r0[i].zb + oz, iy = r0[i].yb + oy;
    const bool in = iz >= 0 && iz < id && iy >= 0 && iy < ih;
    rowoff[i] = in ? (iz * ih + iy) * iw : -1;
    any = any || in;
  }
  return any;
}

// One row of one panel (channel plane inc, x tap with offset ox, valid output x range [lo, hi)) into
// d[0 .. width): the runs' values, zero in the padding and past the last position. The slow path of the
// panel loops (edges, short rows, strided x); kept out of line so that it does not crowd the direct
// kernels' accumulators out of registers.
VX_NOINLINE void fill_panel_row(float* d, int64_t width, const Run* r0, int nruns, const int64_t* rowoff,
                                const float* inc, int64_t ox, int64_t lo, int64_t hi, int64_t sx) {
  int64_t used = 0;
  for (int i = 0; i < nruns; ++i) {
    const Run& r = r0[i];
    float* dr = d + r.jj - r.tx0;  // dr[tx] is position tx of this run
    const int64_t tx1 = r.tx0 + r.len;
    used = r.jj + r.len;
    if (rowoff[i] < 0) {
      for (int64_t t = r.tx0; t < tx1; ++t) dr[t] = 0.0f;
      continue;
    }
    const float* src = inc + rowoff[i] + ox;  // src[tx * sx] is input x = tx * sx + ox
    const int64_t a = std::min(std::max(lo, r.tx0), tx1);
    const int64_t e = std::max(std::min(hi, tx1), a);
    for (int64_t t = r.tx0; t < a; ++t) dr[t] = 0.0f;
    if (sx == 1) {
      for (int64_t t = a; t < e; ++t) dr[t] = src[t];
    } else {
      for (int64_t t = a; t < e; ++t) dr[t] = src[t * sx];
    }
    for (int64_t t = e; t < tx1; ++t) dr[t] = 0.0f;
  }
  for (int64_t j = used; j < width; ++j) d[j] = 0.0f;
}

// Arguments of the direct (fused im2col + multiply) kernels, see conv_direct in gemm.h.
struct DirectArgs {
  const float* w;
  int64_t ldw;
  const float* bias;
  const float* in;
  int64_t channels;
  const ColAxis* ax;
  PanelRuns pr;
  int64_t cols;  // p1 - p0
  float* c;
  int64_t rsc;
};

// M output rows over panels of W = VL * NV positions: each column-tile row is formed in registers (NV
// vector loads when the panel is one run inside the input) and multiplied into M accumulators at once.
template <class V, int VL, int NV, int M>
VX_ALWAYS_INLINE void direct_body(const DirectArgs& g) {
  constexpr int W = VL * NV;
  const ColAxis* ax = g.ax;
  const int64_t sx = ax[2].step, n0 = ax[0].ntaps, n1 = ax[1].ntaps, n2 = ax[2].ntaps, ntap = n0 * n1 * n2;
  const int64_t plane = ax[0].in * ax[1].in * ax[2].in;
  for (int64_t q = 0; q < g.pr.panels; ++q) {
    const Run* r0 = g.pr.runs + g.pr.first[q];
    const int nruns = static_cast<int>(g.pr.first[q + 1] - g.pr.first[q]);  // <= W
    const bool whole = nruns == 1 && r0->len == W && sx == 1;
    V acc[M][NV];
    VX_UNROLL for (int m = 0; m < M; ++m) {
      VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] = V{};
    }
    int64_t rowoff[64];
    for (int64_t u0 = 0; u0 < n0; ++u0) {
      for (int64_t u1 = 0; u1 < n1; ++u1) {
        if (!panel_row_offsets(rowoff, r0, nruns, ax, ax[0].off[u0], ax[1].off[u1])) continue;
        for (int64_t u2 = 0; u2 < n2; ++u2) {
          const int64_t ox = ax[2].off[u2], lo = g.pr.xlo[u2], hi = g.pr.xhi[u2];
          const float* wt = g.w + (u0 * n1 + u1) * n2 + u2;  // weight (m, channel c): wt[m*ldw + c*ntap]
          if (whole && rowoff[0] >= 0 && lo <= r0->tx0 && r0->tx0 + W <= hi) {
            const float* src = g.in + rowoff[0] + ox + r0->tx0;
            for (int64_t c = 0; c < g.channels; ++c, src += plane, wt += ntap) {
              V b[NV];
              VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&b[j], src + j * VL, sizeof(V));
              VX_UNROLL for (int m = 0; m < M; ++m) {
                const float wm = wt[m * g.ldw];
                VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] += b[j] * wm;
              }
            }
          } else {
            for (int64_t c = 0; c < g.channels; ++c, wt += ntap) {
              float t[W];
              fill_panel_row(t, W, r0, nruns, rowoff, g.in + c * plane, ox, lo, hi, sx);
              V b[NV];
              VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&b[j], t + j * VL, sizeof(V));
              VX_UNROLL for (int m = 0; m < M; ++m) {
                const float wm = wt[m * g.ldw];
                VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] += b[j] * wm;
              }
            }
          }
        }
      }
    }
    // Unrolled over m so that acc is only ever indexed by constants and stays in registers.
    const int64_t used = std::min<int64_t>(W, g.cols - q * W);
    VX_UNROLL for (int m = 0; m < M; ++m) {
      float* cm = g.c + m * g.rsc + q * W;
      const float bm = g.bias ? g.bias[m] : 0.0f;
      V v[NV];
      VX_UNROLL for (int j = 0; j < NV; ++j) v[j] = acc[m][j] + bm;
      if (used == W) {
        VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(cm + j * VL, &v[j], sizeof(V));
      } else {
        float t[W];
        VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(t + j * VL, &v[j], sizeof(V));
        for (int64_t j = 0; j < used; ++j) cm[j] = t[j];
      }
    }
  }
}

template <class V, int VL, int NV>
VX_ALWAYS_INLINE void direct_rows(int m, const DirectArgs& g) {
  switch (m) {
    case 1: direct_body<V, VL, NV, 1>(g); break;
    case 2: direct_body<V, VL, NV, 2>(g); break;
    case 3: direct_body<V, VL, NV, 3>(g); break;
    case 4: direct_body<V, VL, NV, 4>(g); break;
    default: break;
  }
}

using DirectFn = void (*)(int m, const DirectArgs& g);

using MicroFn = void (*)(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                         int64_t csc, int n, bool beta, const float* bias);

// C[i, j] = (beta ? C[i, j] : 0) + bias[i] + sum_k a[k*MR + i] * b[k*NR + j] for i < R, j < n.
// R rows of an MR-row A panel (R < MR only on the last panel, so small M wastes no multiplications);
// the B panel is always NR wide (zero-padded), n <= NR columns are stored.
template <class V, int VL, int MR, int NV, int R>
VX_ALWAYS_INLINE void micro_body(int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                                 int64_t csc, int n, bool beta, const float* bias) {
  constexpr int NR = VL * NV;
  V acc[R][NV];
  VX_UNROLL for (int i = 0; i < R; ++i) {
    VX_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  }
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
    VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], b + j * VL, sizeof(V));
    VX_UNROLL for (int i = 0; i < R; ++i) {
      const float ai = a[i];
      VX_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] += bv[j] * ai;
    }
    a += MR;
    b += NR;
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

template <class V, int VL, int MR, int NV>
VX_ALWAYS_INLINE void micro_rows(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                                 int64_t csc, int n, bool beta, const float* bias) {
  static_assert(MR >= 1 && MR <= 8, "micro_rows handles MR <= 8");
  switch (m) {
#define VX_ROWS_CASE(r)                                                                        \
  case r:                                                                                      \
    if constexpr (r <= MR) micro_body<V, VL, MR, NV, r>(kc, a, b, c, rsc, csc, n, beta, bias); \
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

// Portable kernel: 4-float vectors. arm64 has 32 vector registers, so 4 x 16 (16 accumulators);
// elsewhere (x86 baseline, WASM SIMD, 16 registers) 6 x 8 (12 accumulators).
#if defined(__aarch64__) || defined(_M_ARM64)
constexpr int kPortableMR = 4, kPortableNV = 4;
#else
constexpr int kPortableMR = 6, kPortableNV = 2;
#endif

void micro_portable(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc, int64_t csc,
                    int n, bool beta, const float* bias) {
  micro_rows<vf4, 4, kPortableMR, kPortableNV>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
void direct_portable(int m, const DirectArgs& g) { direct_rows<vf4, 4, 2>(m, g); }

#if VX_X86_DISPATCH
__attribute__((target("avx2,fma"))) void micro_avx2(int m, int64_t kc, const float* a, const float* b,
                                                    float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                    const float* bias) {
  micro_rows<vf8, 8, 6, 2>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
__attribute__((target("avx2,fma"))) void direct_avx2(int m, const DirectArgs& g) {
  direct_rows<vf8, 8, 2>(m, g);
}
__attribute__((target("avx512f"))) void micro_avx512(int m, int64_t kc, const float* a, const float* b,
                                                     float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                                     const float* bias) {
  micro_rows<vf16, 16, 6, 2>(m, kc, a, b, c, rsc, csc, n, beta, bias);
}
__attribute__((target("avx512f"))) void direct_avx512(int m, const DirectArgs& g) {
  direct_rows<vf16, 16, 1>(m, g);
}
#endif

struct Kernel {
  MicroFn fn;
  int mr, nr;
  const char* name;
  const char* isa;
  DirectFn direct;
  int direct_width;
};

const Kernel kPortable = {micro_portable, kPortableMR, 4 * kPortableNV,
#if VX_X86_DISPATCH
                          "sse2 6x8", "sse2", direct_portable, 8};
#else
                          kPortableMR == 4 ? "portable 4x16" : "portable 6x8", "portable", direct_portable, 8};
#endif
#if VX_X86_DISPATCH
const Kernel kAvx2 = {micro_avx2, 6, 16, "avx2+fma 6x16", "avx2", direct_avx2, 16};
const Kernel kAvx512 = {micro_avx512, 6, 32, "avx512f 6x32", "avx512f", direct_avx512, 16};
#endif

bool supported(const Kernel& k) {
#if VX_X86_DISPATCH
  __builtin_cpu_init();
  if (&k == &kAvx512) return __builtin_cpu_supports("avx512f");
  if (&k == &kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return &k == &kPortable;
}

const Kernel* auto_kernel() {
#if VX_X86_DISPATCH
  if (supported(kAvx512)) return &kAvx512;
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

namespace {

// The GEMM driver: B is packed here from (b, rsb, csb), or taken as is from bp when that is not null.
bool gemm_impl(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b,
               int64_t rsb, int64_t csb, const float* bp, float* c, int64_t rsc, int64_t csc, bool accumulate,
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
  float* pb = bp ? nullptr : scratch(kScratchPackB, kc_max * ((nc_max + nr - 1) / nr * nr));
  if (!pa || (!bp && !pb)) return false;

  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = std::min(kKC, k - pc);
      const bool first = pc == 0;
      // Panel jr of this block starts at bpanel + jr * bstride.
      const float* bpanel;
      int64_t bstride;
      if (bp) {
        bpanel = bp + jc * k + pc * nr;
        bstride = k;
      } else {
        pack_b(pb, b + pc * rsb + jc * csb, rsb, csb, kc, nc, nr);
        bpanel = pb;
        bstride = kc;
      }
      for (int64_t ic = 0; ic < m; ic += kMC) {
        const int64_t mc = std::min(kMC, m - ic);
        pack_a(pa, a + ic * rsa + pc * csa, rsa, csa, mc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int ncols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int nrows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
            float* ct = c + (ic + ir) * rsc + (jc + jr) * csc;
            kern.fn(nrows, kc, pa + ir * kc, bpanel + jr * bstride, ct, rsc, csc, ncols, accumulate || !first,
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
  return gemm_impl(m, n, k, a, rsa, csa, b, rsb, csb, nullptr, c, rsc, csc, accumulate, row_bias);
}

bool gemm_packed_b(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* bp,
                   float* c, int64_t rsc, int64_t csc, bool accumulate, const float* row_bias) {
  return gemm_impl(m, n, k, a, rsa, csa, nullptr, 0, 0, bp, c, rsc, csc, accumulate, row_bias);
}

int64_t packed_b_size(int64_t k, int64_t n) {
  const int64_t nr = gemm_nr();
  return k * ((n + nr - 1) / nr * nr);
}

int64_t col_stride(int64_t cols) {
  int64_t ld = (cols + 15) / 16 * 16;
  if (ld % 256 == 0) ld += 16;
  return ld;
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

bool im2col_tile(float* col, int64_t ldcol, const float* in, int64_t channels, const ColAxis ax[3],
                 int64_t p0, int64_t p1) {
  const int64_t id = ax[0].in, ih = ax[1].in, iw = ax[2].in;
  const int64_t sz = ax[0].step, sy = ax[1].step, sx = ax[2].step;
  const int64_t ny = ax[1].n, nx = ax[2].n;
  int64_t row = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const float* inc = in + c * id * ih * iw;
    for (int64_t u0 = 0; u0 < ax[0].ntaps; ++u0) {
      const int64_t oz = ax[0].off[u0];
      for (int64_t u1 = 0; u1 < ax[1].ntaps; ++u1) {
        const int64_t oy = ax[1].off[u1];
        for (int64_t u2 = 0; u2 < ax[2].ntaps; ++u2, ++row) {
          const int64_t ox = ax[2].off[u2];
          // Output x positions whose input x lies inside [0, iw).
          const int64_t xlo = std::max<int64_t>(0, ceil_div(-ox, sx));
          const int64_t xhi = std::max(xlo, ceil_div(iw - ox, sx));
          float* dst = col + row * ldcol;
          for_each_run(ny, nx, p0, p1, [&](int64_t tz, int64_t ty, int64_t tx0, int64_t len, int64_t j) {
            float* d = dst + j;
            const int64_t iz = tz * sz + oz, iy = ty * sy + oy;
            if (iz < 0 || iz >= id || iy < 0 || iy >= ih) {
              std::memset(d, 0, static_cast<size_t>(len) * sizeof(float));
              return;
            }
            const float* src = inc + (iz * ih + iy) * iw + ox;  // src[tx*sx] is input x = tx*sx + ox
            const int64_t tx1 = tx0 + len;
            const int64_t a = std::min(std::max(xlo, tx0), tx1);
            const int64_t e = std::max(std::min(xhi, tx1), a);
            for (int64_t t = tx0; t < a; ++t) d[t - tx0] = 0.0f;
            if (sx == 1) {
              if (e > a) std::memcpy(d + (a - tx0), src + a, static_cast<size_t>(e - a) * sizeof(float));
            } else {
              for (int64_t t = a; t < e; ++t) d[t - tx0] = src[t * sx];
            }
            for (int64_t t = e; t < tx1; ++t) d[t - tx0] = 0.0f;
          });
        }
      }
    }
  }
  return true;
}

bool im2col_packed(float* bp, const float* in, int64_t channels, const ColAxis ax[3], int64_t p0, int64_t p1) {
  const int64_t nr = gemm_nr();
  PanelRuns pr;
  if (!build_panel_runs(nr, ax, p0, p1, &pr)) return false;
  const int64_t sx = ax[2].step;
  const int64_t plane = ax[0].in * ax[1].in * ax[2].in;
  const int64_t rows = channels * ax[0].ntaps * ax[1].ntaps * ax[2].ntaps;
  const int64_t n0 = ax[0].ntaps, n1 = ax[1].ntaps, n2 = ax[2].ntaps, ntap = n0 * n1 * n2;
  const int64_t cstride = ntap * nr;  // from one channel's row to the next channel's, same taps
  for (int64_t q = 0; q < pr.panels; ++q) {
    float* dq = bp + q * nr * rows;  // row r of this panel at dq + r * nr, r = c * ntap + tap
    const Run* r0 = pr.runs + pr.first[q];
    const int nruns = static_cast<int>(pr.first[q + 1] - pr.first[q]);  // <= nr <= 32
    const bool whole = nruns == 1 && r0->len == nr && sx == 1;
    int64_t rowoff[32];
    for (int64_t u0 = 0; u0 < n0; ++u0) {
      for (int64_t u1 = 0; u1 < n1; ++u1) {
        const bool any = panel_row_offsets(rowoff, r0, nruns, ax, ax[0].off[u0], ax[1].off[u1]);
        for (int64_t u2 = 0; u2 < n2; ++u2) {
          float* d = dq + ((u0 * n1 + u1) * n2 + u2) * nr;
          if (!any) {
            for (int64_t c = 0; c < channels; ++c, d += cstride) std::memset(d, 0, size_t(nr) * sizeof(float));
            continue;
          }
          const int64_t ox = ax[2].off[u2], lo = pr.xlo[u2], hi = pr.xhi[u2];
          if (whole && rowoff[0] >= 0 && lo <= r0->tx0 && r0->tx0 + nr <= hi) {
            // The common case: a whole panel row inside the input; constant-size copies.
            const float* src = in + rowoff[0] + ox + r0->tx0;
            if (nr == 16) {
              for (int64_t c = 0; c < channels; ++c, d += cstride, src += plane)
                std::memcpy(d, src, 16 * sizeof(float));
            } else {
              for (int64_t c = 0; c < channels; ++c, d += cstride, src += plane)
                std::memcpy(d, src, size_t(nr) * sizeof(float));
            }
            continue;
          }
          for (int64_t c = 0; c < channels; ++c, d += cstride)
            fill_panel_row(d, nr, r0, nruns, rowoff, in + c * plane, ox, lo, hi, sx);
        }
      }
    }
  }
  return true;
}

bool conv_direct(int64_t m, const float* w, int64_t ldw, const float* bias, const float* in, int64_t channels,
                 const ColAxis ax[3], int64_t p0, int64_t p1, float* c, int64_t rsc) {
  const Kernel& kern = *current_kernel();
  for (int64_t m0 = 0; m0 < m; m0 += kDirectMaxRows) {
    DirectArgs g;
    if (!build_panel_runs(kern.direct_width, ax, p0, p1, &g.pr)) return false;
    g.w = w + m0 * ldw;
    g.ldw = ldw;
    g.bias = bias ? bias + m0 : nullptr;
    g.in = in;
    g.channels = channels;
    g.ax = ax;
    g.cols = p1 - p0;
    g.c = c + m0 * rsc;
    g.rsc = rsc;
    kern.direct(static_cast<int>(std::min<int64_t>(kDirectMaxRows, m - m0)), g);
  }
  return true;
}

// ------------------------------------------------------------------------------------------------------------
// Floats of column tile per thread (a compile-time knob for tuning). 1 MiB measured best on Zen 3 (512 KiB
// L2): bigger tiles amortize repacking the weights once per tile, which outweighs the tile falling out of L2.
#ifndef VX_COL_BUDGET
#define VX_COL_BUDGET (int64_t(1) << 18)
#endif

int64_t max_tile_positions(int64_t rows) {
  constexpr int64_t kColBudget = VX_COL_BUDGET;
  constexpr int64_t kMaxTile = 4096;
  const int64_t nr = gemm_nr();
  int64_t t = kColBudget / std::max<int64_t>(rows, 1);
  t = std::min(t, kMaxTile);
  if (t >= nr) return t - t % nr;
  return nr;
}

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
