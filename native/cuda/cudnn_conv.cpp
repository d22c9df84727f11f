// cuDNN 9 implementation of cudnn_conv.h: descriptors, algorithm search once per shape, cached plans,
// bounded workspace. The only file that includes cudnn.h; compiled only when CMake finds cuDNN.
#include "cudnn_conv.h"

#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>

#include "allocator.h"
#include "context.h"
#include "cuda_check.h"

namespace vx {
namespace cuda {

namespace {

Status ck(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return Status::Ok;
  if (s == CUDNN_STATUS_ALLOC_FAILED) return fail(Status::OutOfMemory, "cuDNN out of memory in %s", what);
  return fail(Status::Internal, "cuDNN error %s in %s", cudnnGetErrorString(s), what);
}
#define VXC_DNN(expr) VX_TRY(ck((expr), #expr))

struct Plan {
  cudnnTensorDescriptor_t big = nullptr, small = nullptr;
  cudnnFilterDescriptor_t filt = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
};

struct Key {
  ConvGeom g;
  int dir, tf32, det;
  bool operator<(const Key& o) const {
    if (g < o.g) return true;
    if (o.g < g) return false;
    return std::tie(dir, tf32, det) < std::tie(o.dir, o.tf32, o.det);
  }
};

std::mutex g_mu;
cudnnHandle_t g_handle = nullptr;
std::map<Key, Plan> g_plans;

Status handle(cudaStream_t stream, cudnnHandle_t* h) {
  if (!g_handle) VXC_DNN(cudnnCreate(&g_handle));
  VXC_DNN(cudnnSetStream(g_handle, stream));
  *h = g_handle;
  return Status::Ok;
}

Status tensor_desc(cudnnTensorDescriptor_t* d, int n, int c, const int sp[3]) {
  VXC_DNN(cudnnCreateTensorDescriptor(d));
  const int dims[5] = {n, c, sp[0], sp[1], sp[2]};
  const int strides[5] = {c * sp[0] * sp[1] * sp[2], sp[0] * sp[1] * sp[2], sp[1] * sp[2], sp[2], 1};
  VXC_DNN(cudnnSetTensorNdDescriptor(*d, CUDNN_DATA_FLOAT, 5, dims, strides));
  return Status::Ok;
}

Status make_descs(const ConvGeom& g, bool tf32, Plan* p) {
  VX_TRY(tensor_desc(&p->big, g.n, g.cb, g.b));
  VX_TRY(tensor_desc(&p->small, g.n, g.ks, g.s));
  VXC_DNN(cudnnCreateFilterDescriptor(&p->filt));
  const int fd[5] = {g.ks, g.cb, g.k[0], g.k[1], g.k[2]};
  VXC_DNN(cudnnSetFilterNdDescriptor(p->filt, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, fd));
  VXC_DNN(cudnnCreateConvolutionDescriptor(&p->conv));
  const int dil[3] = {1, 1, 1};
  VXC_DNN(cudnnSetConvolutionNdDescriptor(p->conv, 3, g.pad, g.stride, dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  // DEFAULT_MATH lets cuDNN use TF32 tensor cores for fp32 data; FMA_MATH keeps full fp32 products.
  VXC_DNN(cudnnSetConvolutionMathType(p->conv, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  return Status::Ok;
}

void destroy_descs(Plan* p) {
  if (p->big) cudnnDestroyTensorDescriptor(p->big);
  if (p->small) cudnnDestroyTensorDescriptor(p->small);
  if (p->filt) cudnnDestroyFilterDescriptor(p->filt);
  if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
  *p = Plan();
}

// Picks the fastest successful result that fits the workspace (and is deterministic if asked).
template <class Perf>
bool pick(const Perf* r, int count, size_t limit, bool det, int* algo, size_t* ws) {
  for (int i = 0; i < count; ++i) {  // cuDNN returns them sorted by time
    if (r[i].status != CUDNN_STATUS_SUCCESS || r[i].memory > limit) continue;
    if (det && r[i].determinism != CUDNN_DETERMINISTIC) continue;
    *algo = int(r[i].algo);
    *ws = r[i].memory;
    return true;
  }
  return false;
}

Status find(Context& ctx, cudaStream_t stream, cudnnHandle_t h, ConvDir dir, const ConvGeom& g, Plan* p, const float* a,
            const float* b) {
  Scratch scratch(stream);
  // The search writes its output: give it a scratch one so that += outputs (dW) are not clobbered.
  const size_t out_count = dir == ConvDir::BigToSmall   ? size_t(g.n) * g.ks * g.s[0] * g.s[1] * g.s[2]
                           : dir == ConvDir::SmallToBig ? size_t(g.n) * g.cb * g.b[0] * g.b[1] * g.b[2]
                                                        : size_t(g.ks) * g.cb * g.k[0] * g.k[1] * g.k[2];
  void* out = nullptr;
  VX_TRY(scratch.get(out_count * sizeof(float), &out));
  size_t limit = ctx.options().workspace_limit;
  void* ws = nullptr;
  while (limit > 0 && scratch.get(limit, &ws) != Status::Ok) limit /= 2;  // bounded by what is free
  if (!ws) limit = 0;
  const bool det = ctx.options().deterministic;
  constexpr int kMax = 16;
  int got = 0;
  bool ok = false;
  if (dir == ConvDir::BigToSmall) {
    cudnnConvolutionFwdAlgoPerf_t r[kMax];
    VXC_DNN(cudnnFindConvolutionForwardAlgorithmEx(h, p->big, a, p->filt, b, p->conv, p->small, out, kMax, &got, r, ws, limit));
    ok = pick(r, got, limit, det, &p->algo, &p->workspace);
  } else if (dir == ConvDir::SmallToBig) {
    cudnnConvolutionBwdDataAlgoPerf_t r[kMax];
    VXC_DNN(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p->filt, b, p->small, a, p->conv, p->big, out, kMax, &got, r, ws, limit));
    ok = pick(r, got, limit, det, &p->algo, &p->workspace);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t r[kMax];
    VXC_DNN(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p->big, a, p->small, b, p->conv, p->filt, out, kMax, &got, r, ws, limit));
    ok = pick(r, got, limit, det, &p->algo, &p->workspace);
  }
  if (!ok)
    return fail(Status::Unsupported, "cuDNN found no %salgorithm for conv direction %d within a %.0f MiB workspace",
                det ? "deterministic " : "", int(dir), double(limit) / 1048576.0);
  return Status::Ok;
}

}  // namespace

bool cudnn_built() { return true; }

int cudnn_runtime_version() { return int(cudnnGetVersion()); }

int cudnn_plan_count() {
  std::lock_guard<std::mutex> lock(g_mu);
  return int(g_plans.size());
}

Status cudnn_conv(Context& ctx, cudaStream_t stream, ConvDir dir, const ConvGeom& g, float* out, const float* a,
                  const float* b) {
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h;
  VX_TRY(handle(stream, &h));
  const Key key{g, int(dir), ctx.options().tf32 ? 1 : 0, ctx.options().deterministic ? 1 : 0};
  auto it = g_plans.find(key);
  if (it == g_plans.end()) {
    Plan p;
    Status st = make_descs(g, ctx.options().tf32, &p);
    if (st == Status::Ok) st = find(ctx, stream, h, dir, g, &p, a, b);
    if (st != Status::Ok) {
      destroy_descs(&p);  // a failed search (e.g. out of memory) may be retried: do not leak descriptors
      return st;
    }
    it = g_plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  Scratch scratch(stream);
  void* ws = nullptr;
  if (p.workspace) VX_TRY(scratch.get(p.workspace, &ws));
  const float one = 1.f, zero = 0.f;
  switch (dir) {
    case ConvDir::BigToSmall:
      VXC_DNN(cudnnConvolutionForward(h, &one, p.big, a, p.filt, b, p.conv, cudnnConvolutionFwdAlgo_t(p.algo), ws,
                                      p.workspace, &zero, p.small, out));
      break;
    case ConvDir::SmallToBig:
      VXC_DNN(cudnnConvolutionBackwardData(h, &one, p.filt, b, p.small, a, p.conv, cudnnConvolutionBwdDataAlgo_t(p.algo), ws,
                                           p.workspace, &zero, p.big, out));
      break;
    case ConvDir::FilterGrad:
      VXC_DNN(cudnnConvolutionBackwardFilter(h, &one, p.big, a, p.small, b, p.conv, cudnnConvolutionBwdFilterAlgo_t(p.algo),
                                             ws, p.workspace, &one, p.filt, out));
      break;
  }
  return Status::Ok;
}

}  // namespace cuda
}  // namespace vx
