// conv_transpose3d: transposed 3-D convolution (the adjoint of conv3d), NCDHW activations,
// weight [Cin, Cout, kD, kH, kW] (PyTorch ConvTranspose3d layout). Reference twin: conv_transpose3d_ref.h.
// Output size per axis: (i - 1) * s - 2p + k + op, with 0 <= op < s (PyTorch's rule).
// Computed as a gather over the input (each output voxel sums its own taps), never as a scatter.
#pragma once
#include "conv3d.h"

namespace vx {

// Validates s (including output_padding < stride) and computes od, oh, ow.
Status conv_transpose3d_shape(Conv3dShape& s);

// Checks that s is valid and that od, oh, ow hold what conv_transpose3d_shape computes (see conv3d_check).
Status conv_transpose3d_check(const Conv3dShape& s);

// x: [n, cin, id, ih, iw]; w: [cin, cout, kd, kh, kw]; b: [cout] or null; y: [n, cout, od, oh, ow].
// ep (nullable): see ConvEpilogue in conv3d.h.
Status conv_transpose3d_forward(float* y, const float* x, const float* w, const float* b,
                                const Conv3dShape& s, const ConvEpilogue* ep = nullptr);

// dx (=): like x; dw (+=): like w; db (+=): [cout]; dy: like y.
Status conv_transpose3d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                 const float* w, const Conv3dShape& s);

}  // namespace vx
