// NetCuda: forward and backward over the node list on the device (see net_cuda.h), mirroring
// native/core/net.cpp node for node so that the two engines can be compared op by op.
#include "net_cuda.h"

#include <cstring>
#include <new>

#include "conv_transpose3d.h"
#include "cuda_check.h"
#include "kernels.h"

namespace vx {
namespace cuda {

Status NetCuda::create(const std::string& spec, std::unique_ptr<NetCuda>* out) {
  std::unique_ptr<NetCuda> n(new NetCuda());
  VX_TRY(Context::get(&n->ctx_));
  VX_TRY(n->ctx_->acquire_stream(&n->stream_));
  // A pooled stream may be a disposed model's: blocks cached under it can still be read by work queued
  // on the shared stream (reparameterize reads encoder outputs); the allocations below take them at once.
  VX_TRY(n->ctx_->after_shared(n->stream_, "create: wait for the shared stream"));
  n->host_.reset(new (std::nothrow) Model());
  if (!n->host_) return fail(Status::OutOfMemory, "NetCuda: out of memory");
  VX_TRY(n->host_->create(spec));
  const auto& t = n->host_->param_table();
  n->roles_.assign(n->host_->nodes().size(), std::vector<int>(4, -1));
  for (size_t i = 0; i < t.size(); ++i) n->roles_[size_t(t[i].node)][size_t(t[i].role)] = int(i);
  VX_TRY(make_buffer(std::max<int64_t>(1, n->num_params()), &n->params_, n->stream_));
  VX_TRY(make_buffer(std::max<int64_t>(1, n->num_params()), &n->grads_, n->stream_));
  VX_TRY(make_buffer(std::max<int64_t>(1, n->num_buffers()), &n->buffers_, n->stream_));
  VX_TRY(make_buffer(4, &n->seed_step_, n->stream_));  // two uint64: dropout seed and step
  const size_t nodes = n->host_->nodes().size();
  n->act_.assign(nodes, nullptr);
  n->grad_.assign(nodes, nullptr);
  n->save_a_.assign(nodes, nullptr);
  n->save_b_.assign(nodes, nullptr);
  n->times_.assign(nodes, NodeTime());
  VX_TRY(n->upload_params());
  VX_TRY(n->zero_grad());
  *out = std::move(n);
  return Status::Ok;
}

NetCuda::~NetCuda() {
  if (!stream_) return;
  cudaStreamSynchronize(stream_);  // nothing of this network may still be queued when its stream is reused
  for (cudaEvent_t e : ev_) cudaEventDestroy(e);
  cudaGetLastError();
  ctx_->release_stream(stream_);
}

Status NetCuda::sync(const char* what) { return check(cudaStreamSynchronize(stream_), what); }

float* NetCuda::p(int node, ParamRole role) {
  const int e = roles_[size_t(node)][size_t(role)];
  if (e < 0) return nullptr;
  const ParamEntry& pe = host_->param_table()[size_t(e)];
  return (pe.is_buffer ? buffers_->ptr : params_->ptr) + pe.offset;
}
float* NetCuda::g(int node, ParamRole role) {
  const int e = roles_[size_t(node)][size_t(role)];
  if (e < 0 || host_->param_table()[size_t(e)].is_buffer) return nullptr;
  return grads_->ptr + host_->param_table()[size_t(e)].offset;
}

Status NetCuda::init_params(uint64_t seed) {
  host_->init_params(seed);  // the CPU's Philox draws, so both engines start from the same weights
  return upload_params();
}
Status NetCuda::upload_params() {
  auto& pin = PinnedPool::get();
  VX_TRY(pin.upload(params_->ptr, host_->params(), size_t(num_params()) * 4, stream_));
  VX_TRY(pin.upload(buffers_->ptr, host_->buffers(), size_t(num_buffers()) * 4, stream_));
  return Status::Ok;
}
Status NetCuda::download_params() {
  auto& pin = PinnedPool::get();
  VX_TRY(pin.download(host_->params(), params_->ptr, size_t(num_params()) * 4, stream_));
  VX_TRY(pin.download(host_->buffers(), buffers_->ptr, size_t(num_buffers()) * 4, stream_));
  return Status::Ok;
}
Status NetCuda::download_grads() {
  return PinnedPool::get().download(host_->grads(), grads_->ptr, size_t(num_params()) * 4, stream_);
}
Status NetCuda::zero_grad() {
  return check(cudaMemsetAsync(grads_->ptr, 0, size_t(std::max<int64_t>(1, num_params())) * 4, stream_), "zero_grad");
}

Status NetCuda::ensure(std::vector<DeviceBufferPtr>& v, int i, int64_t count) {
  DeviceBufferPtr& b = v[size_t(i)];
  if (b && b.use_count() == 1 && b->count == count) return Status::Ok;
  return make_buffer(count, &b, stream_);
}
Status NetCuda::ensure_save(std::vector<DeviceBufferPtr>& v, int i, int64_t count) {
  DeviceBufferPtr& b = v[size_t(i)];
  if (b && b->count >= count) return Status::Ok;
  return make_buffer(count, &b, stream_);
}

Status NetCuda::forward(const DeviceBufferPtr& x, int batch, bool train, uint64_t dropout_seed, uint64_t dropout_step) {
  if (batch < 1) return fail(Status::InvalidArgument, "forward: batch must be >= 1, got %d", batch);
  if (!x || x->count != batch * host_->input_shape().numel())
    return fail(Status::ShapeMismatch, "forward: input holds %lld values, expected batch %d x %lld", x ? (long long)x->count : 0LL,
                batch, (long long)host_->input_shape().numel());
  have_forward_ = false;
  batch_ = batch;
  last_train_ = train;
  act_[0] = x;
  VX_TRY(ctx_->after_shared(stream_, "forward: wait for the shared stream"));
  const uint64_t ss[2] = {dropout_seed, dropout_step};
  VX_TRY(PinnedPool::get().upload(seed_step_->ptr, ss, sizeof ss, stream_));
  const bool prof = ctx_->options().profile;
  std::vector<int> order;
  if (prof) VX_TRY(profile_mark(0));
  for (size_t i = 1; i < host_->nodes().size(); ++i) {
    VX_TRY(forward_node(int(i), train, uint64_t(host_->nodes().size())));
    if (prof) {
      order.push_back(int(i));
      VX_TRY(profile_mark(order.size()));
    }
  }
  if (prof) VX_TRY(profile_collect(false, order));
  have_forward_ = true;
  return Status::Ok;
}

Status NetCuda::profile_mark(size_t k) {
  while (ev_.size() <= k) {
    cudaEvent_t e;
    VXC_CUDA(cudaEventCreate(&e));
    ev_.push_back(e);
  }
  return check(cudaEventRecord(ev_[k], stream_), "profile event");
}

Status NetCuda::profile_collect(bool backward, const std::vector<int>& order) {
  if (order.empty()) return Status::Ok;
  VX_TRY(check(cudaEventSynchronize(ev_[order.size()]), "profile sync"));
  for (size_t j = 0; j < order.size(); ++j) {
    float ms = 0;
    VX_TRY(check(cudaEventElapsedTime(&ms, ev_[j], ev_[j + 1]), "profile elapsed"));
    NodeTime& t = times_[size_t(order[j])];
    if (backward) {
      t.bwd_ms += ms;
      ++t.bwd_calls;
    } else {
      t.fwd_ms += ms;
      ++t.fwd_calls;
    }
  }
  return Status::Ok;
}

Status NetCuda::forward_node(int i, bool train, uint64_t step_mul) {
  const NodeSpec& n = host_->nodes()[size_t(i)];
  const NodeSpec& src = host_->nodes()[size_t(n.in[0])];
  const float* x = act_[size_t(n.in[0])]->ptr;
  const int N = batch_;
  const int64_t count = N * n.shape.numel();
  VX_TRY(ensure(act_, i, count));
  float* y = act_[size_t(i)]->ptr;
  const Shape4& in = src.shape;
  cudaStream_t st = stream_;
  NormShape ns;
  ns.n = N; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  Conv3dShape s;
  s.n = N; s.cin = in.c; s.cout = n.cout; s.id = in.d; s.ih = in.h; s.iw = in.w;
  s.kd = n.k[0]; s.kh = n.k[1]; s.kw = n.k[2]; s.sd = n.s[0]; s.sh = n.s[1]; s.sw = n.s[2];
  s.pd = n.p[0]; s.ph = n.p[1]; s.pw = n.p[2]; s.opd = n.op_pad[0]; s.oph = n.op_pad[1]; s.opw = n.op_pad[2];
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
      VX_TRY(conv3d_shape(s));
      return conv3d_forward(*ctx_, y, x, p(i, ParamRole::Weight), p(i, ParamRole::Bias), s, st);
    case OpKind::ConvTranspose3d:
      VX_TRY(conv_transpose3d_shape(s));
      return conv_transpose3d_forward(*ctx_, y, x, p(i, ParamRole::Weight), p(i, ParamRole::Bias), s, st);
    case OpKind::Linear: return linear_forward(y, x, p(i, ParamRole::Weight), p(i, ParamRole::Bias), N, in.c, n.cout, st);
    case OpKind::BatchNorm3d:
      if (train) {
        VX_TRY(ensure_save(save_a_, i, in.c));
        VX_TRY(ensure_save(save_b_, i, in.c));
        VX_TRY(batch_norm3d_forward_train(y, save_a_[size_t(i)]->ptr, save_b_[size_t(i)]->ptr, p(i, ParamRole::RunningMean),
                                          p(i, ParamRole::RunningVar), x, p(i, ParamRole::Weight), p(i, ParamRole::Bias), ns, st));
        int bn = 0;  // num_batches_tracked lives on the host, like the CPU's
        for (int j = 0; j < i; ++j) bn += host_->nodes()[size_t(j)].op == OpKind::BatchNorm3d;
        host_->counters()[size_t(bn)]++;
        return Status::Ok;
      }
      return batch_norm3d_forward_eval(y, x, p(i, ParamRole::Weight), p(i, ParamRole::Bias), p(i, ParamRole::RunningMean),
                                       p(i, ParamRole::RunningVar), ns, st);
    case OpKind::InstanceNorm3d:
      VX_TRY(ensure_save(save_a_, i, int64_t(N) * in.c));
      VX_TRY(ensure_save(save_b_, i, int64_t(N) * in.c));
      return instance_norm3d_forward(y, save_a_[size_t(i)]->ptr, save_b_[size_t(i)]->ptr, x, p(i, ParamRole::Weight),
                                     p(i, ParamRole::Bias), ns, st);
    case OpKind::Relu: return relu_forward(y, x, count, st);
    case OpKind::Prelu: return prelu_forward(y, x, p(i, ParamRole::Weight), N, in.c, in.spatial(), n.prelu_n, st);
    case OpKind::LeakyRelu: return leaky_relu_forward(y, x, count, n.slope, st);
    case OpKind::Sigmoid: return sigmoid_forward(y, x, count, st);
    case OpKind::Softmax: return softmax_forward(y, x, N, in.c, in.spatial(), st);
    case OpKind::Dropout:
      if (train && n.drop_p > 0) {
        VX_TRY(ensure_save(save_a_, i, count));
        // The CPU's stream: step * nodes + node index (net.cpp).
        return dropout_forward(y, save_a_[size_t(i)]->ptr, x, count, n.drop_p,
                               reinterpret_cast<const uint64_t*>(seed_step_->ptr), step_mul, uint64_t(i), st);
      }
      return check(cudaMemcpyAsync(y, x, size_t(count) * 4, cudaMemcpyDeviceToDevice, st), "dropout copy");
    case OpKind::Flatten:
    case OpKind::Reshape:
      return check(cudaMemcpyAsync(y, x, size_t(count) * 4, cudaMemcpyDeviceToDevice, st), "reshape copy");
    case OpKind::Add: return add_forward(y, x, act_[size_t(n.in[1])]->ptr, count, st);
  }
  return fail(Status::Internal, "forward: unhandled op");
}

Status NetCuda::backward(const std::vector<const float*>& dout, bool need_input_grad) {
  if (!have_forward_) return fail(Status::InvalidArgument, "backward: call forward first");
  const auto& outputs = host_->outputs();
  const auto& nodes = host_->nodes();
  if (dout.size() != outputs.size())
    return fail(Status::InvalidArgument, "backward: %zu output gradients given, the network has %zu outputs", dout.size(), outputs.size());
  const int N = batch_;
  cudaStream_t st = stream_;
  VX_TRY(ctx_->after_shared(st, "backward: wait for the shared stream"));
  std::vector<char> has(nodes.size(), 0);
  for (size_t k = 0; k < outputs.size(); ++k) {
    const int o = outputs[k];
    const int64_t count = N * nodes[size_t(o)].shape.numel();
    if (!dout[k]) continue;
    VX_TRY(ensure(grad_, o, count));
    float* gp = grad_[size_t(o)]->ptr;
    if (!has[size_t(o)]) VX_TRY(check(cudaMemcpyAsync(gp, dout[k], size_t(count) * 4, cudaMemcpyDeviceToDevice, st), "backward seed"));
    else VX_TRY(add_inplace(gp, dout[k], count, st));
    has[size_t(o)] = 1;
  }
  const bool prof = ctx_->options().profile;
  std::vector<int> order;
  if (prof) VX_TRY(profile_mark(0));
  for (int i = int(nodes.size()) - 1; i >= 1; --i) {
    if (!has[size_t(i)]) continue;
    const NodeSpec& n = nodes[size_t(i)];
    float* dx[2] = {nullptr, nullptr};
    bool accumulate[2] = {false, false};
    int64_t need = 0;
    for (size_t j = 0; j < n.in.size(); ++j) need += N * nodes[size_t(n.in[j])].shape.numel();
    if (!scratch_ || scratch_->count < need) VX_TRY(make_buffer(need, &scratch_, stream_));
    int64_t off = 0;
    for (size_t j = 0; j < n.in.size(); ++j) {
      const int src = n.in[j];
      const int64_t count = N * nodes[size_t(src)].shape.numel();
      if (src == 0 && !need_input_grad) continue;
      if (!has[size_t(src)]) {
        VX_TRY(ensure(grad_, src, count));
        dx[j] = grad_[size_t(src)]->ptr;
      } else {
        accumulate[j] = true;
        dx[j] = scratch_->ptr + off;
      }
      off += count;
    }
    if (n.op == OpKind::Add && n.in[0] == n.in[1] && dx[0] && !accumulate[0]) {
      accumulate[1] = true;  // y = a + a: the second contribution must add
      dx[1] = scratch_->ptr + N * n.shape.numel();
    }
    VX_TRY(backward_node(i, dx[0], dx[1]));
    for (size_t j = 0; j < n.in.size(); ++j) {
      if (!dx[j]) continue;
      const int src = n.in[j];
      if (accumulate[j]) VX_TRY(add_inplace(grad_[size_t(src)]->ptr, dx[j], N * nodes[size_t(src)].shape.numel(), st));
      has[size_t(src)] = 1;
    }
    if (prof) {
      order.push_back(i);
      VX_TRY(profile_mark(order.size()));
    }
  }
  if (prof) VX_TRY(profile_collect(true, order));
  if (!need_input_grad) grad_[0].reset();
  return Status::Ok;
}

Status NetCuda::backward_node(int i, float* dx, float* dx1) {
  const NodeSpec& n = host_->nodes()[size_t(i)];
  const Shape4& in = host_->nodes()[size_t(n.in[0])].shape;
  const float* x = act_[size_t(n.in[0])]->ptr;
  const float* y = act_[size_t(i)]->ptr;
  const float* dy = grad_[size_t(i)]->ptr;
  const int N = batch_;
  const int64_t count = N * n.shape.numel();
  cudaStream_t st = stream_;
  NormShape ns;
  ns.n = N; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  Conv3dShape s;
  s.n = N; s.cin = in.c; s.cout = n.cout; s.id = in.d; s.ih = in.h; s.iw = in.w;
  s.kd = n.k[0]; s.kh = n.k[1]; s.kw = n.k[2]; s.sd = n.s[0]; s.sh = n.s[1]; s.sw = n.s[2];
  s.pd = n.p[0]; s.ph = n.p[1]; s.pw = n.p[2]; s.opd = n.op_pad[0]; s.oph = n.op_pad[1]; s.opw = n.op_pad[2];
  auto copy = [&](float* d) { return d ? check(cudaMemcpyAsync(d, dy, size_t(count) * 4, cudaMemcpyDeviceToDevice, st), "grad copy") : Status::Ok; };
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
      VX_TRY(conv3d_shape(s));
      return conv3d_backward(*ctx_, dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight), s, st);
    case OpKind::ConvTranspose3d:
      VX_TRY(conv_transpose3d_shape(s));
      return conv_transpose3d_backward(*ctx_, dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight), s, st);
    case OpKind::Linear:
      return linear_backward(dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight), N, in.c, n.cout, st);
    case OpKind::BatchNorm3d:
      if (last_train_)
        return batch_norm3d_backward(dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight),
                                     save_a_[size_t(i)]->ptr, save_b_[size_t(i)]->ptr, ns, st);
      return batch_norm3d_backward_eval(dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight),
                                        p(i, ParamRole::RunningMean), p(i, ParamRole::RunningVar), ns, st);
    case OpKind::InstanceNorm3d:
      return instance_norm3d_backward(dx, g(i, ParamRole::Weight), g(i, ParamRole::Bias), dy, x, p(i, ParamRole::Weight),
                                      save_a_[size_t(i)]->ptr, save_b_[size_t(i)]->ptr, ns, st);
    case OpKind::Relu: return dx ? relu_backward(dx, dy, x, count, st) : Status::Ok;
    case OpKind::Prelu:
      return prelu_backward(dx, g(i, ParamRole::Weight), dy, x, p(i, ParamRole::Weight), N, in.c, in.spatial(), n.prelu_n, st);
    case OpKind::LeakyRelu: return dx ? leaky_relu_backward(dx, dy, x, count, n.slope, st) : Status::Ok;
    case OpKind::Sigmoid: return dx ? sigmoid_backward(dx, dy, y, count, st) : Status::Ok;
    case OpKind::Softmax: return dx ? softmax_backward(dx, dy, y, N, in.c, in.spatial(), st) : Status::Ok;
    case OpKind::Dropout:
      if (!dx) return Status::Ok;
      if (last_train_ && n.drop_p > 0) return dropout_backward(dx, dy, save_a_[size_t(i)]->ptr, count, st);
      return copy(dx);
    case OpKind::Flatten:
    case OpKind::Reshape: return copy(dx);
    case OpKind::Add:
      VX_TRY(copy(dx));
      return copy(dx1);
  }
  return fail(Status::Internal, "backward: unhandled op");
}

}  // namespace cuda
}  // namespace vx
