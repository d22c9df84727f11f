// CUDA twin of native/core/optim.h: one fused pass per parameter (gradient scale for clipping, L2 or
// decoupled decay, both moments, the update), in double like the CPU, rounding p, m, v once.
#include "kernels.h"
#include "reduce.cuh"

namespace vx {
namespace cuda {

namespace {
struct AdamK {
  double b1, b2, eps, wd, shrink, step_size, bc2_sqrt;
  bool l2, decay;
  float scale;
};
__global__ void k_adam(float* param, float* m, float* v, float* grad, int64_t n, AdamK k) {
  VXC_GRID_LOOP(i, n) {
    float gf = grad[i];
    if (k.scale != 1.f) {
      gf *= k.scale;
      grad[i] = gf;  // the clipped gradient is what the CPU leaves behind too
    }
    double p = param[i], g = gf, mi = m[i], vi = v[i];
    if (k.l2) g += k.wd * p;
    if (k.decay) p *= k.shrink;
    mi += (1.0 - k.b1) * (g - mi);
    vi = vi * k.b2 + (1.0 - k.b2) * g * g;
    p -= k.step_size * mi / (sqrt(vi) / k.bc2_sqrt + k.eps);
    param[i] = float(p);
    m[i] = float(mi);
    v[i] = float(vi);
  }
}
struct Sq {
  const float* g;
  __device__ double operator()(int64_t i) const { return double(g[i]) * double(g[i]); }
};
}  // namespace

Status adam_step(float* param, float* m, float* v, float* grad, int64_t n, const AdamOptions& a, int64_t step, cudaStream_t st) {
  if (n < 0) return fail(Status::InvalidArgument, "adam_step: n %lld < 0", (long long)n);
  if (step < 1) return fail(Status::InvalidArgument, "adam_step: step %lld < 1", (long long)step);
  if (!(a.lr >= 0.f) || !(a.eps >= 0.f) || !(a.weightDecay >= 0.f))
    return fail(Status::InvalidArgument, "adam_step: lr, eps and weightDecay must be >= 0");
  if (!(a.betas[0] >= 0.f && a.betas[0] < 1.f) || !(a.betas[1] >= 0.f && a.betas[1] < 1.f))
    return fail(Status::InvalidArgument, "adam_step: betas must be in [0, 1)");
  if (n == 0) return Status::Ok;
  const double lr = widen_decimal(a.lr), b1 = widen_decimal(a.betas[0]), b2 = widen_decimal(a.betas[1]);
  const double eps = widen_decimal(a.eps), wd = widen_decimal(a.weightDecay);
  const double bc1 = 1.0 - std::pow(b1, double(step)), bc2 = 1.0 - std::pow(b2, double(step));
  AdamK k{b1, b2, eps, wd, 1.0 - lr * wd, lr / bc1, std::sqrt(bc2), wd != 0.0 && a.kind != AdamKind::AdamW,
          wd != 0.0 && a.kind == AdamKind::AdamW, a.gradScale};
  k_adam<<<blocks_for(n, 4), kThreads, 0, st>>>(param, m, v, grad, n, k);
  VXC_LAUNCH("adam_step");
  return Status::Ok;
}

Status grad_sumsq(double* out, const float* grad, int64_t n, cudaStream_t st) {
  if (n <= 0) return check(cudaMemsetAsync(out, 0, sizeof(double), st), "grad_sumsq");
  return reduce_flat(out, n, 1.0, Sq{grad}, st);
}

}  // namespace cuda
}  // namespace vx
