// conv_engine: staged-input implicit GEMM, direct and dot-product kernels for conv3d / conv_transpose3d
// (see conv_engine.h for the problem description).
//
// Staging. The input is copied, a slab of z planes at a time (all of a small batch at once), into a buffer
// where each axis is zero-padded by the largest negative tap offset in front and extended to the largest
// index any tap reads, and where each x row is split into `step_x` phases (x' = x + pad: phase x' mod
// step, index x' / step). Rows are stored [z][y][channel][x], so that the rows every channel reads for one
// panel of positions lie together (a few contiguous streams instead of one per channel). Then input index
// t*step + off[u] of every axis sits at
//     stage + c*wrow + posoff(t) + tapoff(u),   posoff(t) = tz*sz*zs + ty*sy*ys + tx,
// tapoff(u) = (off0+lo0)*zs + (off1+lo1)*ys + ((off2+lo2) mod sx)*xq + (off2+lo2) div sx,
// so consecutive tx read consecutive floats for every tap and channel, padding and stride included: a
// column-tile row is a handful of vector copies, with no bounds checks. The copy costs one pass over the
// input (the im2col it replaces touches each input value about 27 times).
//
// Forward. Weights are packed once per call into the micro-kernel's MR-row panels (per class, rows in
// (channel, tap) order). Work items are (tile of grid positions, sample, class, block of output channels);
// an item walks its k dimension in blocks of kKC rows and, per block, builds one NR-position column panel
// at a time (kKC x NR floats, in L1; a panel whose vectors of positions are staged runs is read in place,
// by row pointers, instead) and runs the micro-kernel over all its output-channel panels. With at
// most kDirectRows output channels the direct kernel forms each panel row in registers instead. A stride-2
// transposed conv's x phases (classes q[2] = 0, 1, whose outputs alternate along x) run as one item into a
// tile that is stored interleaved, in contiguous runs. conv_transpose3d's backward stages dy once for
// both of its passes (StageReuseScope).
//
// Weight gradient. dw[co, r] = sum_p dy[co, p] * col[r, p] is a reduction over positions, the contiguous
// axis of both operands, so it runs as dot products: RA column rows (built into L1 from the staged input)
// against RB rows of dy, RA x RB vector accumulators summed horizontally per chunk of positions. Items
// are (block of column rows, block of output channels): each dw element is owned by one item and summed
// over chunks in position order, so the result is the same for any thread count.
#include "conv_engine.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "gemm.h"
#include "parallel.h"
#include "simd.h"

namespace vx {
namespace {

using simd::vf16;
using simd::vf4;
using simd::vf8;

constexpr int64_t kDefaultStageBudget = int64_t(1) << 22;  // floats staged at once (16 MiB)
int64_t g_stage_budget = kDefaultStageBudget;
constexpr int64_t kKC = 256;                         // k rows per column-panel block
constexpr int64_t kMaxTile = 2048;                   // grid positions per work item
constexpr int64_t kTileFloats = int64_t(1) << 16;    // bound on a strided class's C tile (mc x positions)
constexpr int kDirectRows = 4;                       // output channels up to which the direct kernel runs
constexpr int64_t kDirectTile = 512;                 // grid positions per direct-kernel work item
constexpr int64_t kFlatPositions = 256;              // below this many positions per sample, tiles span samples
constexpr int64_t kPosPad = 32;                      // position arrays padded to a multiple of this
constexpr int kRA = 3, kRB = 4;                      // dot-product block: column rows x dy rows
constexpr int64_t kChunkSplitMax = 1 << 14;          // dw elements up to which dW is split by position chunks

// --- Staging ------------------------------------------------------------------------------------------------

struct Stage {
  int64_t lo[3] = {0, 0, 0};    // staged index = input index + lo
  int64_t span[3] = {1, 1, 1};  // staged extent
  int64_t sx = 1, xq = 1, wrow = 1;  // x phases, phase length, row length (sx * xq)
  int64_t ys = 1, zs = 1;             // y stride (cin rows) and z stride (span[1] * ys)
  int64_t minoff0 = 0, maxoff0 = 0;  // z tap offsets over all classes
  int64_t grid0 = 0;                 // largest class grid along z
  bool reads = false;                // some class has taps and positions
};

bool class_reads(const EngineClass& c) {
  return c.n[0] * c.n[1] * c.n[2] > 0 && c.ntap[0] * c.ntap[1] * c.ntap[2] > 0;
}

Stage make_stage(const ConvProblem& p) {
  Stage s;
  int64_t mn[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, reach[3] = {1, 1, 1};
  s.maxoff0 = INT64_MIN;
  for (const EngineClass& c : p.classes) {
    s.grid0 = std::max(s.grid0, c.n[0]);
    if (!class_reads(c)) continue;
    s.reads = true;
    for (int a = 0; a < 3; ++a) {
      const int64_t* o = p.off[a].data() + c.first[a];
      int64_t lo = o[0], hi = o[0];
      for (int64_t u = 1; u < c.ntap[a]; ++u) lo = std::min(lo, o[u]), hi = std::max(hi, o[u]);
      mn[a] = std::min(mn[a], lo);
      reach[a] = std::max(reach[a], (c.n[a] - 1) * p.step[a] + hi + 1);
      if (a == 0) s.maxoff0 = std::max(s.maxoff0, hi);
    }
  }
  if (!s.reads) return s;
  for (int a = 0; a < 3; ++a) {
    s.lo[a] = std::max<int64_t>(0, -mn[a]);
    s.span[a] = s.lo[a] + reach[a];
  }
  s.minoff0 = mn[0];
  s.sx = p.step[2];
  s.xq = (s.span[2] + s.sx - 1) / s.sx;
  s.wrow = s.sx * s.xq;
  s.ys = p.cin * s.wrow;
  s.zs = s.span[1] * s.ys;
  return s;
}

// Batch samples [n0, n1) and grid z range [t0, t1) staged together; z planes [zbase, zbase + zcount) of
// the staged coordinates.
struct Group {
  int64_t n0, n1, t0, t1, zbase, zcount;
};

// Groups in order, each within g_stage_budget floats when possible (a single z plane of one sample may
// exceed it).
void plan_groups(const ConvProblem& p, const Stage& s, std::vector<Group>& out) {
  out.clear();
  const int64_t G = std::max<int64_t>(s.grid0, 1);
  const int64_t zspan = s.maxoff0 - s.minoff0 + 1;
  auto z_of = [&](int64_t t0, int64_t t1, Group& g) {
    g.zbase = t0 * p.step[0] + s.minoff0 + s.lo[0];
    const int64_t zend = std::min(s.span[0], (t1 - 1) * p.step[0] + s.maxoff0 + s.lo[0] + 1);
    g.zcount = std::max<int64_t>(zend - g.zbase, 1);
  };
  const int64_t per_plane = s.zs;
  const int64_t per_sample = per_plane * s.span[0];
  if (per_sample <= g_stage_budget) {
    const int64_t per_group = std::max<int64_t>(1, g_stage_budget / per_sample);
    for (int64_t n0 = 0; n0 < p.batch; n0 += per_group) {
      Group g{n0, std::min(p.batch, n0 + per_group), 0, G, 0, 0};
      z_of(0, G, g);
      out.push_back(g);
    }
    return;
  }
  const int64_t planes = std::max<int64_t>(1, g_stage_budget / per_plane);
  const int64_t T = std::max<int64_t>(1, (planes - zspan) / p.step[0] + 1);
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t t0 = 0; t0 < G; t0 += T) {
      Group g{n, n + 1, t0, std::min(G, t0 + T), 0, 0};
      z_of(g.t0, g.t1, g);
      out.push_back(g);
    }
}

inline void copy_floats(float* d, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    vf4 a, b;
    std::memcpy(&a, src + i, sizeof a);
    std::memcpy(&b, src + i + 4, sizeof b);
    std::memcpy(d + i, &a, sizeof a);
    std::memcpy(d + i + 4, &b, sizeof b);
  }
  if (i + 4 <= n) {
    vf4 a;
    std::memcpy(&a, src + i, sizeof a);
    std::memcpy(d + i, &a, sizeof a);
    i += 4;
  }
  for (; i < n; ++i) d[i] = src[i];
}

#if defined(__GNUC__)
// The lanes I0..I3 of the 8 lanes of (a, b).
template <int I0, int I1, int I2, int I3>
inline vf4 shuffle2(vf4 a, vf4 b) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, I0, I1, I2, I3);
#else
  typedef int vi4 __attribute__((vector_size(16)));
  return __builtin_shuffle(a, b, vi4{I0, I1, I2, I3});
