// net: the CPU executor: forward and backward over a graph's node list (see net.h; the spec, shapes,
// layout and initialisation are graph.cpp's).
#include "net.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "activation.h"
#include "conv3d.h"
#include "conv_transpose3d.h"
#include "linear.h"
#include "norm.h"
#include "parallel.h"
#include "rng.h"

namespace vx {

Status Net::create(const std::string& spec, std::unique_ptr<Net>* out) {
  std::unique_ptr<Net> net(new (std::nothrow) Net());
  if (!net) return fail(Status::OutOfMemory, "net: out of memory");
  VX_TRY(net->Model::create(spec));
  VX_TRY(net->prepare());
  *out = std::move(net);
  return Status::Ok;
}

// The executor's plan over the graph: which norms run fused into a PReLU, which convs fold a batch norm
// at inference, and the per-node activation and saved-statistics slots.
Status Net::prepare() {
  fused_into_.assign(nodes_.size(), -1);
  fused_norm_.assign(nodes_.size(), -1);
  eval_bn_.assign(nodes_.size(), -1);
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (nodes_[j].op != OpKind::BatchNorm3d) continue;
    const int i = nodes_[j].in[0];
    const OpKind k = nodes_[size_t(i)].op;
    if ((k == OpKind::Conv3d || k == OpKind::ConvTranspose3d) && consumers_[size_t(i)] == 1) eval_bn_[size_t(i)] = int(j);
  }
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (nodes_[j].op != OpKind::Prelu) continue;
    const int i = nodes_[j].in[0];
    const OpKind k = nodes_[size_t(i)].op;
    if ((k == OpKind::BatchNorm3d || k == OpKind::InstanceNorm3d) && consumers_[size_t(i)] == 1) {
      fused_into_[size_t(i)] = int(j);
      fused_norm_[j] = i;
    }
  }
  try {
    act_.assign(nodes_.size(), nullptr);
    save_a_.assign(nodes_.size(), {});
    save_b_.assign(nodes_.size(), {});
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "net: out of memory");
  }
  return Status::Ok;
}

float* Net::param_ptr(int node, ParamRole role) {
  int e = node_params_[size_t(node)][size_t(role)];
  if (e < 0) return nullptr;
  const ParamEntry& p = table_[size_t(e)];
  return (p.is_buffer ? buffers_.data() : params_.data()) + p.offset;
}
const float* Net::cparam_ptr(int node, ParamRole role) const {
  return const_cast<Net*>(this)->param_ptr(node, role);
}
float* Net::grad_ptr(int node, ParamRole role) {
  int e = node_params_[size_t(node)][size_t(role)];
  if (e < 0 || table_[size_t(e)].is_buffer) return nullptr;
  return grads_.data() + table_[size_t(e)].offset;
}
float* Net::buffer_ptr(int node, ParamRole role) { return param_ptr(node, role); }

void Net::init_params(uint64_t seed) {
  params_gen_.fetch_add(1, std::memory_order_relaxed);
  Model::init_params(seed);
}

BufferPtr& Net::ensure(BufferPtr& b, int64_t count) {
  // Reuse only a buffer nobody else holds (a JS tensor may still reference the previous result).
  if (!b || b.use_count() > 1) b = std::make_shared<Buffer>(size_t(count));
  else if (int64_t(b->size()) != count) b->resize(size_t(count));
  return b;
}

Status Net::forward(const BufferPtr& x, int batch, bool train, uint64_t dropout_seed, uint64_t dropout_step) {
  if (batch < 1) return fail(Status::InvalidArgument, "forward: batch must be >= 1, got %d", batch);
  if (!x || int64_t(x->size()) != batch * input_shape().numel())
    return fail(Status::ShapeMismatch, "forward: input holds %lld values, expected batch %d x %lld",
                x ? (long long)x->size() : 0LL, batch, (long long)input_shape().numel());
  have_forward_ = false;
  batch_ = batch;
  last_train_ = train;
  act_[0] = x;
  VX_TRY(forward_nodes(train, dropout_seed, dropout_step));
  have_forward_ = true;
  return Status::Ok;
}

