// Shared machinery of the linear kernels and conv_engine (conv3d, conv_transpose3d): a single-threaded float
// GEMM with a register-blocked micro-kernel (also exposed alone for conv_engine's implicit GEMM),
// per-thread scratch memory and work planning. Callers parallelize around these; every function here works
// on the calling thread only.
//
// The hot kernels are chosen once per process: on x86-64 with GCC/Clang the best of AVX-512F, AVX2+FMA
// and the baseline (SSE2) build of the same templates, by CPU detection (the build itself uses no -march
// flag); elsewhere (arm64, WASM, MSVC) the portable build. Defining VX_PORTABLE_ONLY forces the portable
// kernels.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

struct Conv3dShape;

// Validation shared by conv3d_shape and conv_transpose3d_shape (defined in conv3d.cpp): checks every field
// of s for `op` ("conv3d" or "conv_transpose3d"), computes the output size into out[3] and rejects
// tensors beyond kMaxTensorElements. Messages name the bad field.
Status conv_validate(const char* op, bool transposed, const Conv3dShape& s, int out[3]);

// Sanity limit on the element count of any one tensor (2^36 floats = 256 GiB); shapes beyond it are
// rejected by the shape functions before any offset arithmetic can overflow.
constexpr int64_t kMaxTensorElements = int64_t(1) << 36;

// Product of the positive factors f[0..count) if it is <= kMaxTensorElements, else -1.
int64_t checked_elements(const int64_t* f, int count);

// --- GEMM ------------------------------------------------------------------------------------------------
// C = A*B, or C += A*B when accumulate; row_bias (nullable) adds row_bias[i] to every element of row i.
// Element (i, j) of X is x[i*rs_x + j*cs_x], so transposed operands are just swapped strides.
// m, n, k >= 0; with k == 0, C becomes the bias (or zero), or is left as is when accumulating.
// Returns false only when scratch memory could not be allocated.
bool gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b,
          int64_t rsb, int64_t csb, float* c, int64_t rsc, int64_t csc, bool accumulate,
          const float* row_bias);

// The micro-kernel in use, e.g. "avx2+fma 6x16"; its row and column blocking.
const char* gemm_kernel_name();
int gemm_mr();
int gemm_nr();
int gemm_vl();  // the micro-kernel's vector length in floats (NR is a multiple)
// Selects a micro-kernel by ISA name ("avx512f", "avx2", "sse2", "portable"), or the automatic choice
// when name is null. Returns false (and changes nothing) when this CPU or build lacks it. For tests and
// benchmarks; not to be called while kernels run.
bool gemm_select_kernel(const char* name);
// The ISA of the selected micro-kernel ("avx512f", "avx2", "sse2" or "portable"): other hot kernels
// (conv_engine.cpp) compile the same ISAs and follow this choice, so one switch selects every path.
const char* gemm_kernel_isa();

// One switch for every ISA-dispatched CPU kernel: the GEMM/conv micro-kernels (gemm_select_kernel) and
// the vectorized element-wise kernels (vmath.h's select_isa; avx512f selects their AVX2 build). Name:
// "avx512f", "avx2", "sse2" (x86-64's baseline, no FMA: the arithmetic of the WebAssembly SIMD build),
// "portable" (alias of the baseline), or null for the automatic choice. False, changing nothing, when
// this CPU or build lacks the ISA. Not to be called while kernels run.
bool cpu_select_isa(const char* name);

// The selected micro-kernel, for GEMM drivers outside gemm.cpp (conv_engine.cpp). It computes
// C[i, j] = (beta ? C[i, j] : 0) + bias[i] + sum_k a[k*MR + i] * b[k*NR + j] for i < m <= MR, j < n <= NR:
// a is an MR-row panel of A (MR = gemm_mr()), b an NR-column panel of B (NR = gemm_nr(), zero-padded),
// C element (i, j) at c[i*rsc + j*csc]; bias nullable.
using GemmMicroFn = void (*)(int m, int64_t kc, const float* a, const float* b, float* c, int64_t rsc,
                             int64_t csc, int n, bool beta, const float* bias);
GemmMicroFn gemm_micro_kernel();
// The same micro-kernel with B given in place: vector j (VL = gemm_vl() floats) of row k of the panel is
// at brows[k] + voff[j], j < NR / VL (anywhere in memory), so that rows whose vectors already lie
// contiguous somewhere (a staged input) need no packing. Same arithmetic in the same order as
// gemm_micro_kernel on a panel holding those rows: the same bits.
using GemmMicroRowsFn = void (*)(int m, int64_t kc, const float* a, const float* const* brows,
                                 const int64_t* voff, float* c, int64_t rsc, int64_t csc, int n, bool beta,
                                 const float* bias);
GemmMicroRowsFn gemm_micro_rows_kernel();

// --- Scratch -----------------------------------------------------------------------------------------------
// Per-thread buffers, 64-byte aligned, that grow to the largest request and are never freed, so steady
// state allocates nothing. Each slot is one buffer; a pointer stays valid until the same thread asks the
// same slot for more. Returns null when the allocation fails.
enum ScratchSlot : int {
  kScratchPackA,   // gemm: packed A block; conv_engine weight gradient: a chunk of dy
  kScratchPackB,   // gemm: packed B block; conv_engine: one column panel
  kScratchCol,     // conv_engine weight gradient: column rows
  kScratchTile,    // conv_engine: output tile of a strided class before it is scattered
  kScratchSlots
};
float* scratch(ScratchSlot slot, int64_t count);

// Calls fn(t, ty, tx0, len, j) for the runs of consecutive x positions that make up [p0, p1) of an
// (ny, nx) grid flattened as above: tz = t, positions tx0..tx0+len-1, tile column j = p - p0.
template <class F>
inline void for_each_run(int64_t ny, int64_t nx, int64_t p0, int64_t p1, F&& fn) {
  int64_t p = p0;
  while (p < p1) {
    const int64_t tx = p % nx, rest = p / nx;
    const int64_t len = (nx - tx) < (p1 - p) ? (nx - tx) : (p1 - p);
    fn(rest / ny, rest % ny, tx, len, p - p0);
    p += len;
  }
}

// --- Work planning -------------------------------------------------------------------------------------------
// How a conv call splits its output: `outer` independent grids (batch, or batch x residue class) of up to
// `positions` output positions are cut into `tiles` tiles each, and the output channels into `co_blocks`
// blocks, so that there are enough equal work items for every thread and each column tile stays within
// `max_tile` positions.
struct TilePlan {
  int64_t tiles = 1;
  int64_t co_blocks = 1;
};
TilePlan plan_tiles(int64_t outer, int64_t positions, int64_t max_tile, int64_t cout);

// Tile `j` of `tiles` over [0, positions): [*p0, *p1). Boundaries are multiples of the micro-kernel width
// when tiles are large, so only the last tile of a grid has a partial panel. May be empty.
void tile_range(int64_t positions, int64_t tiles, int64_t j, int64_t* p0, int64_t* p1);

// Output-channel block `j` of `blocks` over [0, cout), boundaries multiples of the micro-kernel height.
void co_range(int64_t cout, int64_t blocks, int64_t j, int64_t* c0, int64_t* c1);

// db[c] += sum over (n, p) of dy[n, c, p], summed in double in a fixed order (deterministic for any
// thread count); parallel over channels.
void channel_sum_add(float* db, const float* dy, int64_t n, int64_t channels, int64_t positions);

}  // namespace vx
