// conv_engine: the optimized kernels behind conv3d and conv_transpose3d (forward, and the weight gradient
// of conv3d; every other pass of both ops is one of these with the roles of the tensors swapped). Internal
// to native/core: conv3d.cpp and conv_transpose3d.cpp describe their problem as a ConvProblem and call in.
//
// A problem is one or more "classes": stride-1-like sub-problems over a grid of output positions, each
// reading input index t*step + off[u] for grid position t and tap u along each axis (zero outside the
// input) and writing output index q + ostep*t. conv3d is one class (step = stride, off[u] = u - pad);
// conv_transpose3d is one class per output residue mod stride (step 1, each class with its own taps, see
// conv_transpose3d.cpp): a gather with no multiplications by the zeros of a dilated input.
//
// How it is fast (see conv_engine.cpp): the input is first "staged" slab by slab into a zero-padded copy
// whose x axis is split into stride phases, so that every tap of every run of consecutive output x reads
// consecutive floats, with no bounds checks; weights are packed once per call; column panels of the
// implicit GEMM are built just before the micro-kernel uses them (they never leave L1); a handful of output
// channels (a decoder's last layer) use a direct kernel that forms the panel in registers; the weight
// gradient uses a dot-product kernel over rows of positions, split over the weight's rows so that its sums
// run in the same order for any thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "conv3d.h"
#include "status.h"

namespace vx {

struct EngineClass {
  int64_t n[3] = {1, 1, 1};      // grid size per axis (may be 0: the class is empty)
  int64_t q[3] = {0, 0, 0};      // output index along axis a = q[a] + ostep[a] * t
  int64_t ostep[3] = {1, 1, 1};
  int64_t ntap[3] = {1, 1, 1};   // taps per axis (0: every output of the class is the bias)
  int64_t first[3] = {0, 0, 0};  // the class's taps are entries first[a] .. first[a] + ntap[a] of off/ktap
};

struct ConvProblem {
  int64_t batch = 1, cin = 1, cout = 1;
  int64_t in[3] = {1, 1, 1};    // input D, H, W
  int64_t step[3] = {1, 1, 1};  // input index step per grid position
  int64_t out[3] = {1, 1, 1};   // output D, H, W
  int64_t k[3] = {1, 1, 1};     // kernel D, H, W
  bool transposed_weight = false;  // w is [cin, cout, k] (conv_transpose3d) instead of [cout, cin, k]
  std::vector<int64_t> off[3];     // tap offsets, per axis, all classes' entries
  std::vector<int64_t> ktap[3];    // kernel index of each entry
  std::vector<EngineClass> classes;

  void clear() {
    for (int a = 0; a < 3; ++a) off[a].clear(), ktap[a].clear();
    classes.clear();
  }
};

// y[n, co, out] = b[co] + sum over the classes' taps (see above). x: [batch, cin, in]; w as described by
// transposed_weight; b nullable; y: [batch, cout, out], every element written exactly once.
// ep (nullable): ConvEpilogue (conv3d.h): scale folded into the packed weights, shift into the bias, the
// PReLU applied as outputs are stored.
Status conv_engine_forward(const char* op, float* y, const float* x, const float* w, const float* b,
                           const ConvProblem& p, const ConvEpilogue* ep = nullptr);

// dw[co, ci, k] += sum_{n, grid t} dy[n, co, out(t)] * x[n, ci, in(t, tap)] for a single-class problem with
// unit output mapping (conv3d's weight gradient). dw is [cout, cin, k]. The sums run in an order that does
// not depend on the thread count.
Status conv_engine_weight_grad(const char* op, float* dw, const float* dy, const float* x, const ConvProblem& p);

// Inside a StageReuseScope on the calling thread, conv_engine_weight_grad reuses the staged copy of x
// that the previous engine call made (same x, same staging geometry, one group) instead of staging x
// again. The caller promises that x does not change inside the scope: conv_transpose3d_backward's dx
// (a conv3d forward over dy) and dw (conv3d's weight gradient with dy as its input) stage dy identically.
// Any other engine call in between (another thread's) replaces the staged copy and the reuse is skipped.
class StageReuseScope {
 public:
  StageReuseScope();
  ~StageReuseScope();
  StageReuseScope(const StageReuseScope&) = delete;
  StageReuseScope& operator=(const StageReuseScope&) = delete;
};

// Inputs staged and staged copies reused since the process started (for tests).
struct ConvEngineCounts {
  int64_t staged = 0, reused = 0;
};
ConvEngineCounts conv_engine_counts();

// Floats of input staged at once (default 4 Mi = 16 MiB; n <= 0 restores it); returns the previous value.
// A knob for tests, which shrink it to exercise per-sample groups and z slabs on small shapes. Not to be
// called while kernels run.
int64_t conv_engine_stage_budget(int64_t floats);

}  // namespace vx
