// Host-side functions both addons export with the same code (exports.h VXN_HOST_OPS): the Philox random
// streams (the CUDA engine draws the same numbers), the CPU thread count and the CPU kernels' ISA.
#pragma once
#include <napi.h>

#include <string>

#include "gemm.h"
#include "job.h"
#include "options.h"
#include "parallel.h"
#include "rng.h"

namespace vxn {

// philoxNormal(seed, step, offset, count) / philoxUniform(...) -> Float32Array
inline Napi::Value PhiloxFill(const Napi::CallbackInfo& info, bool normal) {
  Napi::Env env = info.Env();
  uint64_t seed = arg_u64(info, 0, "seed"), step = arg_u64(info, 1, "step"), offset = arg_u64(info, 2, "offset");
  int64_t count = arg_int(info, 3, "count", 0, int64_t(1) << 31);
  Napi::Float32Array a = Napi::Float32Array::New(env, size_t(count));
  if (normal) vx::philox_normal_fill(a.Data(), count, seed, step, offset);
  else vx::philox_uniform_fill(a.Data(), count, seed, step, offset);
  return a;
}
inline Napi::Value PhiloxNormal(const Napi::CallbackInfo& info) { return PhiloxFill(info, true); }
inline Napi::Value PhiloxUniform(const Napi::CallbackInfo& info) { return PhiloxFill(info, false); }

// Kernels read the thread count and the ISA while they run: both change only between native calls.
inline void refuse_while_running(Napi::Env env, const char* what) {
  const int n = jobs_in_flight().load();
  if (n > 0)
    throw_error(env, "EBUSY", std::string(what) + ": " + std::to_string(n) + " native call(s) still running; await them first");
}

inline Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  const int n = int(arg_int(info, 0, "threads", 0, 256));
  refuse_while_running(info.Env(), "setThreads");
  vx::set_num_threads(n);
  return Napi::Number::New(info.Env(), vx::num_threads());
}
inline Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vx::num_threads()); }

// cpuIsa(): the ISA the CPU kernels run; cpuIsa(name): selects it first ('auto', 'avx512f', 'avx2', 'sse2').
inline Napi::Value CpuIsa(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) throw_error(info.Env(), "EINVAL", "isa must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    refuse_while_running(info.Env(), "setCpuIsa");
    if (!vx::cpu_select_isa(name == "auto" ? nullptr : name.c_str()))
      throw_error(info.Env(), "EUNSUPPORTED",
                  "CPU ISA '" + name + "' is not available on this machine or build (the current one is '" +
                      vx::gemm_kernel_isa() + "'); choose 'auto', 'sse2', 'avx2' or 'avx512f' where the CPU has it");
  }
  return Napi::String::New(info.Env(), vx::gemm_kernel_isa());
}

}  // namespace vxn