#endif
}
#endif

// Stride-2 staging of one row: x' = x + lo, phase x' mod 2 at d[(x' mod 2)*xq + x' / 2]. Even inputs land
// in one phase and odd ones in the other, both at consecutive indices: one deinterleaving pass.
inline void deinterleave_row(float* d, const float* r, int64_t in, int64_t lo, int64_t xq) {
  float* de = d + (lo % 2) * xq;        // x = 2j lands at de[j + lo/2]
  float* dodd = d + ((lo + 1) % 2) * xq;  // x = 2j + 1 lands at dodd[j + (lo+1)/2]
  const int64_t e0 = lo / 2, o0 = (lo + 1) / 2;
  const int64_t ne = std::min((in + 1) / 2, xq - e0), no = std::min(in / 2, xq - o0);
  for (int64_t i = 0; i < e0; ++i) de[i] = 0.0f;
  for (int64_t i = 0; i < o0; ++i) dodd[i] = 0.0f;
  float* pe = de + e0;
  float* po = dodd + o0;
  int64_t j = 0;
#if defined(__GNUC__)
  for (; j + 4 <= ne && j + 4 <= no; j += 4) {
    vf4 a, b;
    std::memcpy(&a, r + 2 * j, sizeof a);
    std::memcpy(&b, r + 2 * j + 4, sizeof b);
    const vf4 ev = shuffle2<0, 2, 4, 6>(a, b), od = shuffle2<1, 3, 5, 7>(a, b);
    std::memcpy(pe + j, &ev, sizeof ev);
    std::memcpy(po + j, &od, sizeof od);
  }
#endif
  for (int64_t i = j; i < ne; ++i) pe[i] = r[2 * i];
  for (int64_t i = j; i < no; ++i) po[i] = r[2 * i + 1];
  for (int64_t i = e0 + std::max<int64_t>(ne, 0); i < xq; ++i) de[i] = 0.0f;
  for (int64_t i = o0 + std::max<int64_t>(no, 0); i < xq; ++i) dodd[i] = 0.0f;
}

// Stages group g of x into dst: [sample - n0, channel, zcount, span1, wrow].
void stage_group(float* dst, const float* x, const ConvProblem& p, const Stage& s, const Group& g) {
  const int64_t in0 = p.in[0], in1 = p.in[1], in2 = p.in[2];
  const int64_t rows = (g.n1 - g.n0) * g.zcount * s.span[1];  // (sample, z, y), each cin rows
  // Rows are independent: handed out dynamically, like the forward's items (parallel_dynamic).
  parallel_dynamic(rows, std::max<int64_t>(8, rows / (16 * num_threads())), [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t yy = it % s.span[1], zz = (it / s.span[1]) % g.zcount, sg = it / (s.span[1] * g.zcount);
      float* d = dst + it * s.ys;
      const int64_t z = g.zbase + zz - s.lo[0], y = yy - s.lo[1];
      if (z < 0 || z >= in0 || y < 0 || y >= in1) {
        std::memset(d, 0, size_t(s.ys) * sizeof(float));
        continue;
      }
      for (int64_t c = 0; c < p.cin; ++c, d += s.wrow) {
        const float* r = x + (((g.n0 + sg) * p.cin + c) * in0 + z) * in1 * in2 + y * in2;
        if (s.sx == 1) {
          // Rows are short (tens of floats): inline vector copies rather than library calls.
          const int64_t a = std::min(s.lo[2], s.wrow), e = std::max(a, std::min(s.wrow, s.lo[2] + in2));
          for (int64_t i = 0; i < a; ++i) d[i] = 0.0f;
          copy_floats(d + a, r, e - a);
          for (int64_t i = e; i < s.wrow; ++i) d[i] = 0.0f;
        } else if (s.sx == 2) {
          deinterleave_row(d, r, in2, s.lo[2], s.xq);
        } else {
          // Phase ph holds x = i*sx + ph - lo for i < xq: zero outside [0, in2), a strided copy inside.
          for (int64_t ph = 0; ph < s.sx; ++ph) {
            float* dp = d + ph * s.xq;
            const int64_t x0 = ph - s.lo[2];  // x of i = 0
            const int64_t ilo = std::min(s.xq, x0 >= 0 ? 0 : (-x0 + s.sx - 1) / s.sx);
            const int64_t ihi = std::max(ilo, std::min(s.xq, in2 - x0 <= 0 ? 0 : (in2 - x0 + s.sx - 1) / s.sx));
            for (int64_t i = 0; i < ilo; ++i) dp[i] = 0.0f;
            const float* rp = r + x0;
            if (s.sx == 2) {
              for (int64_t i = ilo; i < ihi; ++i) dp[i] = rp[2 * i];
            } else {
              for (int64_t i = ilo; i < ihi; ++i) dp[i] = rp[i * s.sx];
            }
            for (int64_t i = ihi; i < s.xq; ++i) dp[i] = 0.0f;
          }
        }
      }
    }
  });
}

// Tap offsets of class c in the staged layout, in (u0, u1, u2) order.
void class_tapoffs(int64_t* dst, const ConvProblem& p, const Stage& s, const EngineClass& c) {
  const int64_t* o0 = p.off[0].data() + c.first[0];
  const int64_t* o1 = p.off[1].data() + c.first[1];
  const int64_t* o2 = p.off[2].data() + c.first[2];
  for (int64_t u0 = 0; u0 < c.ntap[0]; ++u0)
    for (int64_t u1 = 0; u1 < c.ntap[1]; ++u1)
      for (int64_t u2 = 0; u2 < c.ntap[2]; ++u2) {
        const int64_t x = o2[u2] + s.lo[2];
        *dst++ = (o0[u0] + s.lo[0]) * s.zs + (o1[u1] + s.lo[1]) * s.ys + (x % s.sx) * s.xq + x / s.sx;
      }
}

// Staged offsets of grid positions [a, b) (slab-local flattened index over (t1 - t0, n1, n2)) into pos,
// padded with copies of the last one to a multiple of kPosPad; per 4-position group, whether it is one
// contiguous run (bit g of cont4[g / 32]).
// Calls fn(sg, a0, a1, j0) for the per-sample pieces of flattened (sample, position) range [f0, f1) of a
// group whose samples have `positions` positions each: sample sg's positions [a0, a1) at tile column j0.
template <class F>
inline void for_each_sample(int64_t positions, int64_t f0, int64_t f1, F&& fn) {
  for (int64_t sg = f0 / positions; sg * positions < f1; ++sg) {
    const int64_t a0 = std::max(f0, sg * positions) - sg * positions;
    const int64_t a1 = std::min(f1, (sg + 1) * positions) - sg * positions;
    fn(sg, a0, a1, sg * positions + a0 - f0);
  }
}

void position_offsets(int64_t* pos, uint32_t* cont4, const ConvProblem& p, const Stage& s, const Group& g,
                      const EngineClass& c, int64_t positions, int64_t ss, int64_t f0, int64_t f1) {
  const int64_t n1 = c.n[1], n2 = c.n[2];
  for_each_sample(positions, f0, f1, [&](int64_t sg, int64_t a, int64_t b, int64_t j0) {
    for_each_run(n1, n2, a, b, [&](int64_t tz, int64_t ty, int64_t tx0, int64_t len, int64_t j) {
      const int64_t base = sg * ss + ((g.t0 + tz) * p.step[0] - g.zbase) * s.zs + ty * p.step[1] * s.ys + tx0;
      for (int64_t t = 0; t < len; ++t) pos[j0 + j + t] = base + t;
    });
  });
  const int64_t n = f1 - f0, padded = (n + kPosPad - 1) / kPosPad * kPosPad;
  for (int64_t j = n; j < padded; ++j) pos[j] = pos[n - 1];
  for (int64_t w = 0; w < padded / 128 + 1; ++w) cont4[w] = 0;
  for (int64_t q = 0; q < padded / 4; ++q) {
    const int64_t* pq = pos + 4 * q;
    if (pq[1] == pq[0] + 1 && pq[2] == pq[0] + 2 && pq[3] == pq[0] + 3) cont4[q / 32] |= uint32_t(1) << (q % 32);
  }
}

