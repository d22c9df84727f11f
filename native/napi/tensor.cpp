// Tensor: the JS handle of a native float buffer (see common.h).
#include <algorithm>
#include <cstring>

#include "common.h"

namespace vxn {

Napi::Function Tensor::Init(Napi::Env env) {
  return DefineClass(env, "Tensor",
                     {InstanceAccessor<&Tensor::GetShape>("shape"), InstanceAccessor<&Tensor::GetLength>("length"),
                      InstanceAccessor<&Tensor::GetDisposed>("disposed"), InstanceMethod<&Tensor::ToArray>("toArray"),
                      InstanceMethod<&Tensor::ReadInto>("readInto"),
                      InstanceMethod<&Tensor::Set>("set"), InstanceMethod<&Tensor::Dispose>("dispose")});
}

namespace {

[[noreturn]] void throw_not_finite(Napi::Env env, float v, int64_t i) {
  throw_error(env, "ENOTFINITE", "input holds a non-finite value (" + std::string(std::isnan(v) ? "NaN" : "Inf") +
                                     ") at index " + std::to_string(i));
}

}  // namespace

// new Tensor(data: Float32Array, shape: number[], checkFinite = true): copies data.
// new Tensor(null, shape): zeros.
Tensor::Tensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tensor>(info) {
  Napi::Env env = info.Env();
  if (info.Length() == 1 && info[0].IsExternal()) return;  // internal: filled in by Wrap()
  if (info.Length() < 2 || !info[1].IsArray()) throw_error(env, "EINVAL", "Tensor(data, shape): shape must be an array of sizes");
  Napi::Array s = info[1].As<Napi::Array>();
  int64_t count = 1;
  for (uint32_t i = 0; i < s.Length(); ++i) {
    Napi::Value v = s.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1 && d == std::floor(d) && d <= double(1LL << 40))) throw_error(env, "EINVAL", "Tensor: shape[" + std::to_string(i) + "] must be a positive integer");
    shape_.push_back(int64_t(d));
    count *= int64_t(d);
    if (count > (int64_t(1) << 40)) throw_error(env, "EINVAL", "Tensor: shape is too large");
  }
  try {
    buf_ = std::make_shared<vx::Buffer>(size_t(count));
  } catch (const std::bad_alloc&) {
    throw_error(env, "ENOMEM", "Tensor: cannot allocate " + std::to_string(count) + " floats");
  }
  if (info[0].IsNull() || info[0].IsUndefined()) return;
  Napi::Float32Array a = arg_f32(info, 0, "Tensor data", count);
  bool check = info.Length() < 3 || info[2].ToBoolean().Value();
  const int64_t bad = copy_checked(buf_->data(), a.Data(), count, check);
  if (bad >= 0) throw_not_finite(env, a.Data()[bad], bad);
}

// set(data: Float32Array, checkFinite = true): copies data (exactly length values) into this tensor's
// own buffer, so that a caller feeding batches of one shape allocates nothing per batch. Every holder of
// the buffer sees the new values (a network keeps its last input until backward): not to be called
// while a call that uses this tensor runs. On ENOTFINITE the values are unspecified.
Napi::Value Tensor::Set(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buf_) throw_error(env, "EDISPOSED", "tensor was disposed");
  Napi::Float32Array a = arg_f32(info, 0, "data", length());
  bool check = info.Length() < 2 || info[1].ToBoolean().Value();
  const int64_t bad = copy_checked(buf_->data(), a.Data(), length(), check);
  if (bad >= 0) throw_not_finite(env, a.Data()[bad], bad);
  return env.Undefined();
}

Napi::Object Tensor::Wrap(Napi::Env env, vx::BufferPtr buf, std::vector<int64_t> shape) {
  Napi::Object o = addon_data(env)->tensor_ctor.New({Napi::External<void>::New(env, nullptr)});
  Tensor* t = Napi::ObjectWrap<Tensor>::Unwrap(o);
  t->buf_ = std::move(buf);
  t->shape_ = std::move(shape);
  return o;
}

bool Tensor::IsTensor(Napi::Env env, const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(addon_data(env)->tensor_ctor.Value());
}

Tensor* Tensor::From(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expect) {
  return FromValue(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), name, expect);
}

Tensor* Tensor::FromValue(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expect) {
  if (!IsTensor(env, v)) throw_error(env, "EINVAL", name + " must be a Tensor");
  Tensor* t = Napi::ObjectWrap<Tensor>::Unwrap(v.As<Napi::Object>());
  if (!t->buf_) throw_error(env, "EDISPOSED", name + " was disposed");
  if (expect >= 0 && t->length() != expect)
    throw_error(env, "ESHAPE", name + " has " + std::to_string(t->length()) + " values, expected " + std::to_string(expect));
  return t;
}

Napi::Value Tensor::GetShape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) a.Set(uint32_t(i), Napi::Number::New(info.Env(), double(shape_[i])));
  return a;
}
Napi::Value Tensor::GetLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(length())); }
Napi::Value Tensor::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !buf_); }

Napi::Value Tensor::ToArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buf_) throw_error(env, "EDISPOSED", "tensor was disposed");
  Napi::Float32Array a = Napi::Float32Array::New(env, buf_->size());
  std::memcpy(a.Data(), buf_->data(), buf_->size() * sizeof(float));
  return a;
}

// readInto(dst: Float32Array of exactly length values, checkFinite = false) -> number: copies this tensor
// into dst and, with checkFinite, returns the index of the first non-finite value (-1: none); one pass
// over memory (the check runs on each chunk while it is in cache), so that an output's finiteness check
// costs no second scan in JS.
Napi::Value Tensor::ReadInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buf_) throw_error(env, "EDISPOSED", "tensor was disposed");
  Napi::Float32Array a = arg_f32(info, 0, "dst", length());
  const bool check = info.Length() > 1 && info[1].ToBoolean().Value();
  return Napi::Number::New(env, double(copy_checked(a.Data(), buf_->data(), length(), check)));
}

Napi::Value Tensor::Dispose(const Napi::CallbackInfo& info) {
  buf_.reset();
  return info.Env().Undefined();
}

}  // namespace vxn
