// The CUDA engine: NCCL, loaded at run time from libnccl.so.2 (no NCCL at build time; PyTorch's
// nvidia-nccl-cu13 wheel or a system NCCL at run time: set VOXVAE_NCCL to its path, else the loader's
// search path). A Communicator over device buffers, its collectives enqueued on the given CUDA stream;
// each call then waits for the stream under a watchdog (ncclCommGetAsyncError, the timeout): a dead or
// stuck peer aborts the communicator and throws CommError instead of waiting forever (PyTorch's
// NCCL watchdog, in-line). The 128-byte unique id is made by rank 0 (nccl_unique_id) and handed to every
// rank by the caller (the Gloo group's broadcast, ts/dist).
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "comm.h"

namespace vxd {

using NcclUniqueId = std::array<char, 128>;

// Whether libnccl.so.2 loads; else false and *why says what was tried.
bool nccl_available(std::string* why);
// NCCL's version (e.g. 22807 for 2.28.7), or 0 when it does not load.
int nccl_version();
// A fresh unique id (rank 0). Throws CommError(Engine) when NCCL does not load.
NcclUniqueId nccl_unique_id();

struct NcclOptions {
  int rank = 0;
  int worldSize = 1;
  NcclUniqueId id{};
  int64_t timeoutMs = 300000;
  cudaStream_t stream = nullptr;
};

// A communicator over device buffers; collectives are enqueued on stream() (set_stream: the stream of the
// model whose gradients come next, so that they follow its backward without a host synchronisation).
class NcclCommunicator : public Communicator {
 public:
  virtual void set_stream(cudaStream_t s) = 0;
  virtual cudaStream_t stream() const = 0;
};

// Joins (ncclCommInitRank on the current device; within the timeout). all_reduce/broadcast take device
// pointers; `wide` is refused (NCCL sums in the buffer's type).
std::unique_ptr<NcclCommunicator> create_nccl(const NcclOptions& o);

}  // namespace vxd
