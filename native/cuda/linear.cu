// CUDA twin of native/core/linear.h on a small tiled GEMM with a deterministic split over K (partial
// products summed in a fixed order), since a VAE's linear layers are long in K (the flattened
// encoder output) and short in M, N. No cuBLAS: the toolkit on CI machines does not ship it.
#include "kernels.h"
#include "reduce.cuh"

namespace vx {
namespace cuda {

namespace {

constexpr int kTile = 16;

// part[z][m][n] = sum over k in split z of A(m, k) B(k, n).
__global__ void k_gemm_part(float* part, const float* A, const float* B, int M, int N, int K, int lda, int ldb, bool ta, bool tb,
                            int ksplit) {
  __shared__ float As[kTile][kTile + 1], Bs[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m = blockIdx.y * kTile + ty, n = blockIdx.x * kTile + tx;
  const int k0 = blockIdx.z * ksplit, k1 = min(K, k0 + ksplit);
  float acc = 0.f;
  for (int kt = k0; kt < k1; kt += kTile) {
    const int ka = kt + tx, kb = kt + ty;
    const int am = blockIdx.y * kTile + ty, bn = blockIdx.x * kTile + tx;
    As[ty][tx] = (am < M && ka < k1) ? (ta ? A[int64_t(ka) * lda + am] : A[int64_t(am) * lda + ka]) : 0.f;
    Bs[ty][tx] = (bn < N && kb < k1) ? (tb ? B[int64_t(bn) * ldb + kb] : B[int64_t(kb) * ldb + bn]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (m < M && n < N) part[(int64_t(blockIdx.z) * M + m) * N + n] = acc;
}

__global__ void k_gemm_final(float* C, const float* part, const float* bias, int M, int N, int splits, bool accumulate) {
  VXC_GRID_LOOP(i, int64_t(M) * N) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += part[int64_t(z) * M * N + i];
    if (bias) s += bias[i % N];
    C[i] = accumulate ? C[i] + s : s;
  }
}

Status gemm(float* C, const float* A, const float* B, const float* bias, int M, int N, int K, int lda, int ldb, bool ta, bool tb,
            bool accumulate, cudaStream_t st) {
  // Enough K-splits to fill the GPU when M x N is small; a fixed function of the shape.
  const int64_t tiles = int64_t((M + kTile - 1) / kTile) * ((N + kTile - 1) / kTile);
  int splits = int(std::min<int64_t>(std::max<int64_t>(1, 264 / tiles), std::max(1, K / 256)));
  if (splits > 64) splits = 64;
  const int ksplit = ((K + splits - 1) / splits + kTile - 1) / kTile * kTile;
  splits = (K + ksplit - 1) / ksplit;
  Scratch sc(st);
  void* part = nullptr;
  VX_TRY(sc.get(sizeof(float) * size_t(splits) * size_t(M) * size_t(N), &part));
  dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile), unsigned(splits));
  k_gemm_part<<<grid, dim3(kTile, kTile), 0, st>>>(static_cast<float*>(part), A, B, M, N, K, lda, ldb, ta, tb, ksplit);
  k_gemm_final<<<blocks_for(int64_t(M) * N), kThreads, 0, st>>>(C, static_cast<float*>(part), bias, M, N, splits, accumulate);
  VXC_LAUNCH("gemm");
  return Status::Ok;
}

struct Val {
  const float* v;
  __device__ double operator()(int, int64_t k) const { return double(v[k]); }
};
struct AddF {
  float* out;
  __device__ void operator()(int ch, double v) const { out[ch] += float(v); }
};

Status check(int n, int in, int out) {
  if (n < 1 || in < 1 || out < 1) return fail(Status::InvalidArgument, "linear: n=%d in=%d out=%d must be >= 1", n, in, out);
  return Status::Ok;
}

}  // namespace

Status linear_forward(float* y, const float* x, const float* w, const float* b, int n, int in, int out, cudaStream_t st) {
  VX_TRY(check(n, in, out));
  return gemm(y, x, w, b, n, out, in, in, in, false, true, false, st);
}

Status linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int n, int in, int out,
                       cudaStream_t st) {
  VX_TRY(check(n, in, out));
  if (dx) VX_TRY(gemm(dx, dy, w, nullptr, n, in, out, out, in, false, false, false, st));
  if (dw) VX_TRY(gemm(dw, dy, x, nullptr, out, in, n, out, in, true, false, true, st));
  if (db) VX_TRY(reduce_channels<double>(n, out, 1, Val{dy}, AddF{db}, st));
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