Status Net::forward_nodes(bool train, uint64_t dropout_seed, uint64_t dropout_step) {
  try {
    produced_.assign(nodes_.size(), 0);
    last_folded_ = false;
    for (size_t i = 1; i < nodes_.size(); ++i) {
      if (produced_[i]) continue;
      VX_TRY(forward_node(int(i), train, dropout_seed, dropout_step));
    }
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "forward: out of memory for batch %d", batch_);
  }
  return Status::Ok;
}

// Batch or instance norm node i, alone or with the PReLU it is fused into.
Status Net::norm_forward(int i, float* y, const float* x, bool train, const NormPrelu* prelu) {
  const NodeSpec& n = nodes_[size_t(i)];
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const int N = batch_;
  NormShape ns;
  ns.n = N; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  const float* gamma = cparam_ptr(i, ParamRole::Weight);
  const float* beta = cparam_ptr(i, ParamRole::Bias);
  std::vector<float>& sa = save_a_[size_t(i)];
  std::vector<float>& sb = save_b_[size_t(i)];
  if (n.op == OpKind::InstanceNorm3d) {
    sa.resize(size_t(N) * size_t(in.c));
    sb.resize(size_t(N) * size_t(in.c));
    return instance_norm3d_forward(y, sa.data(), sb.data(), x, gamma, beta, ns, prelu);
  }
  if (!train)
    return batch_norm3d_forward_eval(y, x, gamma, beta, cparam_ptr(i, ParamRole::RunningMean),
                                     cparam_ptr(i, ParamRole::RunningVar), ns, prelu);
  sa.resize(size_t(in.c));
  sb.resize(size_t(in.c));
  VX_TRY(batch_norm3d_forward_train(y, sa.data(), sb.data(), buffer_ptr(i, ParamRole::RunningMean),
                                    buffer_ptr(i, ParamRole::RunningVar), x, gamma, beta, ns, prelu));
  counters_[size_t(bn_counter_[size_t(i)])]++;
  return Status::Ok;
}

