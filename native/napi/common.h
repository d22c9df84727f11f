// The CPU addon's N-API layer: status -> JS error conversion, the Tensor handle and the per-environment
// constructor table. Argument/options readers (options.h), the promise job (job.h) and the export list
// (exports.h) are shared with the CUDA addon. native/napi only converts and
// schedules: all numeric work is in native/core, run on libuv worker threads that never touch JS.
#pragma once
#include <atomic>
#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "exports.h"
#include "job.h"
#include "net.h"
#include "options.h"
#include "status.h"

namespace vxn {

// Per-environment data (the addon can be loaded in several worker threads).
struct AddonData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference net_ctor;
  Napi::FunctionReference adam_ctor;
};
inline AddonData* addon_data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

inline Napi::Error status_error(Napi::Env env, vx::Status s, const std::string& msg) {
  return make_error(env, vx::status_code(s), msg);
}
inline void check_status(Napi::Env env, vx::Status s) {
  if (s != vx::Status::Ok) throw status_error(env, s, vx::last_error());
}

// The CPU addon's promise job (job.h): work on a libuv worker, resolution on the JS thread.
using Job = EngineJob<CpuEngine>;

// Tensor: a shared float buffer with a shape, handed between JS and native without copies.
class Tensor : public Napi::ObjectWrap<Tensor> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, vx::BufferPtr buf, std::vector<int64_t> shape);
  // Unwraps argument i, which must be a live Tensor (optionally of exactly `expect` values).
  static Tensor* From(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expect = -1);
  static Tensor* FromValue(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expect = -1);
  static bool IsTensor(Napi::Env env, const Napi::Value& v);

  explicit Tensor(const Napi::CallbackInfo& info);
  const vx::BufferPtr& buffer() const { return buf_; }
  int64_t length() const { return buf_ ? int64_t(buf_->size()) : 0; }
  const std::vector<int64_t>& shape() const { return shape_; }

 private:
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetLength(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value ReadInto(const Napi::CallbackInfo& info);
  Napi::Value Set(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  vx::BufferPtr buf_;
  std::vector<int64_t> shape_;
};

Napi::Function InitNet(Napi::Env env);
Napi::Function InitAdam(Napi::Env env);
// The engine functions of exports.h's VXN_ENGINE_OPS: ops.cpp, and rivera.cpp (populationKl, variancePenalty).
#define VXN_DECLARE_FN(js, fn) Napi::Value fn(const Napi::CallbackInfo& info);
VXN_ENGINE_OPS(VXN_DECLARE_FN)
#undef VXN_DECLARE_FN

}  // namespace vxn
