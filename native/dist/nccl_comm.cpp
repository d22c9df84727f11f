#include "nccl_comm.h"

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace vxd {
namespace {

// NCCL's C ABI, declared here so that nothing of NCCL is needed to build (nccl.h, stable since 2.x).
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0, ncclInProgress = 7;
using ncclComm_t = struct ncclComm*;
constexpr int ncclFloat32 = 7;
constexpr int ncclSum = 0, ncclAvg = 4;
struct ncclUniqueIdAbi {
  char internal[128];
};
// ncclConfig_t as NCCL 2.14 laid it out (its first fields in every later version). NCCL copies `size`
// bytes of it over its own NCCL_CONFIG_INITIALIZER defaults and resets the fields newer than `version`,
// so declaring the 2.14 prefix with version 2.14.0 is valid for every NCCL >= 2.14.
struct ncclConfigAbi {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking, cgaClusterSize, minCTAs, maxCTAs;
  const char* netName;
};
constexpr unsigned int kNccl2_14 = 2 * 10000 + 14 * 100;  // NCCL_VERSION(2, 14, 0)
constexpr int kUndef = (int)0x80000000;  // NCCL_CONFIG_UNDEF_INT

struct Api {
  void* lib = nullptr;
  std::string error;
  ncclResult_t (*GetVersion)(int*) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueIdAbi*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueIdAbi, int) = nullptr;
  ncclResult_t (*CommInitRankConfig)(ncclComm_t*, int, ncclUniqueIdAbi, int, ncclConfigAbi*) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  const char* (*GetLastError)(ncclComm_t) = nullptr;
};

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("VOXVAE_NCCL");
    const char* name = env && *env ? env : "libnccl.so.2";
    a.lib = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!a.lib) {
      const char* e = ::dlerror();
      a.error = std::string("cannot load ") + name + " (" + (e ? e : "?") +
                "): install NCCL (e.g. the nvidia-nccl-cu13 wheel) and set VOXVAE_NCCL to its lib/libnccl.so.2, or add its folder to LD_LIBRARY_PATH";
      return;
    }
    auto sym = [&](const char* s) { return ::dlsym(a.lib, s); };
#define VX_NCCL_SYM(field, name) a.field = reinterpret_cast<decltype(a.field)>(sym(name))
    VX_NCCL_SYM(GetVersion, "ncclGetVersion");
    VX_NCCL_SYM(GetUniqueId, "ncclGetUniqueId");
    VX_NCCL_SYM(CommInitRank, "ncclCommInitRank");
    VX_NCCL_SYM(CommInitRankConfig, "ncclCommInitRankConfig");
    VX_NCCL_SYM(AllReduce, "ncclAllReduce");
    VX_NCCL_SYM(Broadcast, "ncclBroadcast");
    VX_NCCL_SYM(CommGetAsyncError, "ncclCommGetAsyncError");
    VX_NCCL_SYM(CommAbort, "ncclCommAbort");
    VX_NCCL_SYM(CommDestroy, "ncclCommDestroy");
    VX_NCCL_SYM(GetErrorString, "ncclGetErrorString");
    VX_NCCL_SYM(GetLastError, "ncclGetLastError");
#undef VX_NCCL_SYM
    if (!a.GetVersion || !a.GetUniqueId || !a.CommInitRank || !a.AllReduce || !a.Broadcast || !a.CommGetAsyncError || !a.CommAbort ||
        !a.CommDestroy || !a.GetErrorString) {
      a.error = std::string(name) + " lacks NCCL 2.x's functions (ncclCommGetAsyncError and ncclCommAbort need NCCL >= 2.4)";
      ::dlclose(a.lib);
      a.lib = nullptr;
    }
  });
  return a;
}

const Api& need() {
  const Api& a = api();
  if (!a.lib) throw CommError(CommErrorKind::Engine, a.error);
  return a;
}

std::string nccl_message(const Api& a, ncclResult_t r, ncclComm_t c) {
  std::string m = a.GetErrorString ? a.GetErrorString(r) : "NCCL error " + std::to_string(r);
  if (c && a.GetLastError) {
    const char* last = a.GetLastError(c);
    if (last && *last) m += std::string(": ") + last;
  }
  return m;
}

