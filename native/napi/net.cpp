// Net: the JS handle of a vx::Net (network, parameters, gradients, buffers, activations).
// Heavy calls (forward, backward) run on worker threads and return promises; while one runs, the
// network is busy and every other call on it fails with EBUSY instead of racing.
#include <cmath>
#include <cstring>

#include "common.h"
#include "model_js.h"
#include "optim.h"
#include "parallel.h"

namespace vxn {


class NetWrap : public Napi::ObjectWrap<NetWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Net", {
      InstanceAccessor<&NetWrap::NumParams>("numParams"),
      InstanceAccessor<&NetWrap::NumBuffers>("numBuffers"),
      InstanceAccessor<&NetWrap::Flops>("flops"),
      InstanceAccessor<&NetWrap::Busy>("busy"),
      InstanceMethod<&NetWrap::ParamTable>("paramTable"),
      InstanceMethod<&NetWrap::Nodes>("nodes"),
      InstanceMethod<&NetWrap::OutputShapes>("outputShapes"),
      InstanceMethod<&NetWrap::InitParams>("initParams"),
      InstanceMethod<&NetWrap::GetParams>("getParams"),
      InstanceMethod<&NetWrap::SetParams>("setParams"),
      InstanceMethod<&NetWrap::GetGrads>("getGrads"),
      InstanceMethod<&NetWrap::SetGrads>("setGrads"),
      InstanceMethod<&NetWrap::GetBuffers>("getBuffers"),
      InstanceMethod<&NetWrap::SetBuffers>("setBuffers"),
      InstanceMethod<&NetWrap::GetCounters>("getCounters"),
      InstanceMethod<&NetWrap::SetCounters>("setCounters"),
      InstanceMethod<&NetWrap::ZeroGrad>("zeroGrad"),
      InstanceMethod<&NetWrap::GradSumSq>("gradSumSq"),
      InstanceMethod<&NetWrap::Forward>("forward"),
      InstanceMethod<&NetWrap::Backward>("backward"),
      InstanceMethod<&NetWrap::Dispose>("dispose"),
    });
  }

  explicit NetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "EINVAL", "Net(spec): spec must be a string");
    std::unique_ptr<vx::Net> net;
    check_status(env, vx::Net::create(info[0].As<Napi::String>().Utf8Value(), &net));
    net_ = std::shared_ptr<vx::Net>(std::move(net));
  }

  // Used by Adam: the net if it is live and idle, else throws.
  vx::Net* acquire(Napi::Env env, const char* what) {
    if (!net_) throw_error(env, "EDISPOSED", std::string(what) + ": the network was disposed");
    if (busy_) throw_error(env, "EBUSY", std::string(what) + ": a call on this network is still running; await it first");
    return net_.get();
  }
  std::shared_ptr<vx::Net> shared() const { return net_; }
  void set_busy(bool b) { busy_ = b; }

 private:
  Napi::Value NumParams(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(acquire(info.Env(), "numParams")->num_params())); }
  Napi::Value NumBuffers(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(acquire(info.Env(), "numBuffers")->num_buffers())); }
  Napi::Value Flops(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), acquire(info.Env(), "flops")->forward_flops()); }
  Napi::Value Busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), busy_); }

  Napi::Value ParamTable(const Napi::CallbackInfo& info) { return param_table_js(info.Env(), *acquire(info.Env(), "paramTable")); }

  Napi::Value Nodes(const Napi::CallbackInfo& info) { return nodes_js(info.Env(), *acquire(info.Env(), "nodes")); }

  Napi::Value OutputShapes(const Napi::CallbackInfo& info) { return output_shapes_js(info.Env(), *acquire(info.Env(), "outputShapes")); }

  Napi::Value InitParams(const Napi::CallbackInfo& info) {
    vx::Net* net = acquire(info.Env(), "initParams");
    net->init_params(arg_u64(info, 0, "seed"));
    return info.Env().Undefined();
  }

  Napi::Value GetParams(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "getParams");
    return copy_out(info.Env(), n->params(), n->num_params());
  }
  Napi::Value GetGrads(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "getGrads");
    return copy_out(info.Env(), n->grads(), n->num_params());
  }
  // setGrads(g): replaces the accumulated gradients (data-parallel training writes back the all-reduced
  // average between backward and the optimizer step; docs/distributed.md).
  Napi::Value SetGrads(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "setGrads");
    auto a = arg_f32(info, 0, "grads", n->num_params());
    std::memcpy(n->grads(), a.Data(), a.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value GetBuffers(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "getBuffers");
    return copy_out(info.Env(), n->buffers(), n->num_buffers());
  }
  Napi::Value SetParams(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "setParams");
    auto a = arg_f32(info, 0, "params", n->num_params());
    std::memcpy(n->params(), a.Data(), a.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value SetBuffers(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "setBuffers");
    auto a = arg_f32(info, 0, "buffers", n->num_buffers());
    std::memcpy(n->buffers(), a.Data(), a.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value GetCounters(const Napi::CallbackInfo& info) { return counters_js(info.Env(), acquire(info.Env(), "getCounters")->counters()); }
  Napi::Value SetCounters(const Napi::CallbackInfo& info) {
    set_counters(info, 0, acquire(info.Env(), "setCounters")->counters());
    return info.Env().Undefined();
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    acquire(info.Env(), "zeroGrad")->zero_grad();
    return info.Env().Undefined();
  }
  // Sum of squared gradients (double), for clipping by a global norm across several networks.
  Napi::Value GradSumSq(const Napi::CallbackInfo& info) {
    vx::Net* n = acquire(info.Env(), "gradSumSq");
    const float* g = n->grads();
    const int64_t count = n->num_params();
    // Eight independent sums (in a fixed order: the same bits every call), combined pairwise: one
    // dependent chain would cost an add's latency per parameter, on the step's critical path.
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
      for (int l = 0; l < 8; ++l) acc[l] += double(g[i + l]) * double(g[i + l]);
    for (int l = 0; i < count; ++i, ++l) acc[l] += double(g[i]) * double(g[i]);
    const double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return Napi::Number::New(info.Env(), s);
  }

  // forward(x: Tensor, batch, train, dropoutSeed, dropoutStep) -> Promise<Tensor[]>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vx::Net* net = acquire(env, "forward");
    int batch = int(arg_int(info, 1, "batch", 1, 1 << 20));
    Tensor* x = Tensor::From(info, 0, "input", batch * net->input_shape().numel());
    bool train = arg_bool(info, 2, "train");
    uint64_t dseed = info.Length() > 3 ? arg_u64(info, 3, "dropoutSeed") : 0;
    uint64_t dstep = info.Length() > 4 ? arg_u64(info, 4, "dropoutStep") : 0;
    std::shared_ptr<vx::Net> keep = net_;
    vx::BufferPtr xb = x->buffer();
    busy_ = true;
    Napi::ObjectReference self = Napi::Persistent(Value());
    auto selfp = std::make_shared<Napi::ObjectReference>(std::move(self));
    return Job::Start(
        env, [keep, xb, batch, train, dseed, dstep]() { return keep->forward(xb, batch, train, dseed, dstep); },
        [keep, batch](Napi::Env env) -> Napi::Value {
          Napi::Array outs = Napi::Array::New(env, keep->outputs().size());
          for (size_t k = 0; k < keep->outputs().size(); ++k) {
            vx::Shape4 s = keep->output_shape(int(k));
            outs.Set(uint32_t(k), Tensor::Wrap(env, keep->output(int(k)), {batch, s.c, s.d, s.h, s.w}));
          }
          return outs;
        },
        [this, selfp]() { busy_ = false; selfp->Reset(); });
  }

  // backward(grads: (Tensor|null)[], needInputGrad) -> Promise<Tensor|null>
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vx::Net* net = acquire(env, "backward");
    if (info.Length() < 1 || !info[0].IsArray()) throw_error(env, "EINVAL", "backward(grads): grads must be an array of Tensors");
    Napi::Array ga = info[0].As<Napi::Array>();
    if (ga.Length() != net->outputs().size())
      throw_error(env, "EINVAL", "backward: " + std::to_string(ga.Length()) + " gradients given, the network has " + std::to_string(net->outputs().size()) + " outputs");
    if (net->batch() < 1) throw_error(env, "EINVAL", "backward: call forward first");
    std::vector<vx::BufferPtr> grads(ga.Length());
    for (uint32_t k = 0; k < ga.Length(); ++k) {
      Napi::Value v = ga.Get(k);
      if (v.IsNull() || v.IsUndefined()) continue;
      if (!Tensor::IsTensor(env, v)) throw_error(env, "EINVAL", "backward: grads[" + std::to_string(k) + "] must be a Tensor or null");
      Tensor* t = Napi::ObjectWrap<Tensor>::Unwrap(v.As<Napi::Object>());
      int64_t expect = int64_t(net->batch()) * net->output_shape(int(k)).numel();
      if (!t->buffer()) throw_error(env, "EDISPOSED", "backward: grads[" + std::to_string(k) + "] was disposed");
      if (t->length() != expect)
        throw_error(env, "ESHAPE", "backward: grads[" + std::to_string(k) + "] has " + std::to_string(t->length()) + " values, expected " + std::to_string(expect));
      grads[k] = t->buffer();
    }
    bool need = arg_bool(info, 1, "needInputGrad");
    std::shared_ptr<vx::Net> keep = net_;
    busy_ = true;
    auto selfp = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
    return Job::Start(
        env,
        [keep, grads, need]() {
          std::vector<const float*> d(grads.size());
          for (size_t k = 0; k < grads.size(); ++k) d[k] = grads[k] ? grads[k]->data() : nullptr;
          return keep->backward(d, need);
        },
        [keep, need](Napi::Env env) -> Napi::Value {
          if (!need) return env.Null();
          vx::Shape4 s = keep->input_shape();
          return Tensor::Wrap(env, keep->input_grad(), {keep->batch(), s.c, s.d, s.h, s.w});
        },
        [this, selfp]() { busy_ = false; selfp->Reset(); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy_) throw_error(info.Env(), "EBUSY", "dispose: a call on this network is still running; await it first");
    net_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<vx::Net> net_;
  bool busy_ = false;
};

Napi::Function InitNet(Napi::Env env) { return NetWrap::Init(env); }

// Adam / AdamW state for one Net: new Adam(net). step(opts) -> Promise<void>.
class AdamWrap : public Napi::ObjectWrap<AdamWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Adam", {InstanceMethod<&AdamWrap::Step>("step"), InstanceMethod<&AdamWrap::GetState>("getState"),
                                     InstanceMethod<&AdamWrap::SetState>("setState"), InstanceAccessor<&AdamWrap::StepCount>("stepCount")});
  }
  explicit AdamWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(addon_data(env)->net_ctor.Value()))
      throw_error(env, "EINVAL", "Adam(net): net must be a Net");
    net_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
    NetWrap* nw = Napi::ObjectWrap<NetWrap>::Unwrap(info[0].As<Napi::Object>());
    vx::Net* net = nw->acquire(env, "Adam");
    n_ = net->num_params();
    m_ = std::make_shared<std::vector<float>>(size_t(n_), 0.f);
    v_ = std::make_shared<std::vector<float>>(size_t(n_), 0.f);
  }

 private:
  NetWrap* net_wrap() { return Napi::ObjectWrap<NetWrap>::Unwrap(net_ref_.Value()); }

  Napi::Value StepCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(step_)); }

  // step({ lr, betas: [beta1, beta2], eps, weightDecay, kind: 'adam' | 'adamw', gradScale }) -> Promise<void>
  // (vx::AdamOptions; gradScale multiplies the gradient first, in place: clipping by a global norm).
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NetWrap* nw = net_wrap();
    vx::Net* net = nw->acquire(env, "Adam.step");
    if (net->num_params() != n_) throw_error(env, "ESHAPE", "Adam.step: the network's parameter count changed");
    const vx::AdamOptions a = adam_options(Options(info, 0, "Adam.step options"));
    int64_t t = ++step_;
    std::shared_ptr<vx::Net> keep = nw->shared();
    auto m = m_, v = v_;
    nw->set_busy(true);
    auto selfp = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
    return Job::Start(
        env, [keep, m, v, a, t]() { return vx::adam_step(keep->params(), m->data(), v->data(), keep->grads(), keep->num_params(), a, t); },
        nullptr, [nw, selfp]() { nw->set_busy(false); selfp->Reset(); });
  }

  Napi::Value GetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("step", double(step_));
    Napi::Float32Array m = Napi::Float32Array::New(env, size_t(n_)), v = Napi::Float32Array::New(env, size_t(n_));
    if (n_) {
      std::memcpy(m.Data(), m_->data(), size_t(n_) * 4);
      std::memcpy(v.Data(), v_->data(), size_t(n_) * 4);
    }
    o.Set("m", m);
    o.Set("v", v);
    return o;
  }
  // setState(step, m, v)
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    net_wrap()->acquire(env, "Adam.setState");
    int64_t step = arg_int(info, 0, "step", 0, int64_t(1) << 50);
    auto m = arg_f32(info, 1, "m", n_);
    auto v = arg_f32(info, 2, "v", n_);
    step_ = step;
    std::memcpy(m_->data(), m.Data(), size_t(n_) * 4);
    std::memcpy(v_->data(), v.Data(), size_t(n_) * 4);
    return env.Undefined();
  }

  Napi::ObjectReference net_ref_;
  int64_t n_ = 0;
  int64_t step_ = 0;
  std::shared_ptr<std::vector<float>> m_, v_;
};

Napi::Function InitAdam(Napi::Env env) { return AdamWrap::Init(env); }

}  // namespace vxn
