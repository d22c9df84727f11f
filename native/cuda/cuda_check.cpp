// CUDA error classification (see cuda_check.h).
#include "cuda_check.h"

namespace vx {
namespace cuda {

namespace {
thread_local ErrorKind g_kind = ErrorKind::None;

ErrorKind classify(cudaError_t e) {
  switch (e) {
    case cudaErrorMemoryAllocation: return ErrorKind::OutOfMemory;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorDevicesUnavailable: return ErrorKind::NoDevice;
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorUnknown: return ErrorKind::DeviceLost;
    default: return ErrorKind::Other;
  }
}
}  // namespace

ErrorKind last_error_kind() { return g_kind; }
void clear_error_kind() { g_kind = ErrorKind::None; }

Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok;
  const ErrorKind k = classify(e);
  g_kind = k;
  if (k == ErrorKind::OutOfMemory) {
    cudaGetLastError();  // not sticky: clear it so the process can retry
    return fail(Status::OutOfMemory, "CUDA out of memory in %s: free tensors or use a smaller batch", what);
  }
  if (k != ErrorKind::DeviceLost) cudaGetLastError();
  return fail(k == ErrorKind::NoDevice ? Status::Unsupported : Status::Internal, "CUDA error %s (%s) in %s%s",
              cudaGetErrorName(e), cudaGetErrorString(e), what,
              k == ErrorKind::DeviceLost ? ": the device context is lost; the CPU backend still works" : "");
}

}  // namespace cuda
}  // namespace vx
