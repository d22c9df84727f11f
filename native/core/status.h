// Status codes and the thread-local last-error message of native/core.
// Core code never throws across its API and never aborts: every fallible call returns a Status and,
// when it is not Ok, leaves a human-readable message in vx::last_error() (per thread).
#pragma once
#include <cstdint>

namespace vx {

enum class Status : int32_t {
  Ok = 0,
  InvalidArgument = 1,  // a parameter or shape is out of range or inconsistent
  ShapeMismatch = 2,    // buffers or tensors do not agree in size
  OutOfMemory = 3,      // an allocation failed
  NotFinite = 4,        // NaN or Inf where a finite value is required
  Unsupported = 5,      // valid request that this build cannot do
  Busy = 6,             // the object is in use by another call
  Internal = 7,         // a bug: an invariant was violated
};

// Stable upper-case names ("EINVAL", ...) used as JS error codes.
const char* status_code(Status s);

// Records a printf-style message for the calling thread and returns s, so that
// `return fail(Status::InvalidArgument, "conv3d: kernel %d < 1", k);` reads naturally.
Status fail(Status s, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char* last_error();
void clear_error();

}  // namespace vx

#define VX_TRY(expr)                                  \
  do {                                                \
    ::vx::Status vx_try_s_ = (expr);                  \
    if (vx_try_s_ != ::vx::Status::Ok) return vx_try_s_; \
  } while (0)