// Output offsets (within one channel of one sample) of grid positions [a, b) of class c.
// Output offsets, from channel 0 of sample n0 of the group, of the same range.
void output_offsets(int64_t* opos, const ConvProblem& p, const Group& g, const EngineClass& c, int64_t positions,
                    int64_t f0, int64_t f1) {
  const int64_t sample = p.cout * p.out[0] * p.out[1] * p.out[2];
  for_each_sample(positions, f0, f1, [&](int64_t sg, int64_t a, int64_t b, int64_t j0) {
    for_each_run(c.n[1], c.n[2], a, b, [&](int64_t tz, int64_t ty, int64_t tx0, int64_t len, int64_t j) {
      const int64_t base = sg * sample +
                           ((c.q[0] + c.ostep[0] * (g.t0 + tz)) * p.out[1] + c.q[1] + c.ostep[1] * ty) * p.out[2] +
                           c.q[2] + c.ostep[2] * tx0;
      for (int64_t t = 0; t < len; ++t) opos[j0 + j + t] = base + t * c.ostep[2];
    });
  });
}

inline bool cont_bit(const uint32_t* cont4, int64_t q) { return (cont4[q / 32] >> (q % 32)) & 1; }

// --- Column panels --------------------------------------------------------------------------------------------

// Whether the nr positions pos[0 .. nr) are one run of consecutive staged offsets.
inline bool panel_whole(const int64_t* pos, const uint32_t* cont4, int64_t q4, int nr) {
  for (int g = 0; g < nr / 4; ++g)
    if (!cont_bit(cont4, q4 + g) || pos[4 * g] != pos[0] + 4 * g) return false;
  return true;
}

// Whether each vector of vl positions of the panel pos[0 .. nr) is one run (the runs may lie anywhere: a
// panel across rows of a narrow grid); then voff[j] = pos[j * vl] - pos[0].
inline bool panel_vectors(const int64_t* pos, const uint32_t* cont4, int64_t q4, int nr, int vl, int64_t* voff) {
  for (int j = 0; j < nr / vl; ++j) {
    const int64_t* pj = pos + j * vl;
    if (!panel_whole(pj, cont4, q4 + j * (vl / 4), vl)) return false;
    voff[j] = pj[0] - pos[0];
  }
  return true;
}

// kc rows (from row r0, rows in (channel, tap) order) of the column panel of NR positions pos[0 .. NR) into
// d[r * NR + j]: for the panels that cannot be read in place (panel_vectors), four positions at a time.
template <int NR>
void pack_panel(float* d, const float* stage, int64_t cs, const int64_t* tapoff, int64_t ntap, int64_t r0,
                int64_t kc, const int64_t* pos, const uint32_t* cont4, int64_t q4) {
  int64_t c = r0 / ntap, t = r0 - c * ntap;
  const float* sc = stage + c * cs;
  for (int64_t r = 0; r < kc; ++r, d += NR) {
    const float* src = sc + tapoff[t];
    for (int g = 0; g < NR / 4; ++g) {
      const int64_t* pg = pos + 4 * g;
      if (cont_bit(cont4, q4 + g)) {
        std::memcpy(d + 4 * g, src + pg[0], 4 * sizeof(float));
      } else {
        for (int l = 0; l < 4; ++l) d[4 * g + l] = src[pg[l]];
      }
    }
    if (++t == ntap) t = 0, sc += cs;
  }
}

using PackPanelFn = void (*)(float*, const float*, int64_t, const int64_t*, int64_t, int64_t, int64_t,
                             const int64_t*, const uint32_t*, int64_t);

PackPanelFn pack_panel_for(int nr) {
  switch (nr) {
    case 8: return pack_panel<8>;
    case 16: return pack_panel<16>;
    case 32: return pack_panel<32>;
    default: return nullptr;
  }
}

// --- Direct kernel (few output channels) -----------------------------------------------------------------------

struct DirectArgs {
  const float* stage;  // this sample's staged input
  int64_t cs;          // channel stride of the stage
  int64_t cin, ntap;
  const int64_t* tapoff;
  const float* a;  // MR-packed weights of this block: element (row kk, channel m) at a[kk*mr + m]
  int64_t mr;
  const float* bias;  // nullable, this block's
  const int64_t* pos;
  const uint32_t* cont4;
  int64_t npos;
  float* c;  // row m at c + m*ldc
  int64_t ldc;
  const int64_t* opos;  // null: position j of row m at c[m*ldc + j]; else at c[m*ldc + opos[j]]
  const float* slope;   // null, or PReLU slope of row m at slope[(m0 + m) % nslopes]
  int64_t m0, nslopes;
};

// M output channels over panels of W = VL * NV positions; each panel row (channel, tap) is loaded as NV
// vectors (or gathered where a vector's positions are not one run) and multiplied into M x NV accumulators.
template <class V, int VL, int NV, int M>
VX_ALWAYS_INLINE void direct_body(const DirectArgs& g) {
  constexpr int W = VL * NV;
  for (int64_t q = 0; q * W < g.npos; ++q) {
    const int64_t* pq = g.pos + q * W;
    // Fast path when each vector's VL positions are one run (the vectors themselves may lie anywhere:
    // a panel may span several rows of a narrow grid).
    bool all = true;
    int64_t vb[NV];
    VX_UNROLL for (int j = 0; j < NV; ++j) {
      vb[j] = pq[j * VL];
      for (int l = 0; l < VL / 4; ++l)
        all = all && cont_bit(g.cont4, q * (W / 4) + j * (VL / 4) + l) && pq[j * VL + 4 * l] == vb[j] + 4 * l;
    }
    V acc[M][NV];
    VX_UNROLL for (int m = 0; m < M; ++m) {
      VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] = V{};
    }
    const float* a = g.a;
    const float* sc = g.stage;
    if (all) {
      for (int64_t c = 0; c < g.cin; ++c, sc += g.cs) {
        for (int64_t t = 0; t < g.ntap; ++t, a += g.mr) {
          const float* src = sc + g.tapoff[t];
          V v[NV];
          VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&v[j], src + vb[j], sizeof(V));
          VX_UNROLL for (int m = 0; m < M; ++m) {
            const float wm = a[m];
            VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] += v[j] * wm;
          }
        }
      }
    } else {
      for (int64_t c = 0; c < g.cin; ++c, sc += g.cs) {
        for (int64_t t = 0; t < g.ntap; ++t, a += g.mr) {
          const float* src = sc + g.tapoff[t];
          float tmp[W];
          for (int j = 0; j < W; ++j) tmp[j] = src[pq[j]];
          V v[NV];
          VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(&v[j], tmp + j * VL, sizeof(V));
          VX_UNROLL for (int m = 0; m < M; ++m) {
            const float wm = a[m];
            VX_UNROLL for (int j = 0; j < NV; ++j) acc[m][j] += v[j] * wm;
          }
        }
      }
    }
    const int64_t used = std::min<int64_t>(W, g.npos - q * W);
    VX_UNROLL for (int m = 0; m < M; ++m) {
      float* cm = g.c + m * g.ldc + q * W;
      const float bm = g.bias ? g.bias[m] : 0.0f;
      V v[NV];
      VX_UNROLL for (int j = 0; j < NV; ++j) v[j] = acc[m][j] + bm;
      if (g.slope) {
        const float a = g.slope[(g.m0 + m) % g.nslopes];
        VX_UNROLL for (int j = 0; j < NV; ++j) v[j] = v[j] < V{} ? v[j] * a : v[j];
      }
      if (g.opos) {
        float t[W];
        VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(t + j * VL, &v[j], sizeof(V));
        const int64_t* oq = g.opos + q * W;
        float* cr = g.c + m * g.ldc;
        for (int64_t j = 0; j < used; ++j) cr[oq[j]] = t[j];
      } else if (used == W) {
        VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(cm + j * VL, &v[j], sizeof(V));
      } else {
        float t[W];
        VX_UNROLL for (int j = 0; j < NV; ++j) std::memcpy(t + j * VL, &v[j], sizeof(V));
        for (int64_t j = 0; j < used; ++j) cm[j] = t[j];
      }
    }
  }
}

// One or two channels: twice the panel width (more loads in flight per weight broadcast).
template <class V, int VL, int NV>
VX_ALWAYS_INLINE void direct_rows(int m, const DirectArgs& g) {
  switch (m) {
    case 1: direct_body<V, VL, 2 * NV, 1>(g); break;
    case 2: direct_body<V, VL, 2 * NV, 2>(g); break;
    case 3: direct_body<V, VL, NV, 3>(g); break;
    case 4: direct_body<V, VL, NV, 4>(g); break;
    default: break;
  }
}

// --- Dot-product kernel (weight gradient) -------------------------------------------------------------------

