// Caching device allocator and pinned host staging buffers for native/cuda.
// After the first steps of a training run every request is served from the cache, so a steady-state
// step calls cudaMalloc zero times. Every block belongs to the stream it was last used on (each model
// has its own, see NetCuda; ops outside a model use the context's): freed, it goes back to the cache
// with an event recorded on that stream. The same stream may take it again at once (stream order makes
// that safe even while kernels that read it are queued); another stream only once the event has
// completed. On cudaMalloc failure the cache is released and the request retried once before
// OutOfMemory is returned (with in-use / cached figures in the message).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "status.h"

namespace vx {
namespace cuda {

struct AllocStats {
  size_t in_use = 0, cached = 0, peak = 0;
  int64_t device_mallocs = 0;  // cudaMalloc calls so far (constant in a steady-state loop)
  int64_t requests = 0;
};

class DeviceAllocator {
 public:
  static DeviceAllocator& get();
  // A block for work on `stream`.
  Status alloc(void** p, size_t bytes, cudaStream_t stream);
  // Back to the cache; `stream` is the one it was last used on (work queued there may still read it).
  void free(void* p, cudaStream_t stream);
  void empty_cache();
  AllocStats stats();

 private:
  static size_t round(size_t bytes);
  struct Cached {
    void* ptr;
    cudaStream_t stream;  // last used on
    cudaEvent_t done;     // recorded on `stream` when freed
  };
  std::mutex mu_;
  std::multimap<size_t, Cached> free_;  // size -> block
  std::map<void*, size_t> live_;        // block -> size
  std::map<void*, cudaEvent_t> events_; // block -> its event (created on first free, kept with the block)
  void release_block(void* p);
  AllocStats st_;
};

// A float buffer on the device, returned to the cache when the last owner lets go.
struct DeviceBuffer {
  float* ptr = nullptr;
  int64_t count = 0;
  cudaStream_t stream = nullptr;  // where it is used (its model's stream, or the context's)
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();
};
using DeviceBufferPtr = std::shared_ptr<DeviceBuffer>;
Status make_buffer(int64_t count, DeviceBufferPtr* out, cudaStream_t stream);

// Temporary device memory for one call (partial sums, cuDNN workspace), freed at scope exit.
class Scratch {
 public:
  explicit Scratch(cudaStream_t stream) : stream_(stream) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Status get(size_t bytes, void** p);

 private:
  cudaStream_t stream_;
  std::vector<void*> blocks_;
};

// Pinned host staging: uploads memcpy into a pinned block, then copy asynchronously; a block is reused
// once the event recorded after its copy has completed.
class PinnedPool {
 public:
  static PinnedPool& get();
  // Copies `bytes` from host src to device dst on stream (returns before the copy ends).
  Status upload(void* dst, const void* src, size_t bytes, void* stream);
  // Copies device src to host dst and waits for it.
  Status download(void* dst, const void* src, size_t bytes, void* stream);

 private:
  struct Block {
    void* host = nullptr;
    size_t bytes = 0;
    void* event = nullptr;  // cudaEvent_t
  };
  Status acquire(size_t bytes, Block** b);
  std::mutex mu_;
  std::vector<std::unique_ptr<Block>> blocks_;
};

}  // namespace cuda
}  // namespace vx
