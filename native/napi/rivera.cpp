// Rivera's latent terms for JS (population prior and variance penalty): synchronous, like klNormal,
// since they work on [n, l] latent matrices.
#include <cstring>

#include "common.h"
#include "population_prior.h"

namespace vxn {

namespace {

vx::BufferPtr grad_copy_or_zeros(const Options& o, const char* key, int64_t count) {
  auto b = std::make_shared<vx::Buffer>(size_t(count), 0.f);
  if (o.has(key)) {
    Tensor* t = Tensor::FromValue(o.env(), o.get(key), o.name(key), count);
    std::memcpy(b->data(), t->buffer()->data(), size_t(count) * sizeof(float));
  }
  return b;
}

}  // namespace

// populationKl(mu: Tensor [n, l...], logvar | null, { variance: 'means' | 'mixture', weight?, dmu?, dlogvar? }) ->
//   { loss, mean: Float32Array [l], variance: Float32Array [l], dmu: Tensor, dlogvar: Tensor }
Napi::Value PopulationKl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* mu = Tensor::From(info, 0, "mu");
  const auto [n, l] = nl_shape(env, mu->shape(), "populationKl mu");
  Tensor* lv = arg_absent(info, 1) ? nullptr : Tensor::From(info, 1, "logvar", int64_t(n) * l);
  const Options o(info, 2, "populationKl options");
  const vx::PopulationVariance var = population_variance_of(o);
  const float w = o.f32("weight", 1.0f);
  auto dmu = grad_copy_or_zeros(o, "dmu", int64_t(n) * l);
  auto dlv = grad_copy_or_zeros(o, "dlogvar", int64_t(n) * l);
  Napi::Float32Array mean = Napi::Float32Array::New(env, size_t(l));
  Napi::Float32Array variance = Napi::Float32Array::New(env, size_t(l));
  double loss = 0;
  check_status(env, vx::population_kl(&loss, dmu->data(), dlv->data(), mean.Data(), variance.Data(), mu->buffer()->data(),
                                      lv ? lv->buffer()->data() : nullptr, n, l, var, w));
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", loss);
  out.Set("mean", mean);
  out.Set("variance", variance);
  out.Set("dmu", Tensor::Wrap(env, dmu, {n, l}));
  out.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return out;
}

// variancePenalty(logvar: Tensor [n, l...], { reduction, weight?, dlogvar? }) -> { loss, perSample, dlogvar: Tensor }
Napi::Value VariancePenalty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* lv = Tensor::From(info, 0, "logvar");
  const auto [n, l] = nl_shape(env, lv->shape(), "variancePenalty logvar");
  const Options o(info, 1, "variancePenalty options");
  const vx::Reduction r = reduction_of(o);
  const float w = o.f32("weight", 1.0f);
  auto dlv = grad_copy_or_zeros(o, "dlogvar", int64_t(n) * l);
  Napi::Float32Array per = Napi::Float32Array::New(env, size_t(n));
  double loss = 0;
  check_status(env, vx::variance_penalty(&loss, per.Data(), dlv->data(), lv->buffer()->data(), n, l, r, w));
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", loss);
  out.Set("perSample", per);
  out.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return out;
}

}  // namespace vxn