// The lanes of v summed by the fixed halving tree: t[l] += t[l + w] for l < w, w = VL/2, ..., 1, result t[0].
// With vector extensions each step is one vector add of v's low and high halves (the same IEEE additions in
// the same order as the scalar tree, so the same bits, in a few instructions instead of VL - 1 scalar adds
// and shuffles: the reduction dominated the weight gradient of layers with few positions).
#if defined(__GNUC__)
template <class V, int VL>
VX_ALWAYS_INLINE float halving_sum(const V& v) {
  if constexpr (VL == 16) {
    const vf8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    const vf8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    return halving_sum<vf8, 8>(lo + hi);
  } else if constexpr (VL == 8) {
    const vf4 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3), hi = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    return halving_sum<vf4, 4>(lo + hi);
  } else {
    static_assert(VL == 4, "halving_sum: 4, 8 or 16 lanes");
    const float a = v[0] + v[2], b = v[1] + v[3];
    return a + b;
  }
}
#else
template <class V, int VL>
VX_ALWAYS_INLINE float halving_sum(const V& v) {
  float t[VL];
  std::memcpy(t, &v, sizeof(V));
  for (int w = VL / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  return t[0];
}
#endif

// out[rb*ldo + ra] += sum_i a[ra*lda + i] * b[rb*ldb + i] for i < len (a multiple of VL), ra < RA, rb < RB;
// lanes summed by a fixed halving tree.
template <class V, int VL, int RA, int RB>
VX_ALWAYS_INLINE void dot_body(int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb, double* out,
                               int64_t ldo) {
  V acc[RA][RB];
  VX_UNROLL for (int i = 0; i < RA; ++i) {
    VX_UNROLL for (int j = 0; j < RB; ++j) acc[i][j] = V{};
  }
  for (int64_t i = 0; i < len; i += VL) {
    V av[RA];
    VX_UNROLL for (int r = 0; r < RA; ++r) std::memcpy(&av[r], a + r * lda + i, sizeof(V));
    VX_UNROLL for (int j = 0; j < RB; ++j) {
      V bv;
      std::memcpy(&bv, b + j * ldb + i, sizeof(V));
      VX_UNROLL for (int r = 0; r < RA; ++r) acc[r][j] += av[r] * bv;
    }
  }
  VX_UNROLL for (int r = 0; r < RA; ++r) {
    VX_UNROLL for (int j = 0; j < RB; ++j) out[j * ldo + r] += halving_sum<V, VL>(acc[r][j]);
  }
}

template <class V, int VL>
VX_ALWAYS_INLINE void dot_rows(int ra, int rb, int64_t len, const float* a, int64_t lda, const float* b,
                               int64_t ldb, double* out, int64_t ldo) {
#define VX_DOT(RA_, RB_) \
  if (ra == RA_ && rb == RB_) return dot_body<V, VL, RA_, RB_>(len, a, lda, b, ldb, out, ldo)
  VX_DOT(3, 4);
  VX_DOT(3, 3);
  VX_DOT(3, 2);
  VX_DOT(3, 1);
  VX_DOT(2, 4);
  VX_DOT(2, 3);
  VX_DOT(2, 2);
  VX_DOT(2, 1);
  VX_DOT(1, 4);
  VX_DOT(1, 3);
  VX_DOT(1, 2);
  VX_DOT(1, 1);
#undef VX_DOT
}

using DirectFn = void (*)(int m, const DirectArgs& g);
using DotFn = void (*)(int ra, int rb, int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb,
                       double* out, int64_t ldo);

void direct_portable(int m, const DirectArgs& g) { direct_rows<vf4, 4, 2>(m, g); }
void dot_portable(int ra, int rb, int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb,
                  double* out, int64_t ldo) {
  dot_rows<vf4, 4>(ra, rb, len, a, lda, b, ldb, out, ldo);
}
#if VX_X86_DISPATCH
__attribute__((target("avx2,fma"))) void direct_avx2(int m, const DirectArgs& g) { direct_rows<vf8, 8, 2>(m, g); }
__attribute__((target("avx2,fma"))) void dot_avx2(int ra, int rb, int64_t len, const float* a, int64_t lda,
                                                  const float* b, int64_t ldb, double* out, int64_t ldo) {
  dot_rows<vf8, 8>(ra, rb, len, a, lda, b, ldb, out, ldo);
}
__attribute__((target("avx512f"))) void direct_avx512(int m, const DirectArgs& g) {
  direct_rows<vf16, 16, 1>(m, g);
}
__attribute__((target("avx512f"))) void dot_avx512(int ra, int rb, int64_t len, const float* a, int64_t lda,
                                                   const float* b, int64_t ldb, double* out, int64_t ldo) {
  dot_rows<vf16, 16>(ra, rb, len, a, lda, b, ldb, out, ldo);
}
#endif

// The kernels of the ISA gemm has selected (gemm_select_kernel switches both).
struct EngineKernels {
  DirectFn direct;
  DotFn dot;
  int vl;  // dot-product vector length (chunks are padded to a multiple)
};

EngineKernels engine_kernels() {
#if VX_X86_DISPATCH
  const char* isa = gemm_kernel_isa();
  if (std::strcmp(isa, "avx512f") == 0) return {direct_avx512, dot_avx512, 16};
  if (std::strcmp(isa, "avx2") == 0) return {direct_avx2, dot_avx2, 8};
#endif
  return {direct_portable, dot_portable, 4};
}

// --- Weights ------------------------------------------------------------------------------------------------

Status oom(const char* op, const char* what) {
  return fail(Status::OutOfMemory, "%s: out of memory for %s", op, what);
}

// A float buffer that grows to the largest request and is kept (64-byte aligned).
struct GrowBuffer {
  void* raw = nullptr;
  float* p = nullptr;
  int64_t cap = 0;
  ~GrowBuffer() { std::free(raw); }
  float* get(int64_t n) {
    if (n <= cap) return p;
    void* r = std::malloc(size_t(n) * sizeof(float) + 64);
    if (!r) return nullptr;
    std::free(raw);
    raw = r;
    p = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(r) + 63) & ~uintptr_t(63));
    cap = n;
    return p;
  }
};

// Per-call state: tables, the staged input and the packed weights. One process-wide copy, held under
// `mu` for a whole engine call (steady state allocates nothing). Per-thread copies would multiply the
// largest buffers by the number of threads that ever call in (Node's libuv pool has four), and the
// thread pool runs one parallel region at a time anyway. Workers reach it through pointers.
struct CallState {
  std::mutex mu;
  std::vector<Group> groups;
  std::vector<int64_t> tapoff, tapbase, abase, kidx;
  std::vector<float> bias_eff;  // forward with an epilogue: b * scale + shift
  std::vector<double> part;
  std::vector<double> chunk_part;  // weight gradient split by chunks: one partial dw per chunk
  std::vector<std::pair<int64_t, int64_t>> lpt_cost;  // forward, few items: (cost, item), by cost
  std::vector<int64_t> lpt_items;                     // and the items in that order
  GrowBuffer stage, weights;
  // What `stage` holds (see StageReuseScope): the input and geometry it was staged from, and the reuse
  // scope it was staged in (0: none, never reused).
  const float* staged_x = nullptr;
  int64_t staged_epoch = 0;
  std::array<int64_t, 19> staged_key{};
};

thread_local int64_t t_reuse_epoch = 0;  // the calling thread's StageReuseScope (0: none)
std::atomic<int64_t> g_reuse_epochs{0};
std::atomic<int64_t> g_staged{0}, g_reused{0};

// Everything stage_group's result depends on besides the values of x.
std::array<int64_t, 19> stage_key(const ConvProblem& p, const Stage& s, const Group& g) {
  return {p.in[0], p.in[1], p.in[2], p.cin,  s.lo[0], s.lo[1], s.lo[2], s.span[0], s.span[1], s.span[2],
          s.sx,    s.xq,    s.wrow,  s.ys,   s.zs,    g.n0,    g.n1,    g.zbase,   g.zcount};
}