Status Net::forward_node(int i, bool train, uint64_t dseed, uint64_t dstep) {
  const NodeSpec& n = nodes_[size_t(i)];
  if (fused_into_[size_t(i)] >= 0) return Status::Ok;  // runs with its PReLU; its output is never stored
  const int N = batch_;
  // A conv folded with its norm (see eval_bn_) writes the norm's (or PReLU's) output, never its own.
  const bool folded = !train && fold_ && (n.op == OpKind::Conv3d || n.op == OpKind::ConvTranspose3d) &&
                      eval_bn_[size_t(i)] >= 0;
  float* y = folded ? nullptr : ensure(act_[size_t(i)], N * n.shape.numel())->data();
  if (fused_norm_[size_t(i)] >= 0) {
    const int k = fused_norm_[size_t(i)];
    NormPrelu p;
    p.slope = cparam_ptr(i, ParamRole::Weight);
    p.num_a = n.prelu_n;
    return norm_forward(k, y, act_[size_t(nodes_[size_t(k)].in[0])]->data(), train, &p);
  }
  const NodeSpec& src = nodes_[size_t(n.in[0])];
  const float* x = act_[size_t(n.in[0])]->data();
  const int64_t count = N * n.shape.numel();
  const Shape4& in = src.shape;
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
    case OpKind::ConvTranspose3d: {
      Conv3dShape s;
      VX_TRY(conv_shape_of(n, in, N, &s));
      ConvEpilogue ep;
      const int j = train || !fold_ ? -1 : eval_bn_[size_t(i)];
      if (j >= 0) {
        // Inference: y = prelu(bn(conv)) in one pass. bn(v) = v * s + (beta - mean * s),
        // s = gamma / sqrt(var + eps), folded into the conv's weights and bias by the kernels.
        const NodeSpec& bn = nodes_[size_t(j)];
        const float* gamma = cparam_ptr(j, ParamRole::Weight);
        const float* beta = cparam_ptr(j, ParamRole::Bias);
        const float* mean = cparam_ptr(j, ParamRole::RunningMean);
        const float* var = cparam_ptr(j, ParamRole::RunningVar);
        fold_scale_.resize(size_t(n.cout));
        fold_shift_.resize(size_t(n.cout));
        for (int c = 0; c < n.cout; ++c) {
          const double sc = (gamma ? gamma[c] : 1.0) / std::sqrt(double(var[c]) + double(bn.eps));
          fold_scale_[size_t(c)] = float(sc);
          fold_shift_[size_t(c)] = float((beta ? beta[c] : 0.0) - double(mean[c]) * sc);
        }
        ep.scale = fold_scale_.data();
        ep.shift = fold_shift_.data();
        int last = j;
        if (fused_into_[size_t(j)] >= 0) {  // and the PReLU the norm is fused into
          last = fused_into_[size_t(j)];
          ep.slope = cparam_ptr(last, ParamRole::Weight);
          ep.num_slopes = nodes_[size_t(last)].prelu_n;
        }
        y = ensure(act_[size_t(last)], N * nodes_[size_t(last)].shape.numel())->data();
        produced_[size_t(j)] = produced_[size_t(last)] = 1;
        last_folded_ = true;
      }
      if (!train) {
        if (pack_cache_.size() != nodes_.size()) pack_cache_.resize(nodes_.size());
        auto& pc = pack_cache_[size_t(i)];
        if (!pc) {
          try {
            pc = std::make_unique<ConvPackCache>();
          } catch (const std::bad_alloc&) {
            return fail(Status::OutOfMemory, "forward: out of memory for the packed weights of node %d", i);
          }
        }
        ep.cache = pc.get();
        ep.weights_gen = params_gen_.load(std::memory_order_relaxed);
      }
      const ConvEpilogue* epp = j >= 0 || !train ? &ep : nullptr;
      if (n.op == OpKind::Conv3d) {
        return conv3d_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), s, epp);
      }
      return conv_transpose3d_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), s, epp);
    }
    case OpKind::Linear:
      return linear_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), N, in.c, n.cout);
    case OpKind::BatchNorm3d:
    case OpKind::InstanceNorm3d:
      return norm_forward(i, y, x, train, nullptr);
    case OpKind::Relu: return relu_forward(y, x, count);
    case OpKind::Prelu: return prelu_forward(y, x, cparam_ptr(i, ParamRole::Weight), N, in.c, in.spatial(), n.prelu_n);
    case OpKind::LeakyRelu: return leaky_relu_forward(y, x, count, n.slope);
    case OpKind::Sigmoid: return sigmoid_forward(y, x, count);
    case OpKind::Softmax: return softmax_forward(y, x, N, in.c, in.spatial());
    case OpKind::Dropout:
      if (train && n.drop_p > 0) {
        save_a_[size_t(i)].resize(size_t(count));
        // Each dropout node draws its own stream: the step is offset by the node index.
        return dropout_forward(y, save_a_[size_t(i)].data(), x, count, n.drop_p, dseed,
                               dstep * uint64_t(nodes_.size()) + uint64_t(i));
      }
      std::memcpy(y, x, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Flatten:
    case OpKind::Reshape:
      std::memcpy(y, x, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Add:
      return add_forward(y, x, act_[size_t(n.in[1])]->data(), count);
  }
  return fail(Status::Internal, "forward: unhandled op");
}

int Net::Slots::acquire(int64_t count) {
  int best = -1, largest = -1;
  for (size_t s = 0; s < size.size(); ++s) {
    if (busy[s]) continue;
    if (size[s] >= count && (best < 0 || size[s] < size[size_t(best)])) best = int(s);
    if (largest < 0 || size[s] > size[size_t(largest)]) largest = int(s);
  }
  if (best < 0 && largest >= 0) {
    best = largest;
    size[size_t(best)] = count;
  }
  if (best < 0) {
    best = int(size.size());
    size.push_back(count);
    busy.push_back(0);
  }
  busy[size_t(best)] = 1;
  return best;
}

