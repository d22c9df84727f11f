// voxvae_cuda.node: the CUDA addon. Exposes the same surface as the CPU addon (ts/native.ts
// NativeBinding: Tensor, Net, Adam, losses, latent ops, Philox) over device memory, plus probe(),
// memoryStats(), emptyCache() and setOptions(). Module load never touches the GPU: probe() does, and
// every constructor fails with a clear EUNSUPPORTED/EDEVICE error when the device is unusable.
// Heavy calls run on libuv workers and synchronise the stream before resolving, so CUDA errors
// surface on the promise that caused them.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "allocator.h"
#include "context.h"
#include "cuda_check.h"
#include "cudnn_conv.h"
#include "kernels.h"
#include "net_cuda.h"
#include "parallel.h"
#include "population_prior.h"
#include "rng.h"
#include "nccl_comm.h"

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include "../../napi/exports.h"  // the export list, shared with the CPU addon
#include "../../napi/job.h"      // the promise job, shared with the CPU addon
#include "../../napi/model_js.h" // JS views of the graph, shared with the CPU addon
#include "../../napi/options.h"  // argument and options readers, shared with the CPU addon

namespace vxg {

// One spelling per option: the readers (and the error objects) of the CPU addon.
using vxn::arg_absent;
using vxn::arg_bool;
using vxn::arg_f32;
using vxn::arg_int;
using vxn::arg_number;
using vxn::arg_output_activation;
using vxn::arg_u64;
using vxn::make_error;
using vxn::ncs_shape;
using vxn::nl_shape;
using vxn::Options;
using vxn::throw_error;

using vx::Status;
using vx::cuda::DeviceBufferPtr;

struct AddonData {
  Napi::FunctionReference tensor_ctor, net_ctor;
};
AddonData* data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

const char* code_for(Status s) {
  if (s == Status::OutOfMemory) return "ENOMEM";
  const auto k = vx::cuda::last_error_kind();
  if (k == vx::cuda::ErrorKind::DeviceLost) return "EDEVICE";
  if (k == vx::cuda::ErrorKind::NoDevice) return "EUNSUPPORTED";
  return vx::status_code(s);
}
void check(Napi::Env env, Status s) {
  if (s != Status::Ok) {
    const char* c = code_for(s);
    vx::cuda::clear_error_kind();
    throw make_error(env, c, vx::last_error());
  }
}
vx::cuda::Context& ctx(Napi::Env env) {
  vx::cuda::Context* c = nullptr;
  check(env, vx::cuda::Context::get(&c));
  return *c;
}

// The CUDA engine of the shared promise job (native/napi/job.h): work() enqueues on a stream from a
// worker thread (a model's own, or the shared one when `stream` is null), then that stream is
// synchronised there; device errors map to EDEVICE / EUNSUPPORTED.
struct CudaEngine {
  using Stream = cudaStream_t;
  static void begin() { vx::cuda::clear_error_kind(); }
  static const char* code_for(Status s) { return vxg::code_for(s); }
  static Status settle(cudaStream_t stream) {
    vx::cuda::Context* c = nullptr;
    Status s = vx::cuda::Context::get(&c);
    if (s == Status::Ok)
      s = stream ? vx::cuda::check(cudaStreamSynchronize(stream), "stream synchronize") : c->sync("stream synchronize");
    return s;
  }
};
using Job = vxn::EngineJob<CudaEngine>;

// Tensor: a device buffer with a shape; toArray() downloads.
class Tensor : public Napi::ObjectWrap<Tensor> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Tensor", {InstanceAccessor<&Tensor::Shape>("shape"), InstanceAccessor<&Tensor::Length>("length"),
                                       InstanceAccessor<&Tensor::Disposed>("disposed"), InstanceMethod<&Tensor::ToArray>("toArray"),
                                       InstanceMethod<&Tensor::ReadInto>("readInto"), InstanceMethod<&Tensor::Dispose>("dispose")});
  }
  explicit Tensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tensor>(info) {
    Napi::Env env = info.Env();
    if (info.Length() == 1 && info[0].IsExternal()) return;
    if (info.Length() < 2 || !info[1].IsArray()) throw_error(env, "EINVAL", "Tensor(data, shape): shape must be an array of sizes");
    Napi::Array s = info[1].As<Napi::Array>();
    int64_t count = 1;
    for (uint32_t i = 0; i < s.Length(); ++i) {
      Napi::Value v = s.Get(i);
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d == std::floor(d) && d <= double(1LL << 40))) throw_error(env, "EINVAL", "Tensor: shape[" + std::to_string(i) + "] must be a positive integer");
      shape_.push_back(int64_t(d));
      count *= int64_t(d);
      if (count > (int64_t(1) << 40)) throw_error(env, "EINVAL", "Tensor: shape is too large");
    }
    vx::cuda::Context& c = ctx(env);
    const bool has_data = !(info[0].IsNull() || info[0].IsUndefined());
    Napi::Float32Array a;
    if (has_data) {
      a = arg_f32(info, 0, "Tensor data", count);
      const bool check_finite = info.Length() < 3 || info[2].ToBoolean().Value();
      const float* src = a.Data();
      const int64_t i = check_finite ? vxn::first_non_finite(src, count) : -1;
      if (i >= 0)
        throw_error(env, "ENOTFINITE", "input holds a non-finite value (" + std::string(std::isnan(src[i]) ? "NaN" : "Inf") + ") at index " + std::to_string(i));
    }
    check(env, vx::cuda::make_buffer(count, &buf_, c.stream()));
    if (has_data) check(env, vx::cuda::PinnedPool::get().upload(buf_->ptr, a.Data(), size_t(count) * 4, c.stream()));
    else check(env, vx::cuda::check(cudaMemsetAsync(buf_->ptr, 0, size_t(count) * 4, c.stream()), "Tensor zeros"));
  }
  static Napi::Object Wrap(Napi::Env env, DeviceBufferPtr b, std::vector<int64_t> shape) {
    Napi::Object o = data(env)->tensor_ctor.New({Napi::External<void>::New(env, nullptr)});
    Tensor* t = Unwrap(o);
    t->buf_ = std::move(b);
    t->shape_ = std::move(shape);
    return o;
  }
  static Tensor* From(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expect = -1) {
    Napi::Env env = info.Env();
    if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(data(env)->tensor_ctor.Value()))
      throw_error(env, "EINVAL", std::string(name) + " must be a Tensor of the CUDA backend");
    Tensor* t = Unwrap(info[i].As<Napi::Object>());
    if (!t->buf_) throw_error(env, "EDISPOSED", std::string(name) + " was disposed");
    if (expect >= 0 && t->buf_->count != expect)
      throw_error(env, "ESHAPE", std::string(name) + " has " + std::to_string(t->buf_->count) + " values, expected " + std::to_string(expect));
    return t;
  }
  static Tensor* FromValue(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expect = -1) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data(env)->tensor_ctor.Value()))
      throw_error(env, "EINVAL", name + " must be a Tensor of the CUDA backend");
    Tensor* t = Unwrap(v.As<Napi::Object>());
    if (!t->buf_) throw_error(env, "EDISPOSED", name + " was disposed");
    if (expect >= 0 && t->buf_->count != expect)
      throw_error(env, "ESHAPE", name + " has " + std::to_string(t->buf_->count) + " values, expected " + std::to_string(expect));
    return t;
  }
  static Tensor* Optional(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expect) {
    if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
    return From(info, i, name, expect);
  }
  const DeviceBufferPtr& buffer() const { return buf_; }
  std::vector<int64_t> shape_copy() const { return shape_; }

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
    for (size_t i = 0; i < shape_.size(); ++i) a.Set(uint32_t(i), double(shape_[i]));
    return a;
  }
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), buf_ ? double(buf_->count) : 0); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !buf_); }
  Napi::Value ToArray(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!buf_) throw_error(env, "EDISPOSED", "tensor was disposed");
    Napi::Float32Array a = Napi::Float32Array::New(env, size_t(buf_->count));
    check(env, vx::cuda::PinnedPool::get().download(a.Data(), buf_->ptr, size_t(buf_->count) * 4, ctx(env).stream()));
    return a;
  }
  // readInto(dst, checkFinite = false) -> first non-finite index or -1 (as the CPU addon's).
  Napi::Value ReadInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!buf_) throw_error(env, "EDISPOSED", "tensor was disposed");
    Napi::Float32Array a = arg_f32(info, 0, "dst", buf_->count);
    check(env, vx::cuda::PinnedPool::get().download(a.Data(), buf_->ptr, size_t(buf_->count) * 4, ctx(env).stream()));
    const bool check_finite = info.Length() > 1 && info[1].ToBoolean().Value();
    return Napi::Number::New(env, double(check_finite ? vxn::first_non_finite(a.Data(), buf_->count) : -1));
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    buf_.reset();
    return info.Env().Undefined();
  }
  DeviceBufferPtr buf_;
  std::vector<int64_t> shape_;
};

