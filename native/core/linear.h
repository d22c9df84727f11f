// linear: y = x W^T + b (PyTorch nn.Linear), x [n, in], w [out, in], b [out] or null, y [n, out].
// Reference twin: linear_ref.h.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

// Validates n, in, out >= 1 and that no tensor exceeds the element limit; every linear entry point
// (optimized and reference) starts with it.
Status linear_check(int n, int in, int out);

Status linear_forward(float* y, const float* x, const float* w, const float* b, int n, int in, int out);
// dx (=) [n, in]; dw (+=) [out, in]; db (+=) [out].
Status linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       int n, int in, int out);

}  // namespace vx
