// voxvae_dist.node: the optional distributed addon (docs/distributed.md). One JS class over a
// vxd::Communicator (Gloo for CPU ranks):
//   connect(options) -> Promise<Communicator>     rendezvous (options: GlooOptions' field names)
//   comm.allReduce(f32, 'sum' | 'mean', 'float32' | 'float64') -> Promise<void>   in place (comm.h)
//   comm.broadcast(f32, root) -> Promise<void>            in place
//   comm.barrier(timeoutMs?) -> Promise<void>;  comm.close();  comm.rank, comm.worldSize, comm.engine
// Collectives run on the communicator's own thread in the order they were called (which is the same
// on every rank, as Gloo requires); a call's Float32Array is held until it settles and must not be
// touched meanwhile. A failure rejects with an Error of code "EDIST" and `kind` (comm.h CommErrorKind).
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "../comm.h"
#include "../gloo_comm.h"

namespace {

constexpr int kDistAbi = 1;

Napi::Error dist_error(Napi::Env env, const char* kind, const std::string& msg, const char* code = "EDIST") {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("kind", Napi::String::New(env, kind));
  return e;
}
[[noreturn]] void throw_inval(Napi::Env env, const std::string& msg) { throw dist_error(env, "config", msg, "EINVAL"); }

// The communicator and the thread that runs its collectives in call order.
class Runner {
 public:
  explicit Runner(std::unique_ptr<vxd::Communicator> c) : comm_(std::move(c)), thread_([this] { loop(); }) {}
  ~Runner() { stop(); }
  vxd::Communicator& comm() { return *comm_; }
  std::future<void> post(std::function<void(vxd::Communicator&)> f) {
    auto task = std::make_shared<std::packaged_task<void()>>([this, f] { f(*comm_); });
    std::future<void> fut = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      q_.push_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }
  // Runs what is queued, then ends the thread and destroys the communicator (closing its sockets:
  // peers still in a collective see the connection close).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    comm_.reset();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopped_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::unique_ptr<vxd::Communicator> comm_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stopped_ = false;
  std::thread thread_;
};

// Waits on a libuv worker for a future (a collective on the runner's thread, or the rendezvous).
class Wait : public Napi::AsyncWorker {
 public:
  using Done = std::function<Napi::Value(Napi::Env)>;
  Wait(Napi::Env env, std::future<void> fut, Done done, std::vector<Napi::Reference<Napi::Value>> keep)
      : Napi::AsyncWorker(env, "voxvae-dist"), deferred_(Napi::Promise::Deferred::New(env)), fut_(std::move(fut)), done_(std::move(done)),
        keep_(std::move(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      fut_.get();
    } catch (const vxd::CommError& e) {
      kind_ = vxd::comm_error_name(e.kind);
      msg_ = e.what();
    } catch (const std::exception& e) {
      kind_ = "engine";
      msg_ = e.what();
    } catch (...) {
      kind_ = "engine";
      msg_ = "unknown native exception";
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (auto& r : keep_) r.Reset();
    if (kind_) {
      deferred_.Reject(dist_error(env, kind_, msg_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::future<void> fut_;
  Done done_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  const char* kind_ = nullptr;
  std::string msg_;
};

class CommWrap : public Napi::ObjectWrap<CommWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Communicator", {
      InstanceAccessor<&CommWrap::Rank>("rank"),
      InstanceAccessor<&CommWrap::WorldSize>("worldSize"),
      InstanceAccessor<&CommWrap::Engine>("engine"),
      InstanceAccessor<&CommWrap::Closed>("closed"),
      InstanceMethod<&CommWrap::AllReduce>("allReduce"),
      InstanceMethod<&CommWrap::Broadcast>("broadcast"),
      InstanceMethod<&CommWrap::Barrier>("barrier"),
      InstanceMethod<&CommWrap::Close>("close"),
    });
  }
  explicit CommWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CommWrap>(info) {}
  ~CommWrap() override { runner_.reset(); }
  void adopt(std::shared_ptr<Runner> r) { runner_ = std::move(r); }

 private:
  Runner& live(Napi::Env env, const char* what) {
    if (!runner_) throw dist_error(env, "closed", std::string(what) + ": the communicator was closed");
    return *runner_;
  }
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), live(info.Env(), "rank").comm().rank()); }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), live(info.Env(), "worldSize").comm().size()); }
  Napi::Value Engine(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), live(info.Env(), "engine").comm().engine()); }
  Napi::Value Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !runner_); }

  static Napi::Float32Array f32(const Napi::CallbackInfo& info, const char* what) {
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw_inval(info.Env(), std::string(what) + "(data): data must be a Float32Array");
    return info[0].As<Napi::Float32Array>();
  }
  Napi::Value start(Napi::Env env, std::future<void> fut, Napi::Value keep) {
    std::vector<Napi::Reference<Napi::Value>> refs;
    if (keep.IsObject()) refs.push_back(Napi::Persistent(keep));
    refs.push_back(Napi::Persistent(Value().As<Napi::Value>()));
    auto* w = new Wait(env, std::move(fut), nullptr, std::move(refs));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Runner& r = live(env, "allReduce");
    Napi::Float32Array a = f32(info, "allReduce");
    std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    if (op != "sum" && op != "mean") throw_inval(env, "allReduce(data, op): op must be 'sum' or 'mean'");
    float* p = a.Data();
    const int64_t n = int64_t(a.ElementLength());
    const vxd::ReduceOp rop = op == "sum" ? vxd::ReduceOp::Sum : vxd::ReduceOp::Mean;
    std::string prec = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "float32";
    if (prec != "float32" && prec != "float64") throw_inval(env, "allReduce(data, op, precision): precision must be 'float32' or 'float64'");
    const bool wide = prec == "float64";
    return start(env, r.post([p, n, rop, wide](vxd::Communicator& c) { c.all_reduce(p, n, rop, wide); }), a);
  }
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Runner& r = live(env, "broadcast");
    Napi::Float32Array a = f32(info, "broadcast");
    if (info.Length() < 2 || !info[1].IsNumber()) throw_inval(env, "broadcast(data, root): root must be a rank number");
    const double root = info[1].As<Napi::Number>().DoubleValue();
    if (root != double(int(root)) || root < 0 || root >= r.comm().size())
      throw_inval(env, "broadcast(data, root): root " + std::to_string(root) + " is not a rank of world size " + std::to_string(r.comm().size()));
    float* p = a.Data();
    const int64_t n = int64_t(a.ElementLength());
    const int rt = int(root);
    return start(env, r.post([p, n, rt](vxd::Communicator& c) { c.broadcast(p, n, rt); }), a);
  }
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Runner& r = live(env, "barrier");
    int64_t t = -1;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      const double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d <= 1e12) || d != double(int64_t(d))) throw_inval(env, "barrier(timeoutMs): timeoutMs must be a positive integer");
      t = int64_t(d);
    }
    return start(env, r.post([t](vxd::Communicator& c) { c.barrier(t); }), env.Undefined());
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (runner_) {
      runner_->stop();
      runner_.reset();
    }
    return info.Env().Undefined();
  }

  std::shared_ptr<Runner> runner_;
};

