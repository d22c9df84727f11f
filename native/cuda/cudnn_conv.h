// The cuDNN side of conv3d / conv_transpose3d, behind an interface that includes no cuDNN header:
// cudnn_conv.cpp implements it with cuDNN 9 (built only when cuDNN is found), cudnn_none.cpp says
// "not built" so that the direct kernels of conv3d.cu are used.
//
// Both ops relate a "big" tensor B [n, cb, bd, bh, bw] and a "small" one S [n, ks, sd, sh, sw] through
// a filter W [ks, cb, kd, kh, kw] (stride, padding, dilation 1): S = conv(B, W). conv3d: B = x, S = y,
// W = weight [cout, cin, ...]. conv_transpose3d: B = y, S = x, W = weight [cin, cout, ...].
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "status.h"

namespace vx {
namespace cuda {

struct ConvGeom {
  int n = 1, cb = 1, ks = 1;
  int b[3] = {1, 1, 1};  // big D, H, W
  int s[3] = {1, 1, 1};  // small D, H, W
  int k[3] = {1, 1, 1}, stride[3] = {1, 1, 1}, pad[3] = {0, 0, 0};
  int key(int i) const {  // fields in a fixed order, for the plan cache's ordering
    const int v[] = {n, cb, ks, b[0], b[1], b[2], s[0], s[1], s[2], k[0], k[1], k[2],
                     stride[0], stride[1], stride[2], pad[0], pad[1], pad[2]};
    return v[i];
  }
  bool operator<(const ConvGeom& o) const {
    for (int i = 0; i < 18; ++i)
      if (key(i) != o.key(i)) return key(i) < o.key(i);
    return false;
  }
};

enum class ConvDir : int { BigToSmall = 0, SmallToBig = 1, FilterGrad = 2 };

class Context;

bool cudnn_built();
int cudnn_runtime_version();  // 0 when not built or libcudnn does not load

// BigToSmall: out = S (beta 0), a = B, b = W.   SmallToBig: out = B (beta 0), a = S, b = W.
// FilterGrad: out = dW (+=), a = B, b = dS. The algorithm is found once per (geometry, direction,
// precision, determinism) with cudnnFind*AlgorithmEx under Options::workspace_limit and cached. Work is
// queued on `stream` (the one cuDNN handle is shared under a lock and pointed at it for each call).
Status cudnn_conv(Context& ctx, cudaStream_t stream, ConvDir dir, const ConvGeom& g, float* out, const float* a,
                  const float* b);

// Number of cached plans (for tests and benchmarks).
int cudnn_plan_count();

}  // namespace cuda
}  // namespace vx
