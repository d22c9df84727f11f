// Host-side CUDA error handling for native/cuda: every CUDA runtime failure becomes a vx::Status with
// a message in vx::last_error(), and is classified so that the N-API layer can tell "out of memory"
// (retry with a smaller batch) from "the device is gone" (fall back to the CPU) from a plain bug.
#pragma once
#include <cuda_runtime.h>

#include "status.h"

namespace vx {
namespace cuda {

enum class ErrorKind : int { None = 0, OutOfMemory = 1, DeviceLost = 2, NoDevice = 3, Other = 4 };

// Kind of the last CUDA failure recorded on this thread (reset by clear_error_kind()).
ErrorKind last_error_kind();
void clear_error_kind();

// Converts a CUDA error into a Status (Ok for cudaSuccess), recording the kind and a message naming
// `what`. Sticky errors (illegal address, launch failure, ECC, ...) are classified DeviceLost.
Status check(cudaError_t e, const char* what);

}  // namespace cuda
}  // namespace vx

#define VXC_CUDA(expr) VX_TRY(::vx::cuda::check((expr), #expr))
// After a kernel launch: picks up launch-configuration errors without synchronising.
#define VXC_LAUNCH(what) VX_TRY(::vx::cuda::check(cudaGetLastError(), what))