struct AddonData {
  Napi::FunctionReference ctor;
};

std::string str_field(Napi::Env env, Napi::Object o, const char* k, const std::string& dflt) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return dflt;
  if (!v.IsString()) throw_inval(env, std::string("options.") + k + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}
int64_t int_field(Napi::Env env, Napi::Object o, const char* k, int64_t dflt, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return dflt;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1e300;
  if (d != double(int64_t(d)) || d < double(lo) || d > double(hi))
    throw_inval(env, std::string("options.") + k + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int64_t(d);
}

// connect({ rank, worldSize, rendezvous: 'tcp' | 'file', host, port, path, listenHost, rendezvousTimeoutMs, timeoutMs })
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_inval(env, "connect(options): options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  vxd::GlooOptions g;
  g.worldSize = int(int_field(env, o, "worldSize", 1, 1, 1 << 20));
  g.rank = int(int_field(env, o, "rank", 0, 0, 1 << 20));
  g.rendezvous = str_field(env, o, "rendezvous", "tcp");
  g.host = str_field(env, o, "host", "127.0.0.1");
  g.port = int(int_field(env, o, "port", 29500, 1, 65535));
  g.path = str_field(env, o, "path", "");
  g.listenHost = str_field(env, o, "listenHost", "");
  g.rendezvousTimeoutMs = int_field(env, o, "rendezvousTimeoutMs", 120000, 1, int64_t(1) << 40);
  g.timeoutMs = int_field(env, o, "timeoutMs", 300000, 1, int64_t(1) << 40);
  auto holder = std::make_shared<std::shared_ptr<Runner>>();
  auto fut = std::async(std::launch::deferred, [g, holder] { *holder = std::make_shared<Runner>(vxd::create_gloo(g)); });
  AddonData* data = env.GetInstanceData<AddonData>();
  auto* w = new Wait(env, std::move(fut), [holder, data](Napi::Env) -> Napi::Value {
    Napi::Object obj = data->ctor.New({});
    CommWrap::Unwrap(obj)->adopt(*holder);
    return obj;
  }, {});
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function ctor = CommWrap::Init(env);
  data->ctor = Napi::Persistent(ctor);
  exports.Set("Communicator", ctor);
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("engines", [&] {
    Napi::Array a = Napi::Array::New(env, 1);
    a.Set(uint32_t(0), Napi::String::New(env, "gloo"));
    return a;
  }());
  exports.Set("abiVersion", Napi::Number::New(env, kDistAbi));
  return exports;
}

}  // namespace

NODE_API_MODULE(voxvae_dist, Init)
