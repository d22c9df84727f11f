// Shared machinery of the conv3d, conv_transpose3d and linear kernels: a single-threaded float GEMM with a
// register-blocked micro-kernel, the implicit-GEMM column tile (im2col), a fused direct kernel for convs
// with few output channels, per-thread scratch memory and work planning. Callers parallelize around
// these; every function here works on the calling thread only.
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

// gemm with B already packed (see im2col_packed): NR-column panels of the whole k x n operand, panel p
// (columns p*NR ..) at bp + p*NR*k, element (kk, j) at + kk*NR + j % NR, the last panel zero-padded.
bool gemm_packed_b(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* bp,
                   float* c, int64_t rsc, int64_t csc, bool accumulate, const float* row_bias);
// Floats that a packed k x n B operand occupies.
int64_t packed_b_size(int64_t k, int64_t n);

// The micro-kernel in use, e.g. "avx2+fma 6x16"; its row and column blocking.
const char* gemm_kernel_name();
int gemm_mr();
int gemm_nr();
// Selects a micro-kernel by ISA name ("avx512f", "avx2", "sse2", "portable"), or the automatic choice
// when name is null. Returns false (and changes nothing) when this CPU or build lacks it. For tests and
// benchmarks; not to be called while kernels run.
bool gemm_select_kernel(const char* name);

// --- Scratch -----------------------------------------------------------------------------------------------
// Per-thread buffers, 64-byte aligned, that grow to the largest request and are never freed, so steady
// state allocates nothing. Each slot is one buffer; a pointer stays valid until the same thread asks the
// same slot for more. Returns null when the allocation fails.
enum ScratchSlot : int {
  kScratchPackA,   // gemm: packed A block
  kScratchPackB,   // gemm: packed B block
  kScratchCol,     // conv: column tile
  kScratchTile,    // conv: output tile before it is stored
  kScratchCall0,   // per call, on the calling thread: per-chunk partial sums
  kScratchCall1,   // per call, on the calling thread: repacked weights
  kScratchSlots
};
float* scratch(ScratchSlot slot, int64_t count);

// --- Implicit-GEMM column tiles ----------------------------------------------------------------------------
// One spatial axis of a column tile: output position t (0 <= t < n) with tap u reads input index
// t*step + off[u], and zero outside [0, in). For conv3d, step is the stride and off[u] = u - pad; for
// one residue class of a transposed conv, step is 1 (see conv_transpose3d.cpp).
struct ColAxis {
  int64_t n = 1;
  int64_t in = 1;
  int64_t step = 1;
  int64_t ntaps = 1;
  const int64_t* off = nullptr;
};

// Fills the column tile col[r*ldcol + (p - p0)] for output positions p in [p0, p1), flattened with z
// slowest over (ax[0].n, ax[1].n, ax[2].n), and rows r = ((c*ntaps0 + u0)*ntaps1 + u1)*ntaps2 + u2,
// c < channels, from in [channels, ax[0].in, ax[1].in, ax[2].in]. Returns false when out of memory.
bool im2col_tile(float* col, int64_t ldcol, const float* in, int64_t channels, const ColAxis ax[3],
                 int64_t p0, int64_t p1);

// The same column tile written straight into gemm_packed_b's layout (k = rows, n = p1 - p0), so the GEMM
// needs no second copy. bp holds packed_b_size(rows, p1 - p0) floats.
bool im2col_packed(float* bp, const float* in, int64_t channels, const ColAxis ax[3], int64_t p0, int64_t p1);

// Output channels up to which conv_direct is used instead of im2col + gemm.
constexpr int kDirectMaxRows = 4;

// C[i, p - p0] = bias[i] + sum_r w[i*ldw + r] * col[r, p] for i < m and p in [p0, p1), where col is the
// column tile that im2col_tile would build (rows r as there), row i of C at c + i*rsc; bias nullable.
// The tile is never stored: each of its rows is formed in registers and used at once. For a handful of
// output channels (a decoder's last layer) the tile's memory traffic would otherwise cost several times
// the arithmetic. Any m works; it is efficient for m <= kDirectMaxRows. False when out of memory.
bool conv_direct(int64_t m, const float* w, int64_t ldw, const float* bias, const float* in, int64_t channels,
                 const ColAxis ax[3], int64_t p0, int64_t p1, float* c, int64_t rsc);

// Leading dimension for a row-major column tile of `cols` columns: rounded up to a multiple of 16 floats
// and kept off multiples of 1 KiB, so that rows read together do not alias in the caches.
int64_t col_stride(int64_t cols);

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

// Largest tile (positions) whose column rows plus extra rows fit the per-thread column budget.
int64_t max_tile_positions(int64_t rows);

// Tile `j` of `tiles` over [0, positions): [*p0, *p1). Boundaries are multiples of the micro-kernel width
// when tiles are large, so only the last tile of a grid has a partial panel. May be empty.
void tile_range(int64_t positions, int64_t tiles, int64_t j, int64_t* p0, int64_t* p1);

// Output-channel block `j` of `blocks` over [0, cout), boundaries multiples of the micro-kernel height.
void co_range(int64_t cout, int64_t blocks, int64_t j, int64_t* c0, int64_t* c1);

// db[c] += sum over (n, p) of dy[n, c, p], summed in double in a fixed order (deterministic for any
// thread count); parallel over channels.
void channel_sum_add(float* db, const float* dy, int64_t n, int64_t channels, int64_t positions);

}  // namespace vx
