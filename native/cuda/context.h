// The CUDA execution context of a process: device 0, the stream of the ops that belong to no model
// (tensor uploads, losses, latent ops), a pool of streams for models (each NetCuda takes one, so two
// models train side by side; see net_cuda.h), and the precision / determinism options. probe() says
// whether a usable device is there at all.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "status.h"

namespace vx {
namespace cuda {

struct Options {
  bool tf32 = true;            // cuDNN convolutions may use TF32 tensor cores (fp32 I/O, 10-bit mantissa products)
  bool deterministic = false;  // only deterministic cuDNN algorithms (voxvae's own kernels always are)
  bool graphs = false;         // capture network forward/backward in CUDA graphs once shapes repeat (not implemented)
  bool profile = false;        // time every node's forward and backward with events (synchronises each pass)
  size_t workspace_limit = size_t(256) << 20;  // cuDNN workspace bound per convolution call
};

struct ProbeResult {
  bool ok = false;
  std::string reason;       // why not, when !ok ("no CUDA driver", "compute capability 8.0 < 9.0", ...)
  std::string device;       // e.g. "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  int driver_version = 0, runtime_version = 0;
  int cudnn_version = 0;    // 0 when built without cuDNN (direct-convolution kernels are used)
  size_t total_memory = 0;
};

// Checks driver, device, compute capability and that this binary has a kernel image for it; safe to
// call without a GPU (never aborts).
ProbeResult probe();

class Context {
 public:
  // The process-wide context, created on first use (fails cleanly when probe() would fail).
  static Status get(Context** out);
  // The shared stream: ops outside any model.
  cudaStream_t stream() const { return stream_; }
  Options& options() { return opts_; }
  Status sync(const char* what);
  // A stream for a model, from the pool (created when the pool is empty), and back. Streams are never
  // destroyed: device buffers remember the stream they were last used on (allocator.h) and may outlive
  // their model.
  Status acquire_stream(cudaStream_t* out);
  void release_stream(cudaStream_t s);
  // Makes `waiter` wait for everything queued so far on the shared stream (inputs a model reads were
  // uploaded or computed there).
  Status after_shared(cudaStream_t waiter, const char* what);

 private:
  cudaStream_t stream_ = nullptr;
  std::mutex pool_mu_;
  std::vector<cudaStream_t> pool_;
  std::vector<cudaEvent_t> events_;  // one per waiter stream would do; a small pool reused round robin
  size_t next_event_ = 0;
  Options opts_;
};

// Minimum compute capability (major*10+minor) this binary was built for (from CMake).
#ifndef VOXVAE_CUDA_MIN_CC
#define VOXVAE_CUDA_MIN_CC 90
#endif

}  // namespace cuda
}  // namespace vx
