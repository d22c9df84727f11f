// The CPU engine's module-level functions (exports.h VXN_ENGINE_OPS): losses (async, whole volumes), the
// output activation (async), latent ops (sync, [n, l] matrices).
#include <cstring>
#include <initializer_list>

#include "activation.h"
#include "common.h"
#include "gemm.h"
#include "loss.h"
#include "parallel.h"
#include "rng.h"

namespace vxn {

namespace {

// Where a loss writes its gradient (when options.wantGrad, default true): a new buffer, or the caller's
// Tensor options.gradOut when given, so that a training loop reuses one buffer instead of allocating (and
// page-faulting) one per step. gradOut must hold `count` values and share no memory with the loss's inputs.
struct GradOut {
  vx::BufferPtr buf;
  std::shared_ptr<Napi::ObjectReference> ref;  // the caller's Tensor, returned as the result's grad
};
GradOut grad_out(const Options& o, int64_t count, std::initializer_list<const vx::BufferPtr*> inputs) {
  GradOut g;
  if (!o.boolean("wantGrad", true)) return g;
  if (o.has("gradOut")) {
    Tensor* t = Tensor::FromValue(o.env(), o.get("gradOut"), o.name("gradOut"), count);
    for (const vx::BufferPtr* in : inputs)
      if (in->get() == t->buffer().get()) throw_error(o.env(), "EINVAL", o.name("gradOut") + " must not be an input of the loss");
    g.buf = t->buffer();
    g.ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(o.get("gradOut").As<Napi::Object>()));
  } else {
    g.buf = std::make_shared<vx::Buffer>(size_t(count));
  }
  return g;
}

Napi::Object loss_result(Napi::Env env, double loss, const GradOut& grad, const std::vector<int64_t>& shape) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", loss);
  if (grad.ref) o.Set("grad", grad.ref->Value());
  else o.Set("grad", grad.buf ? Napi::Value(Tensor::Wrap(env, grad.buf, shape)) : env.Null());
  return o;
}

}  // namespace

// diceLoss(logits: Tensor [n, c, ...spatial], labels: Tensor [n, spatial],
//          { smoothNr?, smoothDr?, reduction, weight?, wantGrad?, gradOut? }) -> Promise<{ loss, grad }>
Napi::Value DiceLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* logits = Tensor::From(info, 0, "logits");
  const NcsShape s = ncs_shape(env, logits->shape(), "diceLoss logits");
  Tensor* labels = Tensor::From(info, 1, "labels", int64_t(s.n) * s.spatial);
  const Options o(info, 2, "diceLoss options");
  const vx::DiceOptions d = dice_options(o);
  vx::BufferPtr xb = logits->buffer(), lb = labels->buffer();
  std::vector<int64_t> shape = logits->shape();
  GradOut grad = grad_out(o, logits->length(), {&xb, &lb});
  vx::BufferPtr gb = grad.buf;
  auto loss = std::make_shared<double>(0);
  return Job::Start(
      env, [=]() { return vx::dice_loss(loss.get(), gb ? gb->data() : nullptr, xb->data(), lb->data(), s.n, s.c, s.spatial, d); },
      [=](Napi::Env env) -> Napi::Value { return loss_result(env, *loss, grad, shape); });
}

// elementLoss(x: Tensor, target: Tensor, { kind: 'bce' | 'mse' | 'l1', reduction, weight?, wantGrad?, gradOut? })
//   -> Promise<{ loss, grad }>
Napi::Value ElementLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* x = Tensor::From(info, 0, "input");
  Tensor* t = Tensor::From(info, 1, "target", x->length());
  const Options o(info, 2, "elementLoss options");
  const int kind = o.one_of("kind", {"bce", "mse", "l1"}, true);
  const vx::Reduction r = reduction_of(o);
  const float w = o.f32("weight", 1.0f);
  vx::BufferPtr xb = x->buffer(), tb = t->buffer();
  std::vector<int64_t> shape = x->shape();
  GradOut grad = grad_out(o, x->length(), {&xb, &tb});
  vx::BufferPtr gb = grad.buf;
  auto loss = std::make_shared<double>(0);
  return Job::Start(
      env,
      [=]() {
        float* g = gb ? gb->data() : nullptr;
        int64_t cnt = int64_t(xb->size());
        if (kind == 0) return vx::bce_with_logits_loss(loss.get(), g, xb->data(), tb->data(), cnt, r, w);
        if (kind == 1) return vx::mse_loss(loss.get(), g, xb->data(), tb->data(), cnt, r, w);
        return vx::l1_loss(loss.get(), g, xb->data(), tb->data(), cnt, r, w);
      },
      [=](Napi::Env env) -> Napi::Value { return loss_result(env, *loss, grad, shape); });
}

