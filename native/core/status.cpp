// Thread-local error message storage for native/core.
#include "status.h"

#include <cstdarg>
#include <cstdio>

namespace vx {

namespace {
thread_local char g_error[1024] = {0};
}

const char* status_code(Status s) {
  switch (s) {
    case Status::Ok: return "OK";
    case Status::InvalidArgument: return "EINVAL";
    case Status::ShapeMismatch: return "ESHAPE";
    case Status::OutOfMemory: return "ENOMEM";
    case Status::NotFinite: return "ENOTFINITE";
    case Status::Unsupported: return "EUNSUPPORTED";
    case Status::Busy: return "EBUSY";
    case Status::Internal: return "EINTERNAL";
  }
  return "EINTERNAL";
}

Status fail(Status s, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return s;
}

const char* last_error() { return g_error; }
void clear_error() { g_error[0] = 0; }

}  // namespace vx
