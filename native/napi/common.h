// Shared pieces of the N-API layer: status -> JS error conversion, argument checks, the generic
// promise-returning worker, and the per-environment constructor table. native/napi only converts and
// schedules: all numeric work is in native/core, run on libuv worker threads that never touch JS.
#pragma once
#include <atomic>
#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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

// Promise jobs queued and not yet settled, process-wide: settings that kernels read while they run
// (thread count, ISA) refuse to change while it is not zero.
inline std::atomic<int>& jobs_in_flight() {
  static std::atomic<int> n{0};
  return n;
}

// A promise-returning job: work() runs on a libuv worker thread (no JS access), then done(env)
// builds the resolution value on the JS thread; finally() always runs on the JS thread first.
class Job : public Napi::AsyncWorker {
 public:
  using Work = std::function<vx::Status()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  using Finally = std::function<void()>;

  static Napi::Promise Start(Napi::Env env, Work work, Done done, Finally fin = nullptr) {
    auto* job = new Job(env, std::move(work), std::move(done), std::move(fin));
    Napi::Promise p = job->deferred_.Promise();
    jobs_in_flight()++;
    job->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      status_ = work_();
      if (status_ != vx::Status::Ok) message_ = vx::last_error();
    } catch (const std::bad_alloc&) {
      status_ = vx::Status::OutOfMemory;
      message_ = "out of memory";
    } catch (const std::exception& e) {
      status_ = vx::Status::Internal;
      message_ = e.what();
    } catch (...) {
      status_ = vx::Status::Internal;
      message_ = "unknown native exception";
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    jobs_in_flight()--;
    if (fin_) fin_();
    if (status_ != vx::Status::Ok) {
      deferred_.Reject(status_error(env, status_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    jobs_in_flight()--;
    if (fin_) fin_();
    deferred_.Reject(e.Value());
  }

 private:
  Job(Napi::Env env, Work work, Done done, Finally fin)
      : Napi::AsyncWorker(env, "voxvae"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), fin_(std::move(fin)) {}
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  Finally fin_;
  vx::Status status_ = vx::Status::Ok;
  std::string message_;
};

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
  Napi::Value Set(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  vx::BufferPtr buf_;
  std::vector<int64_t> shape_;
};

Napi::Function InitNet(Napi::Env env);
Napi::Function InitAdam(Napi::Env env);
void InitOps(Napi::Env env, Napi::Object exports);
void InitRivera(Napi::Env env, Napi::Object exports);  // rivera.cpp

}  // namespace vxn