Status Net::backward(const std::vector<const float*>& dout, bool need_input_grad) {
  if (!have_forward_) return fail(Status::InvalidArgument, "backward: call forward first");
  input_grad_valid_ = false;
  if (last_folded_) {
    // The folded inference forward stored neither the convs' nor the norms' outputs: recompute them.
    fold_ = false;
    const Status st = forward_nodes(false, 0, 0);
    fold_ = true;
    VX_TRY(st);
  }
  if (dout.size() != outputs_.size())
    return fail(Status::InvalidArgument, "backward: %zu output gradients given, the network has %zu outputs", dout.size(), outputs_.size());
  try {
    VX_TRY(backward_pass(dout, need_input_grad, true));
    slot_mem_.resize(slots_.size.size());
    slot_cap_.resize(slots_.size.size(), 0);
    for (size_t s = 0; s < slots_.size.size(); ++s)
      if (slot_cap_[s] < slots_.size[s]) {
        slot_mem_[s].reset();  // the old block first: peak memory is the new one alone
        slot_mem_[s].reset(new float[size_t(slots_.size[s])]);
        slot_cap_[s] = slots_.size[s];
      }
    VX_TRY(backward_pass(dout, need_input_grad, false));
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "backward: out of memory for batch %d", batch_);
  }
  input_grad_valid_ = need_input_grad;
  return Status::Ok;
}

// Where node j's gradient is written when it is first produced: the input gradient for node 0, else a
// newly acquired slot. Null in a dry pass.
float* Net::grad_target(int j, bool dry) {
  const int64_t count = batch_ * nodes_[size_t(j)].shape.numel();
  float* g = nullptr;
  if (j == 0) {
    if (!dry) g = ensure(input_grad_, count)->data();
  } else {
    grad_slot_[size_t(j)] = slots_.acquire(count);
    if (!dry) g = slot_mem_[size_t(grad_slot_[size_t(j)])].get();
  }
  grad_in_[size_t(j)] = grad_out_[size_t(j)] = g;
  return g;
}

// One backward sweep. A dry pass only assigns slots (no pointer is used, no kernel runs); the real
// pass makes the same assignment over the allocated slots and computes.
Status Net::backward_pass(const std::vector<const float*>& dout, bool need_input_grad, bool dry) {
  const int N = batch_;
  slots_.size.clear();
  slots_.busy.clear();
  has_.assign(nodes_.size(), 0);
  grad_in_.assign(nodes_.size(), nullptr);
  grad_out_.assign(nodes_.size(), nullptr);
  grad_slot_.assign(nodes_.size(), -1);
  auto add_into = [](float* g, const float* s, int64_t count) {
    parallel_for(count, 1 << 16, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) g[e] += s[e];
    });
  };
  for (size_t k = 0; k < outputs_.size(); ++k) {
    const int o = outputs_[k];
    if (!dout[k]) continue;
    const int64_t count = N * nodes_[size_t(o)].shape.numel();
    if (o != 0 && consumers_[size_t(o)] == 1) {
      grad_in_[size_t(o)] = dout[k];  // nothing else adds to it: read the caller's buffer in place
    } else if (!has_[size_t(o)]) {
      float* g = grad_target(o, dry);
      if (!dry) std::memcpy(g, dout[k], size_t(count) * sizeof(float));
    } else if (!dry) {
      add_into(grad_out_[size_t(o)], dout[k], count);
    }
    has_[size_t(o)] = 1;
  }
  for (int i = int(nodes_.size()) - 1; i >= 1; --i) {
    if (!has_[size_t(i)]) continue;
    // A PReLU fused with a norm passes its gradient straight to the norm's input.
    const std::vector<int>& ins = nodes_[size_t(fused_norm_[size_t(i)] >= 0 ? fused_norm_[size_t(i)] : i)].in;
    float* dx[2] = {nullptr, nullptr};
    bool want[2] = {false, false};
    int temp[2] = {-1, -1};  // slot of a contribution to add to a gradient that already exists
    for (size_t j = 0; j < ins.size(); ++j) {
      const int src = ins[j];
      if (src == 0 && !need_input_grad) continue;
      want[j] = true;
      const bool twice = j == 1 && src == ins[0];  // y = a + a: the second contribution must add
      if (!has_[size_t(src)] && !twice) {
        dx[j] = grad_target(src, dry);
      } else {
        temp[j] = slots_.acquire(N * nodes_[size_t(src)].shape.numel());
        if (!dry) dx[j] = slot_mem_[size_t(temp[j])].get();
      }
    }
    if (!dry) VX_TRY(backward_node(i, grad_in_[size_t(i)], dx[0], dx[1]));
    for (size_t j = 0; j < ins.size(); ++j) {
      if (!want[j]) continue;
      const int src = ins[j];
      if (temp[j] >= 0) {
        if (!dry) add_into(grad_out_[size_t(src)], dx[j], N * nodes_[size_t(src)].shape.numel());
        slots_.release(temp[j]);
      }
      has_[size_t(src)] = 1;
    }
    if (grad_slot_[size_t(i)] >= 0) slots_.release(grad_slot_[size_t(i)]);  // consumed
  }
  return Status::Ok;
}