// Stages group g of x into ct.stage's buffer `stage`, or, with `reusable` (a weight gradient's single
// group), reuses what is there when it was staged from the same x and geometry in the calling thread's
// StageReuseScope. Records what the buffer then holds.
void stage_or_reuse(CallState& ct, float* stage, const float* x, const ConvProblem& p, const Stage& s,
                    const Group& g, bool reusable) {
  const bool one = ct.groups.size() == 1;
  const std::array<int64_t, 19> key = stage_key(p, s, g);
  if (reusable && one && t_reuse_epoch != 0 && ct.staged_epoch == t_reuse_epoch && ct.staged_x == x &&
      ct.staged_key == key) {
    g_reused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  stage_group(stage, x, p, s, g);
  g_staged.fetch_add(1, std::memory_order_relaxed);
  ct.staged_x = x;
  ct.staged_key = key;
  ct.staged_epoch = one ? t_reuse_epoch : 0;
}
CallState& call_state() {
  static CallState t;
  return t;
}

// Per-thread position arrays.
struct ThreadPositions {
  std::vector<int64_t> pos;
  std::vector<uint32_t> cont4;
  std::vector<int64_t> opos;  // strided classes: output offset (within a channel) of each position
  int64_t key[7] = {-1, -1, -1, -1, -1, -1, -1};  // what pos/cont4 now hold (see conv_engine_forward)
  std::vector<int64_t> runs;  // weight gradient: (column j, staged offset, length) per run of a chunk
  bool reserve(int64_t n) {
    const int64_t padded = (n + kPosPad - 1) / kPosPad * kPosPad;
    try {
      if (int64_t(pos.size()) < padded) pos.resize(size_t(padded));
      if (int64_t(cont4.size()) < padded / 128 + 1) cont4.resize(size_t(padded / 128 + 1));
      if (int64_t(runs.size()) < 3 * padded) runs.resize(size_t(3 * padded));
      if (int64_t(opos.size()) < padded) opos.resize(size_t(padded));
    } catch (const std::bad_alloc&) {
      return false;
    }
    return true;
  }
};
ThreadPositions& thread_positions() {
  thread_local ThreadPositions t;
  return t;
}

// Whether the problem's classes come in x-phase pairs: classes 2i and 2i + 1 differ only in q[2] (0 and
// 1) and their taps, with output step 2 along x and equal grids, so that class 2i + 1's output at each
// position is the one right after class 2i's (a stride-2 transposed conv along x).
bool paired_x(const ConvProblem& p) {
  const size_t n = p.classes.size();
  if (n < 2 || n % 2 != 0) return false;
  for (size_t k = 0; k < n; k += 2) {
    const EngineClass& a = p.classes[k];
    const EngineClass& b = p.classes[k + 1];
    if (a.ostep[2] != 2 || b.ostep[2] != 2 || a.q[2] != 0 || b.q[2] != 1 || !class_reads(a) || !class_reads(b))
      return false;
    for (int ax = 0; ax < 3; ++ax)
      if (a.n[ax] != b.n[ax] || (ax < 2 && (a.q[ax] != b.q[ax] || a.ostep[ax] != b.ostep[ax]))) return false;
  }
  return true;
}

// dst[opos[j]] = ev[j], dst[opos[j] + 1] = od[j] for j < n (PReLU with slope a when act): wherever 4
// positions are one run (opos steps of 2), one interleaving of two vectors into 8 contiguous floats.
void store_pair(float* dst, const int64_t* opos, const float* ev, const float* od, int64_t n, bool act, float a) {
  int64_t j = 0;
#if defined(__GNUC__)
  const vf4 zero{}, av{a, a, a, a};
  for (; j + 4 <= n; j += 4) {
    if (opos[j + 3] != opos[j] + 6) {
      for (int l = 0; l < 4; ++l) {
        const float e = ev[j + l], o = od[j + l];
        dst[opos[j + l]] = act && e < 0.0f ? e * a : e;
        dst[opos[j + l] + 1] = act && o < 0.0f ? o * a : o;
      }
      continue;
    }
    vf4 e, o;
    std::memcpy(&e, ev + j, sizeof e);
    std::memcpy(&o, od + j, sizeof o);
    if (act) {
      e = e < zero ? e * av : e;
      o = o < zero ? o * av : o;
    }
    const vf4 lo = shuffle2<0, 4, 1, 5>(e, o), hi = shuffle2<2, 6, 3, 7>(e, o);
    std::memcpy(dst + opos[j], &lo, sizeof lo);
    std::memcpy(dst + opos[j] + 4, &hi, sizeof hi);
  }
#endif
  for (; j < n; ++j) {
    const float e = ev[j], o = od[j];
    dst[opos[j]] = act && e < 0.0f ? e * a : e;
    dst[opos[j] + 1] = act && o < 0.0f ? o * a : o;
  }
}

}  // namespace

StageReuseScope::StageReuseScope() { t_reuse_epoch = ++g_reuse_epochs; }
StageReuseScope::~StageReuseScope() { t_reuse_epoch = 0; }

ConvEngineCounts conv_engine_counts() {
  ConvEngineCounts c;
  c.staged = g_staged.load(std::memory_order_relaxed);
  c.reused = g_reused.load(std::memory_order_relaxed);
  return c;
}

int64_t conv_engine_stage_budget(int64_t floats) {
  const int64_t old = g_stage_budget;
  g_stage_budget = floats > 0 ? floats : kDefaultStageBudget;
  return old;
}

