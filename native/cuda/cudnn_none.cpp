// Built instead of cudnn_conv.cpp when cuDNN is not found: convolutions use the direct kernels.
#include "cudnn_conv.h"

namespace vx {
namespace cuda {

bool cudnn_built() { return false; }
int cudnn_runtime_version() { return 0; }
int cudnn_plan_count() { return 0; }
Status cudnn_conv(Context&, cudaStream_t, ConvDir, const ConvGeom&, float*, const float*, const float*) {
  return fail(Status::Unsupported, "this CUDA build has no cuDNN (configure with CUDNN_ROOT)");
}

}  // namespace cuda
}  // namespace vx
