// Caching device allocator, scratch and pinned staging (see allocator.h).
#include "allocator.h"

#include <cuda_runtime.h>

#include <cstring>

#include "cuda_check.h"

namespace vx {
namespace cuda {

DeviceAllocator& DeviceAllocator::get() {
  static DeviceAllocator* a = new DeviceAllocator();  // never destroyed: blocks may outlive static teardown
  return *a;
}

// 512-byte granularity below 1 MiB, 2 MiB above: few size classes, bounded waste.
size_t DeviceAllocator::round(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes < (size_t(1) << 20) ? 512 : (size_t(2) << 20);
  return (bytes + g - 1) / g * g;
}

Status DeviceAllocator::alloc(void** p, size_t bytes, cudaStream_t stream) {
  const size_t size = round(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  st_.requests++;
  // Best fit among the blocks this stream may take now, never one more than twice the request (keeps
  // big blocks for big tensors): its own stream's at once, another's once its free event completed.
  for (auto it = free_.lower_bound(size); it != free_.end() && it->first <= size * 2; ++it) {
    const Cached& c = it->second;
    if (c.stream != stream) {
      const cudaError_t q = cudaEventQuery(c.done);
      if (q != cudaSuccess) {
        if (q == cudaErrorNotReady) cudaGetLastError();  // not an error: still in use there
        continue;
      }
    }
    *p = c.ptr;
    live_[c.ptr] = it->first;
    st_.cached -= it->first;
    st_.in_use += it->first;
    free_.erase(it);
    if (st_.in_use > st_.peak) st_.peak = st_.in_use;
    return Status::Ok;
  }
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, size);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    cudaDeviceSynchronize();  // every cached block is idle after this
    while (!free_.empty()) {
      release_block(free_.begin()->second.ptr);
      st_.cached -= free_.begin()->first;
      free_.erase(free_.begin());
    }
    e = cudaMalloc(&ptr, size);
  }
  st_.device_mallocs++;
  if (e != cudaSuccess) {
    check(e, "cudaMalloc");
    return fail(e == cudaErrorMemoryAllocation ? Status::OutOfMemory : Status::Internal,
                "CUDA out of memory: cannot allocate %.1f MiB (%.1f MiB in use by voxvae); free tensors or retry with a smaller batch",
                double(size) / 1048576.0, double(st_.in_use) / 1048576.0);
  }
  live_[ptr] = size;
  st_.in_use += size;
  if (st_.in_use > st_.peak) st_.peak = st_.in_use;
  *p = ptr;
  return Status::Ok;
}

void DeviceAllocator::free(void* p, cudaStream_t stream) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;
  const size_t size = it->second;
  cudaEvent_t& ev = events_[p];
  if (!ev && cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) ev = nullptr;
  if (!ev || cudaEventRecord(ev, stream) != cudaSuccess) {
    // No event (a failed device): the block cannot be proven idle for another stream; give it back
    // to the driver once the device is done.
    cudaGetLastError();
    cudaDeviceSynchronize();
    release_block(p);
    live_.erase(it);
    st_.in_use -= size;
    return;
  }
  live_.erase(it);
  st_.in_use -= size;
  free_.emplace(size, Cached{p, stream, ev});
  st_.cached += size;
}

void DeviceAllocator::release_block(void* p) {
  auto e = events_.find(p);
  if (e != events_.end()) {
    if (e->second) cudaEventDestroy(e->second);
    events_.erase(e);
  }
  cudaFree(p);
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  cudaDeviceSynchronize();  // blocks in the cache may still be read by queued kernels
  for (auto& f : free_) {
    release_block(f.second.ptr);
    st_.cached -= f.first;
  }
  free_.clear();
}

AllocStats DeviceAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

DeviceBuffer::~DeviceBuffer() { DeviceAllocator::get().free(ptr, stream); }

Status make_buffer(int64_t count, DeviceBufferPtr* out, cudaStream_t stream) {
  if (count < 0) return fail(Status::InvalidArgument, "device buffer: negative size");
  auto b = std::make_shared<DeviceBuffer>();
  void* p = nullptr;
  VX_TRY(DeviceAllocator::get().alloc(&p, size_t(count) * sizeof(float), stream));
  b->ptr = static_cast<float*>(p);
  b->count = count;
  b->stream = stream;
  *out = std::move(b);
  return Status::Ok;
}

Scratch::~Scratch() {
  for (void* p : blocks_) DeviceAllocator::get().free(p, stream_);
}
Status Scratch::get(size_t bytes, void** p) {
  VX_TRY(DeviceAllocator::get().alloc(p, bytes, stream_));
  blocks_.push_back(*p);
  return Status::Ok;
}

PinnedPool& PinnedPool::get() {
  static PinnedPool* p = new PinnedPool();
  return *p;
}

Status PinnedPool::acquire(size_t bytes, Block** out) {
  for (auto& b : blocks_) {
    if (b->bytes < bytes) continue;
    if (cudaEventQuery(static_cast<cudaEvent_t>(b->event)) != cudaSuccess) continue;
    *out = b.get();
    return Status::Ok;
  }
  cudaGetLastError();  // cudaEventQuery's cudaErrorNotReady is not an error
  auto b = std::make_unique<Block>();
  size_t size = size_t(1) << 20;
  while (size < bytes) size <<= 1;
  VXC_CUDA(cudaHostAlloc(&b->host, size, cudaHostAllocDefault));
  b->bytes = size;
  cudaEvent_t ev;
  VXC_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  b->event = ev;
  blocks_.push_back(std::move(b));
  *out = blocks_.back().get();
  return Status::Ok;
}

Status PinnedPool::upload(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return Status::Ok;
  std::lock_guard<std::mutex> lock(mu_);
  Block* b = nullptr;
  VX_TRY(acquire(bytes, &b));
  std::memcpy(b->host, src, bytes);
  auto st = static_cast<cudaStream_t>(stream);
  VXC_CUDA(cudaMemcpyAsync(dst, b->host, bytes, cudaMemcpyHostToDevice, st));
  VXC_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(b->event), st));
  return Status::Ok;
}

Status PinnedPool::download(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return Status::Ok;
  std::lock_guard<std::mutex> lock(mu_);
  Block* b = nullptr;
  VX_TRY(acquire(bytes, &b));
  auto st = static_cast<cudaStream_t>(stream);
  VXC_CUDA(cudaMemcpyAsync(b->host, src, bytes, cudaMemcpyDeviceToHost, st));
  VXC_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(b->event), st));
  VXC_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(b->event)));
  std::memcpy(dst, b->host, bytes);
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