Status conv_engine_forward(const char* op, float* y, const float* x, const float* w, const float* b,
                           const ConvProblem& p, const ConvEpilogue* ep) {
  const Stage s = make_stage(p);
  const int64_t ncls = int64_t(p.classes.size());
  const int64_t cout = p.cout, cin = p.cin;
  const int64_t Pout = p.out[0] * p.out[1] * p.out[2];
  const int mr = gemm_mr(), nr = gemm_nr();
  const GemmMicroFn micro = gemm_micro_kernel();
  const GemmMicroRowsFn micro_rows = gemm_micro_rows_kernel();
  const int vl = gemm_vl();
  const PackPanelFn pack = pack_panel_for(nr);
  const EngineKernels ek = engine_kernels();
  if (!pack || mr > 8 || nr / vl > 8) return fail(Status::Internal, "%s: no packer for MR=%d, NR=%d", op, mr, nr);
  const bool unit = ncls == 1 && p.classes[0].ostep[0] == 1 && p.classes[0].ostep[1] == 1 &&
                    p.classes[0].ostep[2] == 1 && p.classes[0].n[0] == p.out[0] && p.classes[0].n[1] == p.out[1] &&
                    p.classes[0].n[2] == p.out[2];

  CallState& ct = call_state();
  std::lock_guard<std::mutex> hold(ct.mu);
  const int64_t co_pad = (cout + mr - 1) / mr * mr;
  try {
    ct.tapbase.assign(size_t(ncls) + 1, 0);
    ct.abase.assign(size_t(ncls) + 1, 0);
    for (int64_t k = 0; k < ncls; ++k) {
      const EngineClass& c = p.classes[size_t(k)];
      const int64_t nt = c.ntap[0] * c.ntap[1] * c.ntap[2];
      ct.tapbase[size_t(k) + 1] = ct.tapbase[size_t(k)] + nt;
      ct.abase[size_t(k) + 1] = ct.abase[size_t(k)] + co_pad * cin * nt;
    }
    ct.tapoff.assign(size_t(std::max<int64_t>(ct.tapbase[size_t(ncls)], 1)), 0);
    if (s.reads) plan_groups(p, s, ct.groups);
  } catch (const std::bad_alloc&) {
    return oom(op, "tables");
  }
  if (s.reads)
    for (int64_t k = 0; k < ncls; ++k)
      if (class_reads(p.classes[size_t(k)])) class_tapoffs(ct.tapoff.data() + ct.tapbase[size_t(k)], p, s, p.classes[size_t(k)]);
  const int64_t* tapoff = ct.tapoff.data();
  const int64_t* tapbase = ct.tapbase.data();
  const int64_t* abase = ct.abase.data();

  // Weights, per class, into MR-row panels over k = (channel, tap): panel i at A + i*mr*K. Kernel offsets
  // of the class's taps first (kidx), so the copy is a table lookup per element.
  // Packed weights: the caller's cache when it holds these very weights (inference), else packed below,
  // into the cache when there is one.
  const float* escale = ep ? ep->scale : nullptr;
  ConvPackCache* cache = ep ? ep->cache : nullptr;
  const int64_t afloats = std::max<int64_t>(abase[size_t(ncls)], 1);
  bool packed = false;
  float* apack = nullptr;
  if (cache) {
    packed = cache->valid && cache->w == w && cache->gen == ep->weights_gen && cache->mr == mr &&
             cache->floats == afloats && (escale ? cache->scale.size() == size_t(cout) &&
                                                       std::equal(escale, escale + cout, cache->scale.begin())
                                                 : cache->scale.empty());
    if (!packed) {
      cache->valid = false;
      try {
        if (cache->data.size() < size_t(afloats + 16)) cache->data.assign(size_t(afloats + 16), 0.0f);
        if (escale)
          cache->scale.assign(escale, escale + cout);
        else
          cache->scale.clear();
      } catch (const std::bad_alloc&) {
        return oom(op, "packed weights");
      }
    }
    apack = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(cache->data.data()) + 63) & ~uintptr_t(63));
  } else {
    apack = ct.weights.get(afloats);
  }
  if (!apack) return oom(op, "packed weights");
  try {
    ct.kidx.resize(size_t(std::max<int64_t>(tapbase[size_t(ncls)], 1)));
  } catch (const std::bad_alloc&) {
    return oom(op, "tables");
  }
  for (int64_t k = 0; k < ncls && !packed; ++k) {  // only the packing below reads kidx
    const EngineClass& c = p.classes[size_t(k)];
    int64_t* d = ct.kidx.data() + tapbase[size_t(k)];
    for (int64_t u0 = 0; u0 < c.ntap[0]; ++u0)
      for (int64_t u1 = 0; u1 < c.ntap[1]; ++u1)
        for (int64_t u2 = 0; u2 < c.ntap[2]; ++u2)
          *d++ = (p.ktap[0][size_t(c.first[0] + u0)] * p.k[1] + p.ktap[1][size_t(c.first[1] + u1)]) * p.k[2] +
                 p.ktap[2][size_t(c.first[2] + u2)];
  }
  const int64_t* kidx = ct.kidx.data();
  // Epilogue: scale into the weights (below), shift into the bias; the PReLU where outputs are stored.
  const float* slope = ep ? ep->slope : nullptr;
  const int64_t nslopes = ep && ep->slope ? std::max<int64_t>(ep->num_slopes, 1) : 1;
  if (ep && (ep->scale || ep->shift)) {
    try {
      ct.bias_eff.resize(size_t(cout));
    } catch (const std::bad_alloc&) {
      return oom(op, "tables");
    }
    for (int64_t co = 0; co < cout; ++co)
      ct.bias_eff[size_t(co)] =
          (b ? b[co] : 0.0f) * (ep->scale ? ep->scale[co] : 1.0f) + (ep->shift ? ep->shift[co] : 0.0f);
    b = ct.bias_eff.data();
  }
  auto act = [slope, nslopes](float v, int64_t co) { return slope && v < 0.0f ? v * slope[co % nslopes] : v; };
  const int64_t npanels = co_pad / mr, kvol = p.k[0] * p.k[1] * p.k[2];
  if (!packed) parallel_for(ncls * npanels, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t k = it / npanels, pi = it % npanels;
      const EngineClass& c = p.classes[size_t(k)];
      const int64_t nt = c.ntap[0] * c.ntap[1] * c.ntap[2], K = cin * nt;
      const int64_t* ki = kidx + tapbase[size_t(k)];
      const int rows = int(std::min<int64_t>(mr, cout - pi * mr));
      float* d = apack + abase[size_t(k)] + pi * mr * K;
      for (int64_t ci = 0; ci < cin; ++ci) {
        // Row i of the panel (output channel pi*mr + i) for input channel ci: w at src[i] + kernel offset.
        const float* src[8];
        float sc[8];
        for (int i = 0; i < rows; ++i) {
          const int64_t co = pi * mr + i;
          src[i] = w + (p.transposed_weight ? ci * cout + co : co * cin + ci) * kvol;
          sc[i] = escale ? escale[co] : 1.0f;
        }
        for (int64_t t = 0; t < nt; ++t, d += mr) {
          int i = 0;
          if (escale) {
            for (; i < rows; ++i) d[i] = src[i][ki[t]] * sc[i];
          } else {
            for (; i < rows; ++i) d[i] = src[i][ki[t]];
          }
          for (; i < mr; ++i) d[i] = 0.0f;
        }
      }
    }
  });
  if (cache && !packed) {
    cache->w = w, cache->gen = ep->weights_gen, cache->mr = mr, cache->floats = afloats;
    cache->valid = true;
  }

  // Classes without taps or positions: the bias alone (no staging needed).
  for (int64_t k = 0; k < ncls; ++k) {
    const EngineClass& c = p.classes[size_t(k)];
    if (class_reads(c) || c.n[0] * c.n[1] * c.n[2] == 0) continue;
    parallel_for(p.batch * cout, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t it = lo; it < hi; ++it) {
        const float v = act(b ? b[it % cout] : 0.0f, it % cout);
        float* yc = y + it * Pout;
        for (int64_t tz = 0; tz < c.n[0]; ++tz)
          for (int64_t ty = 0; ty < c.n[1]; ++ty)
            for (int64_t tx = 0; tx < c.n[2]; ++tx)
              yc[((c.q[0] + c.ostep[0] * tz) * p.out[1] + c.q[1] + c.ostep[1] * ty) * p.out[2] + c.q[2] +
                 c.ostep[2] * tx] = v;
      }
    });
  }
  if (!s.reads) return Status::Ok;

  int64_t stage_max = 0;
  for (const Group& g : ct.groups) stage_max = std::max(stage_max, (g.n1 - g.n0) * g.zcount * s.zs);
  float* stage = ct.stage.get(std::max<int64_t>(stage_max, 1));
  if (!stage) return oom(op, "the staged input");

  // Paired x phases: a stride-2 transposed conv's classes come in pairs (q[2] = 0, 1) over the same grid,
  // whose outputs alternate along x. An item then runs both classes of a pair into one tile and stores
  // them interleaved: contiguous runs of output instead of two stride-2 scatters over the same lines.
  // (Not for the direct kernel's few channels: it stores through opos itself, as fast as a pair's detour
  // through a tile.)
  const int64_t pw = paired_x(p) && cout > kDirectRows ? 2 : 1;
  const int64_t units = ncls / pw;  // work units: classes, or pairs of classes
  // The direct kernel streams every channel's rows for each panel: smaller tiles keep a tile's input rows
  // in L2 while the items of its classes (consecutive on a thread) reuse them.
  const int64_t tile_cap = cout <= kDirectRows ? kDirectTile : unit ? kMaxTile : kTileFloats / (pw * cout);
  const int64_t max_tile = std::max<int64_t>(4 * nr, std::min(kMaxTile, tile_cap)) / nr * nr;
  static std::atomic<int64_t> calls{0};
  const int64_t call_id = ++calls;  // keys the per-thread position cache to this call
  std::atomic<bool> failed{false};
  for (const Group& g : ct.groups) {
    stage_or_reuse(ct, stage, x, p, s, g, false);
    const int64_t cs = s.wrow, ss = g.zcount * s.zs, gs = g.n1 - g.n0;  // channel, sample strides
    auto class_positions = [&](const EngineClass& c) {
      return std::max<int64_t>(0, std::min(g.t1, c.n[0]) - g.t0) * c.n[1] * c.n[2];
    };
    int64_t pmax = 0;
    for (const EngineClass& c : p.classes)
      if (class_reads(c)) pmax = std::max(pmax, class_positions(c));
    // Few positions per sample (deep layers): tiles run over the group's (sample, position) pairs, so that
    // a panel holds several samples' positions instead of mostly padding.
    const bool flat = gs > 1 && pmax < kFlatPositions;
    const int64_t louter = flat ? 1 : gs;  // tiles per class are cut over gs * positions when flat
    const TilePlan plan = plan_tiles(louter * units, flat ? gs * pmax : pmax, max_tile, cout);
    const int64_t items = plan.tiles * louter * units * plan.co_blocks;
    // Item `it`: class k (the first of its pair when paired), its positions [f0, f1) (flattened over the
    // group's samples), channels [c0, c1). False when the item is empty.
    auto decode = [&](int64_t it, int64_t& k, int64_t& f0, int64_t& f1, int64_t& c0, int64_t& c1) {
      int64_t r = it;
      const int64_t cb = r % plan.co_blocks;
      r /= plan.co_blocks;
      k = (r % units) * pw;
      r /= units;
      const int64_t sg = r % louter, tile = r / louter;
      const EngineClass& c = p.classes[size_t(k)];
      if (!class_reads(c)) return false;
      const int64_t cp = class_positions(c);
      tile_range(flat ? gs * cp : cp, plan.tiles, tile, &f0, &f1);
      if (!flat) f0 += sg * cp, f1 += sg * cp;  // flattened (sample, position) range
      co_range(cout, plan.co_blocks, cb, &c0, &c1);
      return f1 > f0 && c1 > c0;
    };
    // Items go to whichever thread is free (parallel_dynamic), in runs of a few consecutive items (which
    // share a tile's positions). Few items (deep layers; a transposed conv's classes have 1 to 8 taps
    // each) are unequal: they are handed out one at a time, largest first (greedy longest-processing-
    // time). Which thread computes an item never changes its result.
    const int64_t T = num_threads();
    const bool sorted = T > 1 && items < 16 * T;
    if (sorted) {
      try {
        std::vector<std::pair<int64_t, int64_t>>& cost = ct.lpt_cost;  // (cost, item)
        cost.clear();
        for (int64_t it = 0; it < items; ++it) {
          int64_t k, f0, f1, c0, c1;
          if (!decode(it, k, f0, f1, c0, c1)) continue;
          int64_t taps = 0;
          for (int64_t e = k; e < k + pw; ++e) {
            const EngineClass& c = p.classes[size_t(e)];
            taps += c.ntap[0] * c.ntap[1] * c.ntap[2];
          }
          cost.push_back({(f1 - f0) * (c1 - c0) * taps, it});
        }
        std::stable_sort(cost.begin(), cost.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        ct.lpt_items.resize(cost.size());
        for (size_t i = 0; i < cost.size(); ++i) ct.lpt_items[i] = cost[i].second;
      } catch (const std::bad_alloc&) {
        return oom(op, "tables");
      }
    }
    const int64_t nq = sorted ? int64_t(ct.lpt_items.size()) : items;
    const int64_t grab = sorted ? 1 : std::max<int64_t>(1, items / (32 * T));  // ~32 runs a thread: imbalance <= 1/32
    parallel_dynamic(nq, grab, [&](int64_t qb, int64_t qe) {
      ThreadPositions& tp = thread_positions();
      if (!tp.reserve(max_tile + kPosPad)) {
        failed = true;
        return;
      }
      for (int64_t q = qb; q < qe; ++q) {
        const int64_t it = sorted ? ct.lpt_items[size_t(q)] : q;
        int64_t k, f0, f1, c0, c1;
        if (!decode(it, k, f0, f1, c0, c1)) continue;
        const EngineClass& c = p.classes[size_t(k)];
        const int64_t cp = class_positions(c);
        const int64_t pt = f1 - f0, mc = c1 - c0;
        // Classes of a transposed conv share the staged offsets of equal grids: consecutive items of one
        // tile (and the two classes of a pair) skip recomputing them.
        const int64_t key[7] = {call_id, g.n0, g.t0, c.n[1], c.n[2], f0, f1};
        if (!std::equal(key, key + 7, tp.key)) {
          position_offsets(tp.pos.data(), tp.cont4.data(), p, s, g, c, cp, ss, f0, f1);
          std::copy(key, key + 7, tp.key);
        }
        const bool direct = mc <= kDirectRows;
        // Runs class e's channels [c0, c1) over the item's positions into cdst (row stride ldc; through
        // opos when given): the direct kernel (PReLU applied) or the column panels and micro-kernel (not).
        auto run_class = [&](int64_t e, float* cdst, int64_t ldc, const int64_t* opos) {
          const EngineClass& ce = p.classes[size_t(e)];
          const int64_t nt = ce.ntap[0] * ce.ntap[1] * ce.ntap[2], K = cin * nt;
          const int64_t* toff = tapoff + tapbase[size_t(e)];
          const float* A = apack + abase[size_t(e)] + c0 * K;
          if (direct) {
            DirectArgs da{stage, cs,   cin, nt,  toff, A,    mr,    b ? b + c0 : nullptr, tp.pos.data(), tp.cont4.data(),
                          pt,    cdst, ldc, opos, slope, c0, nslopes};
            ek.direct(int(mc), da);
            return true;
          }
          float* pb = scratch(kScratchPackB, kKC * nr);
          if (!pb) return false;
          const float* rows[kKC];  // an in-place panel's rows, where they lie in the stage
          const int64_t np = (pt + nr - 1) / nr;
          for (int64_t pc = 0; pc < K; pc += kKC) {
            const int64_t kc = std::min(kKC, K - pc);
            for (int64_t jp = 0; jp < np; ++jp) {
              const int64_t* pj = tp.pos.data() + jp * nr;
              const int ncols = int(std::min<int64_t>(nr, pt - jp * nr));
              // A panel whose vectors of positions are staged runs is read in place; others are packed.
              int64_t voff[8];
              if (panel_vectors(pj, tp.cont4.data(), jp * (nr / 4), nr, vl, voff)) {
                int64_t ci = pc / nt, t = pc - ci * nt;
                const float* sc = stage + ci * cs + pj[0];
                for (int64_t r = 0; r < kc; ++r) {
                  rows[r] = sc + toff[t];
                  if (++t == nt) t = 0, sc += cs;
                }
                for (int64_t ir = 0; ir < mc; ir += mr) {
                  const int nrows = int(std::min<int64_t>(mr, mc - ir));
                  micro_rows(nrows, kc, A + ir * K + pc * mr, rows, voff, cdst + ir * ldc + jp * nr, ldc, 1,
                             ncols, pc > 0, pc == 0 && b ? b + c0 + ir : nullptr);
                }
                continue;
              }
              pack(pb, stage, cs, toff, nt, pc, kc, pj, tp.cont4.data(), jp * (nr / 4));
              for (int64_t ir = 0; ir < mc; ir += mr) {
                const int nrows = int(std::min<int64_t>(mr, mc - ir));
                micro(nrows, kc, A + ir * K + pc * mr, pb, cdst + ir * ldc + jp * nr, ldc, 1, ncols, pc > 0,
                      pc == 0 && b ? b + c0 + ir : nullptr);
              }
            }
          }
          return true;
        };
        // One sample's positions of a unit-mapped problem are one contiguous stretch of y: written in place.
        if (unit && f0 / cp == (f1 - 1) / cp) {
          float* cdst = y + ((g.n0 + f0 / cp) * cout + c0) * Pout + g.t0 * c.n[1] * c.n[2] + f0 % cp;
          if (!run_class(k, cdst, Pout, nullptr)) {
            failed = true;
            return;
          }
          if (slope && !direct)  // the tile is still in cache
            for (int64_t co = c0; co < c1; ++co) {
              float* row = cdst + (co - c0) * Pout;
              const float a = slope[co % nslopes];
              for (int64_t j = 0; j < pt; ++j) row[j] = row[j] < 0.0f ? row[j] * a : row[j];
            }
          continue;
        }
        // Otherwise the outputs go through opos (the offsets of class k; its pair's are one further).
        output_offsets(tp.opos.data(), p, g, c, cp, f0, f1);
        const int64_t* opos = tp.opos.data();
        float* ybase = y + g.n0 * cout * Pout;
        if (direct && pw == 1) {  // the direct kernel stores through opos itself
          if (!run_class(k, ybase + c0 * Pout, Pout, opos)) {
            failed = true;
            return;
          }
          continue;
        }
        float* tile = scratch(kScratchTile, pw * mc * pt);
        if (!tile) {
          failed = true;
          return;
        }
        for (int64_t e = 0; e < pw; ++e)
          if (!run_class(k + e, tile + e * mc * pt, pt, nullptr)) {
            failed = true;
            return;
          }
        const float* const act_slope = direct ? nullptr : slope;  // the direct kernel applied it
        for (int64_t co = c0; co < c1; ++co) {
          const float* src = tile + (co - c0) * pt;
          float* dst = ybase + co * Pout;
          const float a = act_slope ? act_slope[co % nslopes] : 1.0f;
          if (pw == 2)
            store_pair(dst, opos, src, src + mc * pt, pt, act_slope != nullptr, a);
          else if (act_slope)
            for (int64_t j = 0; j < pt; ++j) dst[opos[j]] = src[j] < 0.0f ? src[j] * a : src[j];
          else
            for (int64_t j = 0; j < pt; ++j) dst[opos[j]] = src[j];
        }
      }
    });
    if (failed) return oom(op, "scratch");
  }
  return Status::Ok;
}

