// CUDA twins of native/core/rng.h fills and of the reparameterization in loss.h.
#include "kernels.h"
#include "common.cuh"
#include "cuda_check.h"
#include "rng_device.cuh"

namespace vx {
namespace cuda {

namespace {
__global__ void k_normal(float* out, int64_t n, uint64_t seed, uint64_t step, uint64_t off) {
  VXC_GRID_LOOP(i, n) out[i] = philox_normal_dev(seed, step, off + uint64_t(i));
}
__global__ void k_uniform(float* out, int64_t n, uint64_t seed, uint64_t step, uint64_t off) {
  VXC_GRID_LOOP(i, n) out[i] = philox_uniform_dev(seed, step, off + uint64_t(i));
}
__global__ void k_reparam_f(float* z, float* eps, const float* mu, const float* lv, int64_t n, int mode, uint64_t seed,
                            uint64_t step) {
  VXC_GRID_LOOP(i, n) {
    const float e = mode == 0 ? philox_normal_dev(seed, step, uint64_t(i)) : (mode == 1 ? 0.f : 1.f);
    z[i] = mode == 1 ? mu[i] : mu[i] + expf(0.5f * lv[i]) * e;
    if (eps) eps[i] = e;
  }
}
__global__ void k_reparam_b(float* dmu, float* dlv, const float* dz, const float* eps, const float* lv, int64_t n) {
  VXC_GRID_LOOP(i, n) {
    if (dmu) dmu[i] += dz[i];
    if (dlv) dlv[i] += dz[i] * eps[i] * 0.5f * expf(0.5f * lv[i]);
  }
}
}  // namespace

Status philox_normal_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset, cudaStream_t st) {
  if (count <= 0) return Status::Ok;
  k_normal<<<blocks_for(count), kThreads, 0, st>>>(out, count, seed, step, offset);
  VXC_LAUNCH("philox_normal_fill");
  return Status::Ok;
}
Status philox_uniform_fill(float* out, int64_t count, uint64_t seed, uint64_t step, uint64_t offset, cudaStream_t st) {
  if (count <= 0) return Status::Ok;
  k_uniform<<<blocks_for(count), kThreads, 0, st>>>(out, count, seed, step, offset);
  VXC_LAUNCH("philox_uniform_fill");
  return Status::Ok;
}

Status reparameterize_forward(float* z, float* eps, const float* mu, const float* logvar, int n, int l, LatentMode mode,
                              uint64_t seed, uint64_t step, cudaStream_t st) {
  if (!z || !mu || !logvar) return fail(Status::InvalidArgument, "reparameterize_forward: null z, mu or logvar");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "reparameterize_forward: n=%d l=%d must be >= 1", n, l);
  const int m = int(mode);
  if (m < 0 || m > 2) return fail(Status::InvalidArgument, "reparameterize_forward: unknown mode %d", m);
  const int64_t count = int64_t(n) * l;
  k_reparam_f<<<blocks_for(count), kThreads, 0, st>>>(z, eps, mu, logvar, count, m, seed, step);
  VXC_LAUNCH("reparameterize_forward");
  return Status::Ok;
}

Status reparameterize_backward(float* dmu, float* dlogvar, const float* dz, const float* eps, const float* logvar, int n, int l,
                               cudaStream_t st) {
  if (!dz) return fail(Status::InvalidArgument, "reparameterize_backward: null dz");
  if (n < 1 || l < 1) return fail(Status::InvalidArgument, "reparameterize_backward: n=%d l=%d must be >= 1", n, l);
  if (dlogvar && (!eps || !logvar)) return fail(Status::InvalidArgument, "reparameterize_backward: dlogvar needs eps and logvar");
  const int64_t count = int64_t(n) * l;
  k_reparam_b<<<blocks_for(count), kThreads, 0, st>>>(dmu, dlogvar, dz, eps, logvar, count);
  VXC_LAUNCH("reparameterize_backward");
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