DeviceBufferPtr new_buffer(Napi::Env env, int64_t count, bool zero) {
  DeviceBufferPtr b;
  check(env, vx::cuda::make_buffer(count, &b, ctx(env).stream()));
  if (zero) check(env, vx::cuda::check(cudaMemsetAsync(b->ptr, 0, size_t(count) * 4, ctx(env).stream()), "zeros"));
  return b;
}
DeviceBufferPtr copy_or_zeros(const Options& o, const char* key, int64_t count) {
  Napi::Env env = o.env();
  DeviceBufferPtr b = new_buffer(env, count, true);
  if (o.has(key)) {
    Tensor* t = Tensor::FromValue(env, o.get(key), o.name(key), count);
    check(env, vx::cuda::check(cudaMemcpyAsync(b->ptr, t->buffer()->ptr, size_t(count) * 4, cudaMemcpyDeviceToDevice, ctx(env).stream()), "copy"));
  }
  return b;
}
double read_double(Napi::Env env, const double* d) {
  double v = 0;
  check(env, vx::cuda::PinnedPool::get().download(&v, d, sizeof v, ctx(env).stream()));
  return v;
}

#include "net_wrap.inc"
#include "ops.inc"
#include "nccl.inc"  // data-parallel training: NCCL loaded at run time (docs/distributed.md)

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* d = new AddonData();
  env.SetInstanceData(d);
  Napi::Function tensor = Tensor::Init(env), net = NetWrap::Init(env), adam = AdamWrap::Init(env);
  d->tensor_ctor = Napi::Persistent(tensor);
  d->net_ctor = Napi::Persistent(net);
  vxn::export_common(env, exports, tensor, net, adam, "cuda");
  VXN_ENGINE_OPS(VXN_EXPORT_FN)
  InitCudaOps(env, exports);
  InitNccl(env, exports);
  return exports;
}

}  // namespace vxg

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) { return vxg::Init(env, exports); }
NODE_API_MODULE(voxvae_cuda, InitAll)