class NcclComm : public NcclCommunicator {
 public:
  explicit NcclComm(const NcclOptions& o) : o_(o), a_(need()) {
    if (o.worldSize < 1 || o.rank < 0 || o.rank >= o.worldSize)
      throw CommError(CommErrorKind::Config, "NCCL: rank " + std::to_string(o.rank) + " is not in [0, " + std::to_string(o.worldSize) + ")");
    ncclUniqueIdAbi id;
    std::memcpy(id.internal, o.id.data(), sizeof id.internal);
    if (a_.CommInitRankConfig) {
      // Non-blocking init, so that a rank that never joins is a timeout, not a hang.
      ncclConfigAbi cfg;
      cfg.size = sizeof cfg;
      cfg.magic = 0xcafebeef;
      cfg.version = kNccl2_14;
      cfg.blocking = 0;
      cfg.cgaClusterSize = cfg.minCTAs = cfg.maxCTAs = kUndef;
      cfg.netName = nullptr;
      ncclResult_t r = a_.CommInitRankConfig(&comm_, o.worldSize, id, o.rank, &cfg);
      if (r != ncclSuccess && r != ncclInProgress) throw CommError(CommErrorKind::Rendezvous, "NCCL init: " + nccl_message(a_, r, comm_));
      watch("NCCL init", CommErrorKind::Rendezvous, nullptr);
    } else {
      ncclResult_t r = a_.CommInitRank(&comm_, o.worldSize, id, o.rank);
      if (r != ncclSuccess) throw CommError(CommErrorKind::Rendezvous, "NCCL init: " + nccl_message(a_, r, comm_));
    }
  }
  ~NcclComm() override {
    if (comm_) (broken_ ? a_.CommAbort : a_.CommDestroy)(comm_);
  }

  int rank() const override { return o_.rank; }
  int size() const override { return o_.worldSize; }
  const char* engine() const override { return "nccl"; }
  void set_stream(cudaStream_t s) override { o_.stream = s; }
  cudaStream_t stream() const override { return o_.stream; }

  void all_reduce(float* data, int64_t n, ReduceOp op, bool wide) override {
    if (wide) throw CommError(CommErrorKind::Config, "NCCL all-reduce: float64 sums are not offered on device buffers");
    run("NCCL all-reduce", [&] { return a_.AllReduce(data, data, size_t(n), ncclFloat32, op == ReduceOp::Mean ? ncclAvg : ncclSum, comm_, o_.stream); });
  }
  void broadcast(float* data, int64_t n, int root) override {
    run("NCCL broadcast", [&] { return a_.Broadcast(data, data, size_t(n), ncclFloat32, root, comm_, o_.stream); });
  }
  void barrier(int64_t) override {
    // NCCL has no barrier: a 1-value all-reduce on a scratch device float.
    float* one = nullptr;
    if (cudaMalloc(&one, sizeof(float)) != cudaSuccess) throw CommError(CommErrorKind::Engine, "NCCL barrier: cudaMalloc failed");
    try {
      all_reduce(one, 1, ReduceOp::Sum, false);
    } catch (...) {
      cudaFree(one);
      throw;
    }
    cudaFree(one);
  }

 private:
  template <class F>
  void run(const char* what, F&& enqueue) {
    if (broken_) throw CommError(CommErrorKind::Closed, std::string(what) + ": an earlier collective of this communicator failed");
    ncclResult_t r = enqueue();
    if (r != ncclSuccess && r != ncclInProgress) {
      broken_ = true;
      throw CommError(CommErrorKind::Engine, std::string(what) + ": " + nccl_message(a_, r, comm_));
    }
    watch(what, CommErrorKind::Timeout, o_.stream);
  }

  // Waits for the stream (or, without one, for the communicator to leave ncclInProgress) while polling
  // NCCL's asynchronous error; aborts the communicator on an error or at the timeout.
  void watch(const char* what, CommErrorKind on_timeout, cudaStream_t stream) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.timeoutMs);
    for (;;) {
      ncclResult_t async = ncclSuccess;
      a_.CommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        broken_ = true;
        std::string m = nccl_message(a_, async, comm_);
        a_.CommAbort(comm_);
        comm_ = nullptr;
        throw CommError(CommErrorKind::PeerLost, std::string(what) + ": " + m + " (a peer rank failed?)");
      }
      if (stream) {
        cudaError_t q = cudaStreamQuery(stream);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) {
          broken_ = true;
          throw CommError(CommErrorKind::Engine, std::string(what) + ": CUDA " + cudaGetErrorString(q));
        }
      } else if (async == ncclSuccess) {
        return;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        broken_ = true;
        a_.CommAbort(comm_);
        comm_ = nullptr;
        throw CommError(on_timeout, std::string(what) + ": did not complete within " + std::to_string(o_.timeoutMs) + " ms (a rank hung or is out of step); the communicator was aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  NcclOptions o_;
  const Api& a_;
  ncclComm_t comm_ = nullptr;
  bool broken_ = false;
};

}  // namespace

bool nccl_available(std::string* why) {
  const Api& a = api();
  if (!a.lib && why) *why = a.error;
  return a.lib != nullptr;
}

int nccl_version() {
  const Api& a = api();
  int v = 0;
  if (a.lib) a.GetVersion(&v);
  return v;
}

NcclUniqueId nccl_unique_id() {
  const Api& a = need();
  ncclUniqueIdAbi id;
  ncclResult_t r = a.GetUniqueId(&id);
  if (r != ncclSuccess) throw CommError(CommErrorKind::Engine, "ncclGetUniqueId: " + nccl_message(a, r, nullptr));
  NcclUniqueId out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

std::unique_ptr<NcclCommunicator> create_nccl(const NcclOptions& o) { return std::make_unique<NcclComm>(o); }

}  // namespace vxd