// Backward of norm node i (alone, or with the PReLU it is fused into: dy is then the PReLU's).
Status Net::norm_backward(int i, const float* dy, float* dx, const NormPrelu* prelu) {
  const NodeSpec& n = nodes_[size_t(i)];
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const float* x = act_[size_t(n.in[0])]->data();
  NormShape ns;
  ns.n = batch_; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  float* dg = grad_ptr(i, ParamRole::Weight);
  float* db = grad_ptr(i, ParamRole::Bias);
  const float* gamma = cparam_ptr(i, ParamRole::Weight);
  const float* sa = save_a_[size_t(i)].data();
  const float* sb = save_b_[size_t(i)].data();
  if (n.op == OpKind::InstanceNorm3d) return instance_norm3d_backward(dx, dg, db, dy, x, gamma, sa, sb, ns, prelu);
  if (last_train_) return batch_norm3d_backward(dx, dg, db, dy, x, gamma, sa, sb, ns, prelu);
  return batch_norm3d_backward_eval(dx, dg, db, dy, x, gamma, cparam_ptr(i, ParamRole::RunningMean),
                                    cparam_ptr(i, ParamRole::RunningVar), ns, prelu);
}

Status Net::backward_node(int i, const float* dy, float* dx, float* dx1) {
  const NodeSpec& n = nodes_[size_t(i)];
  if (fused_norm_[size_t(i)] >= 0) {
    const int k = fused_norm_[size_t(i)];
    NormPrelu p;
    p.slope = cparam_ptr(i, ParamRole::Weight);
    p.num_a = n.prelu_n;
    p.dslope = grad_ptr(i, ParamRole::Weight);
    p.beta = cparam_ptr(k, ParamRole::Bias);
    return norm_backward(k, dy, dx, &p);
  }
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const float* x = act_[size_t(n.in[0])]->data();
  const float* y = act_[size_t(i)]->data();
  const int N = batch_;
  const int64_t count = N * n.shape.numel();
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
    case OpKind::ConvTranspose3d: {
      Conv3dShape s;
      VX_TRY(conv_shape_of(n, in, N, &s));
      if (n.op == OpKind::Conv3d) {
        return conv3d_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                               cparam_ptr(i, ParamRole::Weight), s);
      }
      return conv_transpose3d_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                                       cparam_ptr(i, ParamRole::Weight), s);
    }
    case OpKind::Linear:
      return linear_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                             cparam_ptr(i, ParamRole::Weight), N, in.c, n.cout);
    case OpKind::BatchNorm3d:
    case OpKind::InstanceNorm3d:
      return norm_backward(i, dy, dx, nullptr);
    case OpKind::Relu: return dx ? relu_backward(dx, dy, x, count) : Status::Ok;
    case OpKind::Prelu:
      return prelu_backward(dx, grad_ptr(i, ParamRole::Weight), dy, x, cparam_ptr(i, ParamRole::Weight), N, in.c,
                            in.spatial(), n.prelu_n);
    case OpKind::LeakyRelu: return dx ? leaky_relu_backward(dx, dy, x, count, n.slope) : Status::Ok;
    case OpKind::Sigmoid: return dx ? sigmoid_backward(dx, dy, y, count) : Status::Ok;
    case OpKind::Softmax: return dx ? softmax_backward(dx, dy, y, N, in.c, in.spatial()) : Status::Ok;
    case OpKind::Dropout:
      if (!dx) return Status::Ok;
      if (last_train_ && n.drop_p > 0) return dropout_backward(dx, dy, save_a_[size_t(i)].data(), count);
      std::memcpy(dx, dy, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Flatten:
    case OpKind::Reshape:
      if (dx) std::memcpy(dx, dy, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Add:
      if (dx) std::memcpy(dx, dy, size_t(count) * sizeof(float));
      if (dx1) std::memcpy(dx1, dy, size_t(count) * sizeof(float));
      return Status::Ok;
  }
  return fail(Status::Internal, "backward: unhandled op");
}

}  // namespace vx
