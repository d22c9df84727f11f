// CUDA twins of native/core/conv3d.h and conv_transpose3d.h. With cuDNN built in, the three
// directions (forward, backward-data, backward-weight) go to cudnn_conv (algorithm found once per
// shape); otherwise, and as the reference the GPU tests compare cuDNN against, direct gather kernels
// run: slow but exact in fp32 and deterministic. Bias add and bias gradient are own kernels either way.
#include "conv_transpose3d.h"
#include "context.h"
#include "cudnn_conv.h"
#include "kernels.h"
#include "reduce.cuh"

namespace vx {
namespace cuda {

namespace {

struct G {  // ConvGeom flattened for kernels
  int n, cb, ks, b0, b1, b2, s0, s1, s2, k0, k1, k2, st0, st1, st2, p0, p1, p2;
};
G flat(const ConvGeom& g) {
  return G{g.n, g.cb, g.ks, g.b[0], g.b[1], g.b[2], g.s[0], g.s[1], g.s[2], g.k[0], g.k[1], g.k[2],
           g.stride[0], g.stride[1], g.stride[2], g.pad[0], g.pad[1], g.pad[2]};
}

__global__ void k_big_to_small(float* S, const float* B, const float* W, const float* bias, G g) {
  const int64_t ssp = int64_t(g.s0) * g.s1 * g.s2, bsp = int64_t(g.b0) * g.b1 * g.b2, taps = int64_t(g.k0) * g.k1 * g.k2;
  VXC_GRID_LOOP(i, int64_t(g.n) * g.ks * ssp) {
    const int64_t o = i % ssp, nk = i / ssp;
    const int ks = int(nk % g.ks), n = int(nk / g.ks);
    const int oz = int(o / (int64_t(g.s1) * g.s2)), oy = int(o / g.s2 % g.s1), ox = int(o % g.s2);
    float acc = bias ? bias[ks] : 0.f;
    for (int cb = 0; cb < g.cb; ++cb) {
      const float* bp = B + (int64_t(n) * g.cb + cb) * bsp;
      const float* wp = W + (int64_t(ks) * g.cb + cb) * taps;
      for (int a = 0; a < g.k0; ++a) {
        const int z = oz * g.st0 - g.p0 + a;
        if (z < 0 || z >= g.b0) continue;
        for (int b = 0; b < g.k1; ++b) {
          const int y = oy * g.st1 - g.p1 + b;
          if (y < 0 || y >= g.b1) continue;
          for (int c = 0; c < g.k2; ++c) {
            const int x = ox * g.st2 - g.p2 + c;
            if (x < 0 || x >= g.b2) continue;
            acc += bp[(int64_t(z) * g.b1 + y) * g.b2 + x] * wp[(a * g.k1 + b) * g.k2 + c];
          }
        }
      }
    }
    S[i] = acc;
  }
}

__global__ void k_small_to_big(float* B, const float* S, const float* W, const float* bias, G g) {
  const int64_t ssp = int64_t(g.s0) * g.s1 * g.s2, bsp = int64_t(g.b0) * g.b1 * g.b2, taps = int64_t(g.k0) * g.k1 * g.k2;
  VXC_GRID_LOOP(i, int64_t(g.n) * g.cb * bsp) {
    const int64_t pidx = i % bsp, nc = i / bsp;
    const int cb = int(nc % g.cb), n = int(nc / g.cb);
    const int pz = int(pidx / (int64_t(g.b1) * g.b2)), py = int(pidx / g.b2 % g.b1), px = int(pidx % g.b2);
    float acc = bias ? bias[cb] : 0.f;
    for (int ks = 0; ks < g.ks; ++ks) {
      const float* sp = S + (int64_t(n) * g.ks + ks) * ssp;
      const float* wp = W + (int64_t(ks) * g.cb + cb) * taps;
      for (int a = 0; a < g.k0; ++a) {
        const int tz = pz + g.p0 - a;
        if (tz < 0 || tz % g.st0) continue;
        const int z = tz / g.st0;
        if (z >= g.s0) continue;
        for (int b = 0; b < g.k1; ++b) {
          const int ty = py + g.p1 - b;
          if (ty < 0 || ty % g.st1) continue;
          const int y = ty / g.st1;
          if (y >= g.s1) continue;
          for (int c = 0; c < g.k2; ++c) {
            const int tx = px + g.p2 - c;
            if (tx < 0 || tx % g.st2) continue;
            const int x = tx / g.st2;
            if (x >= g.s2) continue;
            acc += sp[(int64_t(z) * g.s1 + y) * g.s2 + x] * wp[(a * g.k1 + b) * g.k2 + c];
          }
        }
      }
    }
    B[i] = acc;
  }
}

// One block per filter element: dW[ks, cb, tap] += sum over n and small positions of dS * B.
__global__ void k_filter_grad(float* dW, const float* B, const float* dS, G g) {
  const int64_t taps = int64_t(g.k0) * g.k1 * g.k2, ssp = int64_t(g.s0) * g.s1 * g.s2, bsp = int64_t(g.b0) * g.b1 * g.b2;
  const int64_t e = blockIdx.x;
  const int t = int(e % taps);
  const int cb = int(e / taps % g.cb), ks = int(e / taps / g.cb);
  const int a = t / (g.k1 * g.k2), b = t / g.k2 % g.k1, c = t % g.k2;
  double acc = 0;
  for (int64_t j = threadIdx.x; j < int64_t(g.n) * ssp; j += blockDim.x) {
    const int n = int(j / ssp);
    const int64_t o = j % ssp;
    const int oz = int(o / (int64_t(g.s1) * g.s2)), oy = int(o / g.s2 % g.s1), ox = int(o % g.s2);
    const int z = oz * g.st0 - g.p0 + a, y = oy * g.st1 - g.p1 + b, x = ox * g.st2 - g.p2 + c;
    if (z < 0 || z >= g.b0 || y < 0 || y >= g.b1 || x < 0 || x >= g.b2) continue;
    acc += double(dS[(int64_t(n) * g.ks + ks) * ssp + o]) * double(B[(int64_t(n) * g.cb + cb) * bsp + (int64_t(z) * g.b1 + y) * g.b2 + x]);
  }
  acc = block_reduce(acc);
  if (threadIdx.x == 0) dW[e] += float(acc);
}

__global__ void k_bias_add(float* y, const float* bias, int c, int64_t spatial, int64_t count) {
  VXC_GRID_LOOP(i, count) y[i] += bias[(i / spatial) % c];
}
struct Val {
  const float* v;
  __device__ double operator()(int, int64_t k) const { return double(v[k]); }
};
struct AddF {
  float* out;
  __device__ void operator()(int ch, double v) const { out[ch] += float(v); }
};

ConvGeom geom(const Conv3dShape& s, bool transposed) {
  ConvGeom g;
  g.n = s.n;
  const int in[3] = {s.id, s.ih, s.iw}, out[3] = {s.od, s.oh, s.ow};
  g.cb = transposed ? s.cout : s.cin;
  g.ks = transposed ? s.cin : s.cout;
  for (int i = 0; i < 3; ++i) {
    g.b[i] = transposed ? out[i] : in[i];
    g.s[i] = transposed ? in[i] : out[i];
  }
  g.k[0] = s.kd; g.k[1] = s.kh; g.k[2] = s.kw;
  g.stride[0] = s.sd; g.stride[1] = s.sh; g.stride[2] = s.sw;
  g.pad[0] = s.pd; g.pad[1] = s.ph; g.pad[2] = s.pw;
  return g;
}

Status run(Context& ctx, ConvDir dir, const ConvGeom& g, float* out, const float* a, const float* w_or_ds, const float* bias,
           cudaStream_t st, bool use_cudnn) {
  const G f = flat(g);
  const int64_t ssp = int64_t(g.s[0]) * g.s[1] * g.s[2], bsp = int64_t(g.b[0]) * g.b[1] * g.b[2];
  if (use_cudnn && cudnn_built()) {
    VX_TRY(cudnn_conv(ctx, st, dir, g, out, a, w_or_ds));
    if (bias && dir != ConvDir::FilterGrad) {
      const bool small = dir == ConvDir::BigToSmall;
      const int c = small ? g.ks : g.cb;
      const int64_t sp = small ? ssp : bsp, count = int64_t(g.n) * c * sp;
      k_bias_add<<<blocks_for(count), kThreads, 0, st>>>(out, bias, c, sp, count);
      VXC_LAUNCH("conv bias");
    }
    return Status::Ok;
  }
  switch (dir) {
    case ConvDir::BigToSmall:
      k_big_to_small<<<blocks_for(int64_t(g.n) * g.ks * ssp), kThreads, 0, st>>>(out, a, w_or_ds, bias, f);
      break;
    case ConvDir::SmallToBig:
      k_small_to_big<<<blocks_for(int64_t(g.n) * g.cb * bsp), kThreads, 0, st>>>(out, a, w_or_ds, bias, f);
      break;
    case ConvDir::FilterGrad: {
      const int64_t elems = int64_t(g.ks) * g.cb * g.k[0] * g.k[1] * g.k[2];
      if (elems > 0x7fffffff) return fail(Status::Unsupported, "conv filter of %lld values is too large", (long long)elems);
      k_filter_grad<<<unsigned(elems), kThreads, 0, st>>>(out, a, w_or_ds, f);
      break;
    }
  }
  VXC_LAUNCH("conv direct");
  return Status::Ok;
}

}  // namespace

Status conv3d_forward(Context& ctx, float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                      cudaStream_t st, bool use_cudnn) {
  VX_TRY(conv3d_check(s));
  return run(ctx, ConvDir::BigToSmall, geom(s, false), y, x, w, b, st, use_cudnn);
}

Status conv3d_backward(Context& ctx, float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const Conv3dShape& s, cudaStream_t st, bool use_cudnn) {
  VX_TRY(conv3d_check(s));
  const ConvGeom g = geom(s, false);
  if (dx) VX_TRY(run(ctx, ConvDir::SmallToBig, g, dx, dy, w, nullptr, st, use_cudnn));
  if (dw) VX_TRY(run(ctx, ConvDir::FilterGrad, g, dw, x, dy, nullptr, st, use_cudnn));
  if (db) VX_TRY(reduce_channels<double>(s.n, s.cout, int64_t(s.od) * s.oh * s.ow, Val{dy}, AddF{db}, st));
  return Status::Ok;
}

Status conv_transpose3d_forward(Context& ctx, float* y, const float* x, const float* w, const float* b, const Conv3dShape& s,
                                cudaStream_t st, bool use_cudnn) {
  VX_TRY(conv_transpose3d_check(s));
  return run(ctx, ConvDir::SmallToBig, geom(s, true), y, x, w, b, st, use_cudnn);
}

Status conv_transpose3d_backward(Context& ctx, float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                                 const Conv3dShape& s, cudaStream_t st, bool use_cudnn) {
  VX_TRY(conv_transpose3d_check(s));
  const ConvGeom g = geom(s, true);
  if (dx) VX_TRY(run(ctx, ConvDir::BigToSmall, g, dx, dy, w, nullptr, st, use_cudnn));
  if (dw) VX_TRY(run(ctx, ConvDir::FilterGrad, g, dw, dy, x, nullptr, st, use_cudnn));
  if (db) VX_TRY(reduce_channels<double>(s.n, s.cout, int64_t(s.od) * s.oh * s.ow, Val{dy}, AddF{db}, st));
  return Status::Ok;
}

// A trivial kernel whose attributes can only be read when the binary has an image for the device.
__global__ void k_probe() {}
bool kernels_loadable() {
  cudaFuncAttributes a;
  return cudaFuncGetAttributes(&a, k_probe) == cudaSuccess;
}

}  // namespace cuda
}  // namespace vx
