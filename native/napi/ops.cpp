// The CPU engine's module-level functions (exports.h VXN_ENGINE_OPS): losses (async, whole volumes), the
// output activation (async), latent ops (sync, [n, l] matrices).
#include <atomic>
#include <climits>
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

// The index of the first NaN or ±Inf of p[0, count) (-1: none), in parallel chunks.
int64_t first_non_finite_parallel(const float* p, int64_t count) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  std::atomic<int64_t> first{INT64_MAX};
  vx::parallel_for(chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t ch = lo; ch < hi && ch * kChunk < first.load(std::memory_order_relaxed); ++ch) {
      const int64_t i = first_non_finite(p + ch * kChunk, std::min(kChunk, count - ch * kChunk));
      if (i < 0) continue;
      int64_t cur = first.load();
      while (ch * kChunk + i < cur && !first.compare_exchange_weak(cur, ch * kChunk + i)) {
      }
      return;
    }
  });
  const int64_t f = first.load();
  return f == INT64_MAX ? -1 : f;
}

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

// activateInto(t: Tensor [n, c, ...spatial], activation, dst: Float32Array of t.length) -> Promise<number>:
// the output activation of t written into dst (t unchanged), on worker threads, then dst checked for
// NaN/±Inf; resolves to the index of the first non-finite value (-1: none). What a decode returns, in one
// pass from the network's output into the caller's array.
Napi::Value ActivateInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* t = Tensor::From(info, 0, "tensor");
  const vx::OutputActivation a = arg_output_activation(info, 1, "activation");
  const NcsShape s = ncs_shape(env, t->shape(), "activateInto");
  Napi::Float32Array dst = arg_f32(info, 2, "dst", t->length());
  float* d = dst.Data();  // an ArrayBuffer's memory never moves; the reference keeps it alive
  auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(dst.As<Napi::Object>()));
  vx::BufferPtr b = t->buffer();
  auto bad = std::make_shared<int64_t>(-1);
  return Job::Start(
      env,
      [=]() {
        VX_TRY(vx::output_activation_forward(d, b->data(), a, s.n, s.c, s.spatial));
        *bad = first_non_finite_parallel(d, int64_t(b->size()));
        return vx::Status::Ok;
      },
      [keep, bad](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, double(*bad)); });
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
