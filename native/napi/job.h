// The promise-returning job of both addons (CPU: native/napi, CUDA: native/cuda/napi), over an engine
// policy: work() runs on a libuv worker thread (no JS access), then the engine settles it there (CUDA
// synchronises the stream the work was queued on, so device errors surface on the promise that caused
// them); done(env) builds the resolution value on the JS thread; finally() always runs on the JS thread
// first. A failure rejects with a JS Error whose `code` the engine chooses (options.h make_error).
//
// Engine: struct { using Stream = ...; static void begin(); static const char* code_for(vx::Status);
//                  static vx::Status settle(Stream); }
#pragma once
#include <napi.h>

#include <atomic>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <utility>

#include "options.h"
#include "status.h"

namespace vxn {

// Promise jobs queued and not yet settled, per addon: settings that kernels read while they run
// (thread count, ISA) refuse to change while it is not zero.
inline std::atomic<int>& jobs_in_flight() {
  static std::atomic<int> n{0};
  return n;
}

template <class Engine>
class EngineJob : public Napi::AsyncWorker {
 public:
  using Work = std::function<vx::Status()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  using Finally = std::function<void()>;
  using Stream = typename Engine::Stream;

  static Napi::Promise Start(Napi::Env env, Work work, Done done, Finally fin = nullptr, Stream stream = Stream()) {
    auto* job = new EngineJob(env, std::move(work), std::move(done), std::move(fin), stream);
    Napi::Promise p = job->deferred_.Promise();
    jobs_in_flight()++;
    job->Queue();
    return p;
  }

 protected:
  void Execute() override {
    Engine::begin();
    try {
      fail(work_(), nullptr);
    } catch (const std::bad_alloc&) {
      fail(vx::Status::OutOfMemory, "out of memory");
    } catch (const std::exception& e) {
      fail(vx::Status::Internal, e.what());
    } catch (...) {
      fail(vx::Status::Internal, "unknown native exception");
    }
    // Settle even when the work failed part way: work it queued may still read buffers that this job's
    // captures keep alive, and those are freed as soon as the job is deleted.
    const vx::Status s = Engine::settle(stream_);
    if (status_ == vx::Status::Ok) fail(s, nullptr);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    jobs_in_flight()--;
    if (fin_) fin_();
    if (status_ != vx::Status::Ok) {
      deferred_.Reject(make_error(env, code_, message_).Value());
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
  EngineJob(Napi::Env env, Work work, Done done, Finally fin, Stream stream)
      : Napi::AsyncWorker(env, "voxvae"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), fin_(std::move(fin)), stream_(stream) {}
  // Records a failure (the first one wins); message null: vx::last_error().
  void fail(vx::Status s, const char* message) {
    if (s == vx::Status::Ok || status_ != vx::Status::Ok) return;
    status_ = s;
    message_ = message ? message : vx::last_error();
    code_ = Engine::code_for(s);
  }
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  Finally fin_;
  Stream stream_;
  vx::Status status_ = vx::Status::Ok;
  std::string message_;
  const char* code_ = "EINTERNAL";
};

// The CPU engine: nothing to settle; codes straight from the status.
struct CpuEngine {
  using Stream = void*;
  static void begin() {}
  static const char* code_for(vx::Status s) { return vx::status_code(s); }
  static vx::Status settle(Stream) { return vx::Status::Ok; }
};

}  // namespace vxn