// activate(t: Tensor [n, c, ...spatial], activation: 'softmax' | 'sigmoid' | 'none') -> Promise<Tensor>:
// the model's output activation (softmax over dimension 1), in place, on a worker thread; resolves to t.
Napi::Value Activate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* t = Tensor::From(info, 0, "tensor");
  const vx::OutputActivation a = arg_output_activation(info, 1, "activation");
  const NcsShape s = ncs_shape(env, t->shape(), "activate");
  vx::BufferPtr b = t->buffer();
  auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info[0].As<Napi::Object>()));
  return Job::Start(
      env, [=]() { return vx::output_activation_forward(b->data(), b->data(), a, s.n, s.c, s.spatial); },
      [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
}

// activateBackward(y: Tensor [n, c, ...spatial] (the activation's output), dy: Tensor (same size),
//                  activation) -> Promise<Tensor dx>: the gradient through the output activation.
Napi::Value ActivateBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* y = Tensor::From(info, 0, "y");
  const NcsShape s = ncs_shape(env, y->shape(), "activateBackward");
  Tensor* dy = Tensor::From(info, 1, "dy", y->length());
  const vx::OutputActivation a = arg_output_activation(info, 2, "activation");
  vx::BufferPtr yb = y->buffer(), db = dy->buffer();
  auto dx = std::make_shared<vx::Buffer>(size_t(y->length()));
  std::vector<int64_t> shape = y->shape();
  return Job::Start(
      env, [=]() { return vx::output_activation_backward(dx->data(), db->data(), yb->data(), a, s.n, s.c, s.spatial); },
      [=](Napi::Env env) -> Napi::Value { return Tensor::Wrap(env, dx, shape); });
}

namespace {

vx::BufferPtr copy_or_zeros(const Options& o, const char* key, int64_t count) {
  auto b = std::make_shared<vx::Buffer>(size_t(count), 0.f);
  if (o.has(key)) {
    Tensor* t = Tensor::FromValue(o.env(), o.get(key), o.name(key), count);
    std::memcpy(b->data(), t->buffer()->data(), size_t(count) * sizeof(float));
  }
  return b;
}

}  // namespace

// klNormal(mu: Tensor [n, l...], logvar, { reduction, weight?, dmu?, dlogvar? }) ->
//   { loss, perSample: Float32Array, dmu: Tensor, dlogvar: Tensor }  (grads = given + KL's)
Napi::Value KlNormal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* mu = Tensor::From(info, 0, "mu");
  const auto [n, l] = nl_shape(env, mu->shape(), "klNormal mu");
  Tensor* lv = Tensor::From(info, 1, "logvar", int64_t(n) * l);
  const Options o(info, 2, "klNormal options");
  const vx::Reduction r = reduction_of(o);
  const float w = o.f32("weight", 1.0f);
  auto dmu = copy_or_zeros(o, "dmu", int64_t(n) * l);
  auto dlv = copy_or_zeros(o, "dlogvar", int64_t(n) * l);
  Napi::Float32Array per = Napi::Float32Array::New(env, size_t(n));
  double loss = 0;
  check_status(env, vx::kl_normal(&loss, per.Data(), dmu->data(), dlv->data(), mu->buffer()->data(), lv->buffer()->data(), n, l, r, w));
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", loss);
  out.Set("perSample", per);
  out.Set("dmu", Tensor::Wrap(env, dmu, {n, l}));
  out.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return out;
}

// reparameterize(mu: Tensor [n, l...], logvar, { latent: 'sample' | 'mean' | 'mean+std', seed, step }) -> { z, eps }
Napi::Value Reparameterize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* mu = Tensor::From(info, 0, "mu");
  const auto [n, l] = nl_shape(env, mu->shape(), "reparameterize mu");
  Tensor* lv = Tensor::From(info, 1, "logvar", int64_t(n) * l);
  const Options o(info, 2, "reparameterize options");
  const vx::LatentMode mode = latent_of(o);
  const uint64_t seed = o.u64("seed", 0), step = o.u64("step", 0);
  auto z = std::make_shared<vx::Buffer>(size_t(n) * size_t(l));
  auto eps = std::make_shared<vx::Buffer>(size_t(n) * size_t(l));
  check_status(env, vx::reparameterize_forward(z->data(), eps->data(), mu->buffer()->data(), lv->buffer()->data(), n, l, mode, seed, step));
  Napi::Object out = Napi::Object::New(env);
  out.Set("z", Tensor::Wrap(env, z, {n, l}));
  out.Set("eps", Tensor::Wrap(env, eps, {n, l}));
  return out;
}

// reparameterizeBackward(dz: Tensor [n, l...], eps, logvar, { dmu?, dlogvar? }) -> { dmu, dlogvar } (= given + own)
Napi::Value ReparameterizeBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* dz = Tensor::From(info, 0, "dz");
  const auto [n, l] = nl_shape(env, dz->shape(), "reparameterizeBackward dz");
  Tensor* eps = Tensor::From(info, 1, "eps", int64_t(n) * l);
  Tensor* lv = Tensor::From(info, 2, "logvar", int64_t(n) * l);
  const Options o(info, 3, "reparameterizeBackward options");
  auto dmu = copy_or_zeros(o, "dmu", int64_t(n) * l);
  auto dlv = copy_or_zeros(o, "dlogvar", int64_t(n) * l);
  check_status(env, vx::reparameterize_backward(dmu->data(), dlv->data(), dz->buffer()->data(), eps->buffer()->data(),
                                                lv->buffer()->data(), n, l));
  Napi::Object out = Napi::Object::New(env);
  out.Set("dmu", Tensor::Wrap(env, dmu, {n, l}));
  out.Set("dlogvar", Tensor::Wrap(env, dlv, {n, l}));
  return out;
}

}  // namespace vxn
