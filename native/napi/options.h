// Argument and options-object readers shared by the CPU addon (native/napi) and the CUDA addon
// (native/cuda/napi): one spelling per option across the boundary. An options object's field names are
// the TS option names and the C++ struct fields (vx::DiceOptions, vx::AdamOptions, ...); enums cross as
// the strings TS spells ('sum' | 'mean', 'sample' | 'mean' | 'mean+std', 'adam' | 'adamw', ...). Every
// reader names the argument or field in its error, with a stable `code` ("EINVAL", "ESHAPE").
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>

#include "activation.h"
#include "loss.h"
#include "optim.h"
#include "population_prior.h"

namespace vxn {

// A JS Error with a stable `code` property ("EINVAL", ...). The TS layer re-throws it from the
// caller's stack as a VoxvaeError.
inline Napi::Error make_error(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}
[[noreturn]] inline void throw_error(Napi::Env env, const char* code, const std::string& msg) {
  throw make_error(env, code, msg);
}

// The index of the first NaN or ±Inf in p[0, count) (-1: none).
inline int64_t first_non_finite(const float* p, int64_t count) {
  uint32_t bad = 0;
  for (int64_t j = 0; j < count; ++j) {  // exponent all ones: Inf or NaN (a branch-free pass that vectorises)
    uint32_t b;
    std::memcpy(&b, p + j, sizeof b);
    bad |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
  }
  if (bad)
    for (int64_t j = 0; j < count; ++j)
      if (!std::isfinite(p[j])) return j;
  return -1;
}

// Copies count floats from src to dst and, with check, returns the index of the first non-finite one
// (-1: none). Each chunk is checked right after its copy, while it is in cache: one pass over memory.
inline int64_t copy_checked(float* dst, const float* src, int64_t count, bool check) {
  constexpr int64_t kChunk = 4096;
  for (int64_t i = 0; i < count; i += kChunk) {
    const int64_t m = std::min(kChunk, count - i);
    std::memcpy(dst + i, src + i, size_t(m) * sizeof(float));
    if (!check) continue;
    const int64_t bad = first_non_finite(dst + i, m);
    if (bad >= 0) return i + bad;
  }
  return -1;
}

// ---- positional arguments --------------------------------------------------------------------------------
inline double number_value(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) throw_error(env, "EINVAL", name + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_error(env, "EINVAL", name + " must be finite");
  return d;
}
inline int64_t int_value(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t lo, int64_t hi) {
  const double d = number_value(env, v, name);
  if (d != std::floor(d) || d < double(lo) || d > double(hi))
    throw_error(env, "EINVAL", name + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(d));
  return int64_t(d);
}
inline double arg_number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return number_value(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), name);
}
inline int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  return int_value(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), name, lo, hi);
}
inline uint64_t arg_u64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return uint64_t(arg_int(info, i, name, 0, (int64_t(1) << 53)));
}
inline bool arg_bool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBoolean()) throw_error(info.Env(), "EINVAL", std::string(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}
inline Napi::Float32Array arg_f32(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expect = -1) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_error(info.Env(), "EINVAL", std::string(name) + " must be a Float32Array");
  auto a = info[i].As<Napi::Float32Array>();
  if (expect >= 0 && int64_t(a.ElementLength()) != expect)
    throw_error(info.Env(), "ESHAPE", std::string(name) + " has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(expect));
  return a;
}
inline bool arg_absent(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() <= i || info[i].IsUndefined() || info[i].IsNull();
}

// ---- options objects ---------------------------------------------------------------------------------------
// Argument i as an options object (absent: every field takes its default); fields are read by name.
class Options {
 public:
  Options(const Napi::CallbackInfo& info, size_t i, std::string what) : env_(info.Env()), what_(std::move(what)) {
    if (arg_absent(info, i)) return;
    if (!info[i].IsObject() || info[i].IsArray() || info[i].IsTypedArray())
      throw_error(env_, "EINVAL", what_ + " must be an options object");
    obj_ = info[i].As<Napi::Object>();
  }
  Napi::Env env() const { return env_; }
  std::string name(const char* key) const { return what_ + "." + key; }
  // The field's value; undefined when the object or the field is absent.
  Napi::Value get(const char* key) const { return obj_.IsEmpty() ? env_.Undefined() : obj_.Get(key); }
  bool has(const char* key) const {
    const Napi::Value v = get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  double number(const char* key, double def) const { return has(key) ? number_value(env_, get(key), name(key)) : def; }
  double number(const char* key) const { return number_value(env_, get(key), name(key)); }
  float f32(const char* key, float def) const { return float(number(key, def)); }
  int64_t integer(const char* key, int64_t lo, int64_t hi, int64_t def) const {
    return has(key) ? int_value(env_, get(key), name(key), lo, hi) : def;
  }
  uint64_t u64(const char* key, uint64_t def) const { return uint64_t(integer(key, 0, int64_t(1) << 53, int64_t(def))); }
  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    if (!get(key).IsBoolean()) throw_error(env_, "EINVAL", name(key) + " must be a boolean");
    return get(key).As<Napi::Boolean>().Value();
  }
  // A string field that must be one of `names` (the first is the default when the field is absent and
  // `required` is false); returns its index in `names`.
  int one_of(const char* key, std::initializer_list<const char*> names, bool required = false) const {
    std::string list;
    for (const char* n : names) list += std::string(list.empty() ? "'" : ", '") + n + "'";
    if (!has(key)) {
      if (required) throw_error(env_, "EINVAL", name(key) + " must be one of " + list);
      return 0;
    }
    const Napi::Value v = get(key);
    if (v.IsString()) {
      const std::string s = v.As<Napi::String>().Utf8Value();
      int k = 0;
      for (const char* n : names) {
        if (s == n) return k;
        ++k;
      }
      throw_error(env_, "EINVAL", name(key) + " must be one of " + list + ", got '" + s + "'");
    }
    throw_error(env_, "EINVAL", name(key) + " must be one of " + list);
  }

 private:
  Napi::Env env_;
  std::string what_;
  Napi::Object obj_;
};

// ---- the shared option structs -----------------------------------------------------------------------------
inline vx::Reduction reduction_of(const Options& o, bool required = true) {
  return o.one_of("reduction", {"mean", "sum"}, required) == 0 ? vx::Reduction::Mean : vx::Reduction::Sum;
}

// { smoothNr = 1e-5, smoothDr = 1e-5, reduction, weight = 1 } -> vx::DiceOptions
inline vx::DiceOptions dice_options(const Options& o) {
  vx::DiceOptions d;
  d.smoothNr = o.f32("smoothNr", d.smoothNr);
  d.smoothDr = o.f32("smoothDr", d.smoothDr);
  d.reduction = reduction_of(o);
  d.weight = o.f32("weight", d.weight);
  return d;
}

// { lr, betas: [b1, b2], eps, weightDecay, kind: 'adam' | 'adamw', gradScale = 1 } -> vx::AdamOptions
inline vx::AdamOptions adam_options(const Options& o) {
  vx::AdamOptions a;
  a.lr = float(o.number("lr"));
  const Napi::Value b = o.get("betas");
  if (!b.IsArray() || b.As<Napi::Array>().Length() != 2) throw_error(o.env(), "EINVAL", o.name("betas") + " must be two numbers [beta1, beta2]");
  for (uint32_t k = 0; k < 2; ++k)
    a.betas[k] = float(number_value(o.env(), b.As<Napi::Array>().Get(k), o.name("betas") + "[" + std::to_string(k) + "]"));
  a.eps = float(o.number("eps"));
  a.weightDecay = float(o.number("weightDecay", 0.0));
  a.kind = o.one_of("kind", {"adam", "adamw"}) == 0 ? vx::AdamKind::Adam : vx::AdamKind::AdamW;
  a.gradScale = float(o.number("gradScale", 1.0));
  if (!(a.lr >= 0) || !(a.betas[0] >= 0 && a.betas[0] < 1) || !(a.betas[1] >= 0 && a.betas[1] < 1) || !(a.eps >= 0) ||
      !(a.weightDecay >= 0))
    throw_error(o.env(), "EINVAL", o.name("") + " needs lr >= 0, 0 <= betas < 1, eps >= 0 and weightDecay >= 0");
  return a;
}

// 'sample' | 'mean' | 'mean+std' -> vx::LatentMode
inline vx::LatentMode latent_of(const Options& o) {
  return static_cast<vx::LatentMode>(o.one_of("latent", {"sample", "mean", "mean+std"}, true));
}

// variance: 'means' | 'mixture' -> vx::PopulationVariance
inline vx::PopulationVariance population_variance_of(const Options& o) {
  return o.one_of("variance", {"means", "mixture"}, true) == 0 ? vx::PopulationVariance::Means : vx::PopulationVariance::Mixture;
}

// 'softmax' | 'sigmoid' | 'none' -> vx::OutputActivation (argument i, a string)
inline vx::OutputActivation arg_output_activation(const Napi::CallbackInfo& info, size_t i, const char* name) {
  vx::OutputActivation a = vx::OutputActivation::None;
  if (info.Length() <= i || !info[i].IsString() || !vx::parse_output_activation(info[i].As<Napi::String>().Utf8Value().c_str(), &a))
    throw_error(info.Env(), "EINVAL", std::string(name) + " must be 'softmax', 'sigmoid' or 'none'");
  return a;
}

// A shape read as [n, c, spatial...] (n = dim 0, c = dim 1, spatial = the product of the rest), and as
// [n, l] (l = the product of all but the first).
struct NcsShape {
  int n, c;
  int64_t spatial;
};
template <class Shape>
NcsShape ncs_shape(Napi::Env env, const Shape& shape, const char* what) {
  if (shape.size() < 2)
    throw_error(env, "ESHAPE", std::string(what) + ": the tensor needs a shape [n, c, ...], got " + std::to_string(shape.size()) + " dimension(s)");
  int64_t spatial = 1;
  for (size_t k = 2; k < shape.size(); ++k) spatial *= int64_t(shape[k]);
  return {int(shape[0]), int(shape[1]), spatial};
}
template <class Shape>
std::pair<int, int> nl_shape(Napi::Env env, const Shape& shape, const char* what) {
  if (shape.empty()) throw_error(env, "ESHAPE", std::string(what) + ": the tensor needs a shape [n, ...]");
  int64_t l = 1;
  for (size_t k = 1; k < shape.size(); ++k) l *= int64_t(shape[k]);
  return {int(shape[0]), int(l)};
}

}  // namespace vxn
