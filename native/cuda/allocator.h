// Caching device allocator and pinned host staging buffers for native/cuda.
// After the first steps of a training run every request is served from the cache, so a steady-state
// step calls cudaMalloc zero times. Blocks are reused in stream order (voxvae issues all work of a
// process on one stream), so a block freed while kernels that read it are still queued is safe to hand
// out again to later work on that stream. On cudaMalloc failure the cache is released and the request
// retried once before OutOfMemory is returned (with in-use / cached figures in the message).
#pragma once
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
  Status alloc(void** p, size_t bytes);
  void free(void* p);
  void empty_cache();
  AllocStats stats();
  // While holding, freed blocks are parked instead of cached: a CUDA graph being captured keeps its
  // temporaries' addresses (its replays write them) until the graph is destroyed.
  void begin_hold();
  std::vector<void*> end_hold();
  void release_held(const std::vector<void*>& blocks);

 private:
  static size_t round(size_t bytes);
  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // size -> block
  std::map<void*, size_t> live_;       // block -> size
  bool holding_ = false;
  std::vector<void*> held_;
  AllocStats st_;
};

// A float buffer on the device, returned to the cache when the last owner lets go.
struct DeviceBuffer {
  float* ptr = nullptr;
  int64_t count = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();
};
using DeviceBufferPtr = std::shared_ptr<DeviceBuffer>;
Status make_buffer(int64_t count, DeviceBufferPtr* out);

// Temporary device memory for one call (partial sums, cuDNN workspace), freed at scope exit.
class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Status get(size_t bytes, void** p);

 private:
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
