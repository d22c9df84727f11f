// Process context and device probe (see context.h).
#include "context.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "cuda_check.h"
#include "cudnn_conv.h"
#include "kernels.h"

namespace vx {
namespace cuda {

ProbeResult probe() {
  ProbeResult r;
  cudaRuntimeGetVersion(&r.runtime_version);
  cudaError_t e = cudaDriverGetVersion(&r.driver_version);
  if (e != cudaSuccess || r.driver_version == 0) {
    cudaGetLastError();
    r.reason = "no CUDA driver (libcuda.so.1 not found or not loadable)";
    return r;
  }
  if (r.driver_version < r.runtime_version) {
    char b[160];
    std::snprintf(b, sizeof b, "the CUDA driver supports CUDA %d.%d, this binary needs %d.%d: update the NVIDIA driver",
                  r.driver_version / 1000, r.driver_version % 1000 / 10, r.runtime_version / 1000, r.runtime_version % 1000 / 10);
    r.reason = b;
    return r;
  }
  int n = 0;
  e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    r.reason = std::string("no CUDA device visible (") + (e == cudaSuccess ? "count 0" : cudaGetErrorString(e)) + ")";
    cudaGetLastError();
    return r;
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    cudaGetLastError();
    r.reason = "cannot read the properties of device 0";
    return r;
  }
  r.device = p.name;
  r.cc_major = p.major;
  r.cc_minor = p.minor;
  r.total_memory = p.totalGlobalMem;
  r.cudnn_version = cudnn_runtime_version();
  if (p.major * 10 + p.minor < VOXVAE_CUDA_MIN_CC) {
    char b[200];
    std::snprintf(b, sizeof b, "%s has compute capability %d.%d; this build targets >= %d.%d (rebuild with CMAKE_CUDA_ARCHITECTURES for it)",
                  p.name, p.major, p.minor, VOXVAE_CUDA_MIN_CC / 10, VOXVAE_CUDA_MIN_CC % 10);
    r.reason = b;
    return r;
  }
  if (!kernels_loadable()) {
    cudaGetLastError();
    r.reason = "this binary has no kernel image for the device (rebuild for its compute capability)";
    return r;
  }
  if (cudnn_built() && r.cudnn_version == 0) {
    r.reason = "libcudnn could not be initialised (set LD_LIBRARY_PATH to cuDNN 9's lib folder)";
    return r;
  }
  r.ok = true;
  return r;
}

Status Context::get(Context** out) {
  static std::mutex mu;
  static Context* ctx = nullptr;
  static Status failed = Status::Ok;
  static std::string failed_msg;
  std::lock_guard<std::mutex> lock(mu);
  if (ctx) {
    *out = ctx;
    return Status::Ok;
  }
  if (failed != Status::Ok) return fail(failed, "%s", failed_msg.c_str());
  ProbeResult p = probe();
  if (!p.ok) {
    failed = Status::Unsupported;
    failed_msg = "CUDA backend unavailable: " + p.reason;
    return fail(failed, "%s", failed_msg.c_str());
  }
  cudaError_t e = cudaSetDevice(0);
  cudaStream_t shared = nullptr;
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&shared, cudaStreamNonBlocking);
  if (e != cudaSuccess) {  // the probe passed but the device cannot be used: remember why, like a failed probe
    cudaGetLastError();
    failed = Status::Unsupported;
    failed_msg = std::string("CUDA backend unavailable: cannot set up device 0 (") + cudaGetErrorString(e) + ")";
    return fail(failed, "%s", failed_msg.c_str());
  }
  auto* c = new Context();
  c->stream_ = shared;
  if (const char* v = std::getenv("VOXVAE_CUDA_TF32")) c->opts_.tf32 = v[0] != '0';
  if (const char* v = std::getenv("VOXVAE_CUDA_DETERMINISTIC")) c->opts_.deterministic = v[0] == '1';
  if (const char* v = std::getenv("VOXVAE_CUDA_GRAPHS")) c->opts_.graphs = v[0] == '1';
  if (const char* v = std::getenv("VOXVAE_CUDA_PROFILE")) c->opts_.profile = v[0] == '1';
  ctx = c;
  *out = c;
  return Status::Ok;
}

Status Context::sync(const char* what) { return check(cudaStreamSynchronize(stream_), what); }

Status Context::acquire_stream(cudaStream_t* out) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (!pool_.empty()) {
    *out = pool_.back();
    pool_.pop_back();
    return Status::Ok;
  }
  VXC_CUDA(cudaStreamCreateWithFlags(out, cudaStreamNonBlocking));
  return Status::Ok;
}

void Context::release_stream(cudaStream_t s) {
  if (!s) return;
  std::lock_guard<std::mutex> lock(pool_mu_);
  pool_.push_back(s);
}

Status Context::after_shared(cudaStream_t waiter, const char* what) {
  if (waiter == stream_) return Status::Ok;
  cudaEvent_t ev;
  {
    // An event may be re-recorded as soon as cudaStreamWaitEvent has captured its current state.
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (events_.size() < 8) {
      VXC_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      events_.push_back(ev);
    }
    ev = events_[next_event_++ % events_.size()];
    VX_TRY(check(cudaEventRecord(ev, stream_), what));
    VX_TRY(check(cudaStreamWaitEvent(waiter, ev, 0), what));
  }
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
