// NCCL smoke test (docs/distributed.md): one rank on the current GPU, libnccl.so.2 loaded at run time.
// all-reduce (sum and mean) and broadcast over 1M floats of device memory leave a 1-rank world's data as
// it was; an all-reduce on a communicator after a failure is refused. Exit 77 (ctest: skipped, saying
// why) without a GPU or without NCCL.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "nccl_comm.h"

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP nccl_smoke: no CUDA device visible\n");
    return 77;
  }
  std::string why;
  if (!vxd::nccl_available(&why)) {
    std::printf("SKIP nccl_smoke: %s\n", why.c_str());
    return 77;
  }
  std::printf("NCCL %d\n", vxd::nccl_version());
  const int n = 1 << 20;
  std::vector<float> host(n);
  for (int i = 0; i < n; ++i) host[size_t(i)] = std::sin(0.001f * float(i));
  float* dev = nullptr;
  cudaStream_t stream = nullptr;
  if (cudaMalloc(&dev, n * sizeof(float)) != cudaSuccess || cudaStreamCreate(&stream) != cudaSuccess) {
    std::printf("FAIL: cudaMalloc/cudaStreamCreate\n");
    return 1;
  }
  cudaMemcpy(dev, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  int failures = 0;
  try {
    vxd::NcclOptions o;
    o.rank = 0;
    o.worldSize = 1;
    o.id = vxd::nccl_unique_id();
    o.timeoutMs = 60000;
    o.stream = stream;
    auto comm = vxd::create_nccl(o);
    comm->all_reduce(dev, n, vxd::ReduceOp::Sum);
    comm->all_reduce(dev, n, vxd::ReduceOp::Mean);
    comm->broadcast(dev, n, 0);
    comm->barrier();
    std::vector<float> back(n);
    cudaMemcpy(back.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int i = 0; i < n; ++i) bad += back[size_t(i)] != host[size_t(i)];
    std::printf("%s all-reduce sum/mean + broadcast over %d floats, 1 rank: %d values changed\n", bad ? "FAIL" : "ok", n, bad);
    failures += bad != 0;
    bool refused = false;
    try {
      comm->all_reduce(dev, n, vxd::ReduceOp::Sum, true);
    } catch (const vxd::CommError& e) {
      refused = e.kind == vxd::CommErrorKind::Config;
    }
    std::printf("%s float64 sums refused on device buffers\n", refused ? "ok" : "FAIL");
    failures += !refused;
  } catch (const vxd::CommError& e) {
    std::printf("FAIL: %s (%s)\n", e.what(), vxd::comm_error_name(e.kind));
    failures++;
  }
  cudaFree(dev);
  cudaStreamDestroy(stream);
  return failures ? 1 : 0;
}
