// conv3d: 3-D convolution, NCDHW activations, weight [Cout, Cin, kD, kH, kW] (PyTorch layout).
// Reference twin: conv3d_ref.h (same signatures, templated on the element type, single-threaded).
//
// Conventions shared by every op in native/core:
// - Layout NCDHW, row-major, float32; spatial letters D, H, W in that order everywhere.
// - Output-like pointers come first, then inputs, then the shape.
// - Input gradients are overwritten (=); parameter gradients are accumulated (+=), like PyTorch's
//   .grad, so that a network zeroes them once per step. Any gradient pointer may be null to skip it.
#pragma once
#include <cstdint>
#include <vector>

#include "status.h"

namespace vx {

struct Conv3dShape {
  int n = 1;                         // batch
  int cin = 1, cout = 1;             // channels
  int id = 1, ih = 1, iw = 1;        // input D, H, W
  int kd = 1, kh = 1, kw = 1;        // kernel
  int sd = 1, sh = 1, sw = 1;        // stride
  int pd = 0, ph = 0, pw = 0;        // zero padding on both sides
  int opd = 0, oph = 0, opw = 0;     // output_padding (conv_transpose3d only; must be < stride)
  int od = 0, oh = 0, ow = 0;        // output D, H, W: filled in by conv3d_shape / conv_transpose3d_shape
};

// Validates s and computes od, oh, ow = floor((i + 2p - k) / s) + 1. Fails with InvalidArgument and a
// message naming the bad field when a size is < 1, padding is negative, or the output would be empty.
Status conv3d_shape(Conv3dShape& s);

// Checks that s is valid and that od, oh, ow hold what conv3d_shape computes. Every conv3d entry point
// (optimized and reference) starts with it, so a shape that skipped conv3d_shape fails cleanly.
Status conv3d_check(const Conv3dShape& s);

// What a forward pass may apply to each output before storing it (inference with batch norm folded in):
// y = act(scale[co] * conv + shift[co]), conv including the bias, act = PReLU with slope
// slope[co % num_slopes] when slope is not null. Null scale is 1, null shift 0. The optimized kernels fold
// scale into the packed weights and apply the rest as they store: no pass over y of its own.
struct ConvPackCache;
struct ConvEpilogue {
  const float* scale = nullptr;  // [cout]
  const float* shift = nullptr;  // [cout]
  const float* slope = nullptr;  // [num_slopes]
  int64_t num_slopes = 1;        // 1 (shared) or cout
  // Not part of the math: where repeated inference keeps its packed weights (see ConvPackCache).
  ConvPackCache* cache = nullptr;
  uint64_t weights_gen = 0;  // the owner's count of writes to w; a change means "repack"
};

// Weights as an optimized forward packed them, kept by the caller between inference calls (Net keeps
// one per conv in eval mode): a forward given one reuses its panels when the weights pointer, their
// generation (ConvEpilogue::weights_gen), the micro-kernel and the epilogue scale are those it was
// filled with, and packs into it otherwise. Packing is about a tenth of a batch-1 decode. The reference
// kernels ignore it. Fields are the engine's; callers only own the object.
struct ConvPackCache {
  std::vector<float> data;   // packed panels, from the first 64-byte boundary in it
  std::vector<float> scale;  // the epilogue scale packed in (empty: none)
  const float* w = nullptr;
  uint64_t gen = 0;
  int64_t floats = 0;
  int mr = 0;
  bool valid = false;
};

// y[n, co, z, y, x] = b[co] + sum_{ci, a, b, c} w[co, ci, a, b, c] * x[n, ci, z*sd - pd + a, ...]
// x: [n, cin, id, ih, iw]; w: [cout, cin, kd, kh, kw]; b: [cout] or null; y: [n, cout, od, oh, ow].
// ep (nullable): see ConvEpilogue.
Status conv3d_forward(float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                      const ConvEpilogue* ep = nullptr);

// dx (=): [n, cin, id, ih, iw]; dw (+=): like w; db (+=): [cout]; dy: like y.
Status conv3d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const Conv3dShape& s);

}  // namespace vx