Status conv_engine_weight_grad(const char* op, float* dw, const float* dy, const float* x, const ConvProblem& p) {
  if (p.classes.size() != 1) return fail(Status::Internal, "%s: weight gradient needs a single class", op);
  const EngineClass& c = p.classes[0];
  const Stage s = make_stage(p);
  if (!s.reads) return Status::Ok;
  const int64_t cin = p.cin, cout = p.cout;
  const int64_t nt = c.ntap[0] * c.ntap[1] * c.ntap[2], K = cin * nt;
  const int64_t P = p.out[0] * p.out[1] * p.out[2];
  const EngineKernels ek = engine_kernels();
  const int64_t rblocks = (K + kRA - 1) / kRA;
  const int64_t cgroups = (cout + kRB - 1) / kRB;
  // Two ways to split the work, both summing every dw element in the same order for any thread count:
  // - a small dw (a first layer, 1 input channel; a last one, 2 channels) is split over chunks of
  //   positions, each chunk with its own partial dw, the partials then added in chunk order;
  // - otherwise over blocks of dw (rows x channels), each block walking all positions in order.
  const bool by_chunk = cout * K <= kChunkSplitMax;
  const int64_t chunk = std::max<int64_t>(256, std::min<int64_t>(4096, (int64_t(1) << 16) /
                                                                           std::max(cout, by_chunk ? K : 1))) /
                        kPosPad * kPosPad;
  CallState& ct = call_state();
  std::lock_guard<std::mutex> hold(ct.mu);
  try {
    ct.tapoff.assign(size_t(nt), 0);
    ct.part.resize(size_t(cout * K));  // zeroed below, by the threads (a whole layer's weights in doubles)
    plan_groups(p, s, ct.groups);
  } catch (const std::bad_alloc&) {
    return oom(op, "tables");
  }
  class_tapoffs(ct.tapoff.data(), p, s, c);
  const int64_t* tapoff = ct.tapoff.data();
  double* part = ct.part.data();
  parallel_for(cout * K, int64_t(1) << 14, [&](int64_t lo, int64_t hi) { std::fill(part + lo, part + hi, 0.0); });

  int64_t stage_max = 0, chunks_max = 0;
  for (const Group& g : ct.groups) {
    stage_max = std::max(stage_max, (g.n1 - g.n0) * g.zcount * s.zs);
    const int64_t pos = std::max<int64_t>(0, std::min(g.t1, c.n[0]) - g.t0) * c.n[1] * c.n[2];
    chunks_max = std::max(chunks_max, ((g.n1 - g.n0) * pos + chunk - 1) / chunk);
  }
  float* stage = ct.stage.get(std::max<int64_t>(stage_max, 1));
  if (!stage) return oom(op, "the staged input");
  try {
    if (by_chunk) ct.chunk_part.resize(size_t(chunks_max * cout * K));
  } catch (const std::bad_alloc&) {
    return oom(op, "partial sums");
  }
  double* chunk_part = by_chunk ? ct.chunk_part.data() : nullptr;

  // Row-split items: (block of kRA column rows, block of kRB-multiple output channels), row-block major;
  // more channel blocks only when there are too few row blocks to keep every thread busy.
  const int64_t threads = num_threads();
  const int64_t cblocks =
      by_chunk ? 1 : rblocks >= 4 * threads ? 1 : std::min(cgroups, (4 * threads + rblocks - 1) / rblocks);
  const int64_t items = rblocks * cblocks;
  const int64_t colrows = by_chunk ? K : kRA;  // column rows built at a time
  std::atomic<bool> failed{false};
  for (const Group& g : ct.groups) {
    stage_or_reuse(ct, stage, x, p, s, g, true);
    const int64_t cs = s.wrow, ss = g.zcount * s.zs, gs = g.n1 - g.n0;  // channel, sample strides
    const int64_t positions = std::max<int64_t>(0, std::min(g.t1, c.n[0]) - g.t0) * c.n[1] * c.n[2];
    if (positions == 0) continue;
    // Chunks run over the group's (sample, position) pairs, so that a layer with few positions per sample
    // still fills a chunk; each is padded to the vector length only.
    const int64_t total = gs * positions, nchunks = (total + chunk - 1) / chunk;

    // Adds chunk [f0, f1)'s contribution, for row-split items [ilo, ihi), into out[co * K + r].
    auto do_chunk = [&](ThreadPositions& tp, float* dyb, float* colb, int64_t f0, int64_t f1, int64_t ilo,
                        int64_t ihi, double* out) {
      const int64_t len = f1 - f0, padded = (len + ek.vl - 1) / ek.vl * ek.vl;
      int64_t nruns = 0;
      int64_t* runs = tp.runs.data();
      for_each_sample(positions, f0, f1, [&](int64_t sg, int64_t a0, int64_t a1, int64_t jbase) {
        for_each_run(c.n[1], c.n[2], a0, a1, [&](int64_t tz, int64_t ty, int64_t tx0, int64_t rlen, int64_t j) {
          runs[3 * nruns] = jbase + j;
          runs[3 * nruns + 1] = sg * ss + ((g.t0 + tz) * p.step[0] - g.zbase) * s.zs + ty * p.step[1] * s.ys + tx0;
          runs[3 * nruns + 2] = rlen;
          ++nruns;
        });
        const int64_t n = g.n0 + sg;
        for (int64_t co = 0; co < cout; ++co)
          copy_floats(dyb + co * padded + jbase, dy + (n * cout + co) * P + g.t0 * c.n[1] * c.n[2] + a0, a1 - a0);
      });
      for (int64_t co = 0; co < cout; ++co)
        for (int64_t j = len; j < padded; ++j) dyb[co * padded + j] = 0.0f;
      int64_t built = -1;  // row block whose rows are in colb (by_chunk: all rows, built once)
      for (int64_t it = ilo; it < ihi; ++it) {
        const int64_t rbk = it / cblocks, cbk = it % cblocks;
        const int64_t r0 = rbk * kRA, ra = std::min<int64_t>(kRA, K - r0);
        const int64_t first_row = by_chunk ? 0 : r0, nrows = by_chunk ? K : ra;
        if (built < 0 || (!by_chunk && built != rbk)) {
          for (int64_t i = 0; i < nrows; ++i) {
            const int64_t r = first_row + i, ci = r / nt;
            const float* src = stage + ci * cs + tapoff[r - ci * nt];
            float* d = colb + i * padded;
            for (int64_t q = 0; q < nruns; ++q) {
              const int64_t* rq = runs + 3 * q;
              copy_floats(d + rq[0], src + rq[1], rq[2]);
            }
            for (int64_t j = len; j < padded; ++j) d[j] = 0.0f;
          }
          built = rbk;
        }
        const float* rows = colb + (r0 - first_row) * padded;
        const int64_t g0 = cgroups * cbk / cblocks, g1 = cgroups * (cbk + 1) / cblocks;
        for (int64_t gi = g0; gi < g1; ++gi) {
          const int64_t co = gi * kRB, rb = std::min<int64_t>(kRB, cout - co);
          ek.dot(int(ra), int(rb), padded, rows, padded, dyb + co * padded, padded, out + co * K + r0, K);
        }
      }
    };
    auto buffers = [&](ThreadPositions*& tp, float*& dyb, float*& colb) {
      tp = &thread_positions();
      dyb = scratch(kScratchPackA, cout * (chunk + kPosPad));
      colb = scratch(kScratchCol, colrows * (chunk + kPosPad));
      return tp->reserve(chunk + kPosPad) && dyb && colb;
    };

    if (by_chunk) {
      parallel_for(nchunks, 1, [&](int64_t lo, int64_t hi) {
        ThreadPositions* tp;
        float *dyb, *colb;
        if (!buffers(tp, dyb, colb)) {
          failed = true;
          return;
        }
        for (int64_t ch = lo; ch < hi; ++ch) {
          double* out = chunk_part + ch * cout * K;
          std::fill(out, out + cout * K, 0.0);
          do_chunk(*tp, dyb, colb, ch * chunk, std::min(total, (ch + 1) * chunk), 0, items, out);
        }
      });
      if (failed) return oom(op, "scratch");
      parallel_for(cout * K, 256, [&](int64_t lo, int64_t hi) {
        for (int64_t ch = 0; ch < nchunks; ++ch) {
          const double* src = chunk_part + ch * cout * K;
          for (int64_t i = lo; i < hi; ++i) part[i] += src[i];
        }
      });
    } else {
      parallel_for(items, 1, [&](int64_t lo, int64_t hi) {
        ThreadPositions* tp;
        float *dyb, *colb;
        if (!buffers(tp, dyb, colb)) {
          failed = true;
          return;
        }
        for (int64_t ch = 0; ch < nchunks; ++ch)
          do_chunk(*tp, dyb, colb, ch * chunk, std::min(total, (ch + 1) * chunk), lo, hi, part);
      });
      if (failed) return oom(op, "scratch");
    }
  }
  parallel_for(cout * K, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dw[i] += static_cast<float>(part[i]);
  });
  return Status::Ok;
}

}  // namespace vx
