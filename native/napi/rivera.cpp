// Rivera's latent terms for JS (population prior and variance penalty): synchronous, like klNormal,
// since they work on [n, l] latent matrices.
#include <cstring>

#include "common.h"
#include "population_prior.h"

namespace vxn {

namespace {

vx::BufferPtr grad_copy_or_zeros(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  auto b = std::make_shared<vx::Buffer>(size_t(count), 0.f);
  if (info.Length() > i && !info[i].IsNull() && !info[i].IsUndefined()) {
    Tensor* t = Tensor::From(info, i, name, count);
    std::memcpy(b->data(), t->buffer()->data(), size_t(count) * sizeof(float));
  }
  return b;
}

}  // namespace

// populationKl(mu, logvar | null, n, l, variance: 'means' | 'mixture', weight, dmu?, dlogvar?) ->
//   { loss, mean: Float32Array [l], variance: Float32Array [l], dmu: Tensor, dlogvar: Tensor }
Napi::Value PopulationKl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int n = int(arg_int(info, 2, "n", 1, 1 << 24));
  int l = int(arg_int(info, 3, "l", 1, 1 << 24));
  Tensor* mu = Tensor::From(info, 0, "mu", int64_t(n) * l);
  Tensor* lv = info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined() ? Tensor::From(info, 1, "logvar", int64_t(n) * l) : nullptr;
  std::string var = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  if (var != "means" && var != "mixture") throw_error(env, "EINVAL", "variance must be 'means' or 'mixture'");
  float w = float(arg_number(info, 5, "weight"));
  auto dmu = grad_copy_or_zeros(info, 6, "dmu", int64_t(n) * l);
  auto dlv = grad_copy_or_zeros(info, 7, "dlogvar", int64_t(n) * l);
  Napi::Float32Array mean = Napi::Float32Array::New(env, size_t(l));
  Napi::Float32Array variance = Napi::Float32Array::New(env, size_t(l));
  double loss = 0;
  check_status(env, vx::population_kl(&loss, dmu->data(), dlv->data(), mean.Data(), variance.Data(), mu->buffer()->data(),
                                      lv ? lv->buffer()->data() : nullptr, n, l,
                                      var == "means" ? vx::PopulationVariance::Means : vx::PopulationVariance::Mixture, w));
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", loss);
  o.Set("mean", mean);
  o.Set("variance", variance);
  o.Set("dmu", Tensor::Wrap(env, dmu, {n, l}));
  o.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return o;
}

// variancePenalty(logvar, n, l, reduction, weight, dlogvar?) -> { loss, perSample: Float32Array, dlogvar: Tensor }
Napi::Value VariancePenalty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int n = int(arg_int(info, 1, "n", 1, 1 << 24));
  int l = int(arg_int(info, 2, "l", 1, 1 << 24));
  Tensor* lv = Tensor::From(info, 0, "logvar", int64_t(n) * l);
  std::string red = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  if (red != "mean" && red != "sum") throw_error(env, "EINVAL", "reduction must be 'mean' or 'sum'");
  float w = float(arg_number(info, 4, "weight"));
  auto dlv = grad_copy_or_zeros(info, 5, "dlogvar", int64_t(n) * l);
  Napi::Float32Array per = Napi::Float32Array::New(env, size_t(n));
  double loss = 0;
  check_status(env, vx::variance_penalty(&loss, per.Data(), dlv->data(), lv->buffer()->data(), n, l,
                                         red == "mean" ? vx::Reduction::Mean : vx::Reduction::Sum, w));
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", loss);
  o.Set("perSample", per);
  o.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return o;
}

}  // namespace vxn
