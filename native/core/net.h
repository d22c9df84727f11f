// net: a network of native/core ops (a DAG in topological order) with its parameters, gradients,
// buffers (batch-norm running statistics) and activations, run forward and backward on the CPU.
//
// A network is described by a small text spec, one node per line, so that the N-API addon, the WASM
// module and the native tests all build networks from the same description (the TS side writes it):
//
//   input c=1 d=16 h=16 w=8                      node 0: per-sample shape [C, D, H, W]
//   conv3d in=0 cout=4 k=3,3,3 s=2,2,2 p=1,1,1 bias=1
//   conv_transpose3d in=3 cout=2 k=3,3,3 s=2,2,2 p=1,1,1 op=1,1,1 bias=1
//   batch_norm3d in=1 eps=1e-5 momentum=0.1 affine=1
//   instance_norm3d in=1 eps=1e-5 affine=0
//   prelu in=2 n=1            (n = 1 shared slope, or the channel count)
//   relu in=2 | leaky_relu in=2 slope=0.01 | sigmoid in=2 | softmax in=2 | dropout in=2 rate=0.25
//   flatten in=4              per-sample [C*D*H*W, 1, 1, 1]
//   reshape in=5 c=8 d=2 h=2 w=1
//   linear in=5 out=6 bias=1  (input must be flat)
//   add in=3,7                residual add of two same-shaped nodes
//   output 9 10               the network's outputs, in order (last line)
//
// Node i is the i-th line (0-based). Inputs must refer to earlier nodes. Blank lines and lines
// starting with '#' are ignored.
//
// Parameters live in one flat float array in node order (per node: weight, then bias), gradients in
// a second one of the same layout, and buffers (running_mean, running_var) in a third; each BN node
// also has an int64 num_batches_tracked counter. param_table() tells where each tensor is, so the
// caller can attach PyTorch names.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "conv3d.h"
#include "norm.h"
#include "status.h"

namespace vx {

// A reference-counted float buffer. Tensors handed to JS share these; a network reuses an activation
// buffer only while nobody else holds it (use_count() == 1), so results handed out stay valid.
using Buffer = std::vector<float>;
using BufferPtr = std::shared_ptr<Buffer>;

enum class OpKind : int32_t {
  Input, Conv3d, ConvTranspose3d, Linear, BatchNorm3d, InstanceNorm3d, Relu, Prelu, LeakyRelu,
  Sigmoid, Softmax, Dropout, Flatten, Reshape, Add
};
const char* op_name(OpKind k);

struct Shape4 {  // per-sample [C, D, H, W]
  int c = 1, d = 1, h = 1, w = 1;
  int64_t numel() const { return int64_t(c) * d * h * w; }
  int64_t spatial() const { return int64_t(d) * h * w; }
};

struct NodeSpec {
  OpKind op = OpKind::Input;
  std::vector<int> in;
  Shape4 shape;             // output per-sample shape (computed)
  int cout = 0;             // conv/linear output channels or features
  int k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, p[3] = {0, 0, 0}, op_pad[3] = {0, 0, 0};
  bool bias = true;
  bool affine = true;
  float eps = 1e-5f, momentum = 0.1f, slope = 0.01f, drop_p = 0.f;
  int prelu_n = 1;
};

enum class ParamRole : int32_t { Weight = 0, Bias = 1, RunningMean = 2, RunningVar = 3 };

struct ParamEntry {
  int node;
  ParamRole role;
  bool is_buffer;           // false: in params/grads; true: in buffers
  int64_t offset, count;
  std::vector<int64_t> shape;
};

class Net {
 public:
  // Parses and validates a spec; on failure returns InvalidArgument with a message naming the line.
  static Status create(const std::string& spec, std::unique_ptr<Net>* out);

  const std::vector<NodeSpec>& nodes() const { return nodes_; }
  const std::vector<int>& outputs() const { return outputs_; }
  const Shape4& input_shape() const { return nodes_[0].shape; }
  const std::vector<ParamEntry>& param_table() const { return table_; }
  int64_t num_params() const { return int64_t(params_.size()); }
  int64_t num_buffers() const { return int64_t(buffers_.size()); }
  // Writable parameters. Every call counts as a write (packed-weight caches are dropped), so take the
  // pointer again after a forward before writing through it.
  float* params() {
    params_gen_.fetch_add(1, std::memory_order_relaxed);
    return params_.data();
  }
  float* grads() { return grads_.data(); }
  float* buffers() { return buffers_.data(); }
  // One num_batches_tracked counter per batch_norm3d node, in node order.
  std::vector<int64_t>& counters() { return counters_; }
  // Conv/linear FLOPs of one forward pass per sample (multiply-adds counted as 2).
  double forward_flops() const;

  // PyTorch's default initialisation (kaiming_uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in))
  // biases, BN weight 1 / bias 0 / running 0 and 1, PReLU 0.25) drawn from the Philox stream `seed`.
  void init_params(uint64_t seed);
  void zero_grad();

  // Forward for `batch` samples; x holds batch * input numel floats and must stay alive until
  // backward. train selects batch statistics (and updates running ones) vs running statistics, and
  // enables dropout with the Philox stream (dropout_seed, dropout_step).
  Status forward(const BufferPtr& x, int batch, bool train, uint64_t dropout_seed = 0,
                 uint64_t dropout_step = 0);
  // The k-th output of the last forward (batch * numel floats), shared.
  const BufferPtr& output(int k) const { return act_[size_t(outputs_[size_t(k)])]; }
  Shape4 output_shape(int k) const { return nodes_[size_t(outputs_[size_t(k)])].shape; }
  int batch() const { return batch_; }

  // Backward of the last forward. dout[k] holds the gradient of output k (batch * numel floats).
  // Parameter gradients accumulate into grads(). With need_input_grad, input_grad() is the gradient
  // with respect to x afterwards; otherwise it is not computed.
  // dout[k] is read in place (no copy) when output k's node feeds nothing else; it must not change
  // until backward returns.
  Status backward(const std::vector<const float*>& dout, bool need_input_grad);
  // Null after a backward without need_input_grad (the buffer itself is kept for the next one, so that
  // alternating calls do not allocate and fault in a fresh input-sized buffer each time).
  const BufferPtr& input_grad() const {
    static const BufferPtr none;
    return input_grad_valid_ ? input_grad_ : none;
  }
  // Floats held for backward's node gradients (see Slots below), for tests and memory reports.
  int64_t grad_slot_floats() const {
    int64_t t = 0;
    for (int64_t c : slot_cap_) t += c;
    return t;
  }

 private:
  Status parse(const std::string& spec);
  Status infer_shapes_and_layout();
  float* param_ptr(int node, ParamRole role);
  const float* cparam_ptr(int node, ParamRole role) const;
  float* grad_ptr(int node, ParamRole role);
  float* buffer_ptr(int node, ParamRole role);
  Status forward_node(int i, bool train, uint64_t dropout_seed, uint64_t dropout_step);
  Status norm_forward(int i, float* y, const float* x, bool train, const NormPrelu* prelu);
  Status norm_backward(int i, const float* dy, float* dx, const NormPrelu* prelu);
  Status backward_pass(const std::vector<const float*>& dout, bool need_input_grad, bool dry);
  Status backward_node(int i, const float* dy, float* dx0, float* dx1);
  float* grad_target(int node, bool dry);
  static BufferPtr& ensure(BufferPtr& b, int64_t count);

  // Backward keeps node-output gradients in slots: a node's gradient is live from its first consumer's
  // backward to its own, and nodes whose lifetimes do not overlap share a slot, so a chain needs about
  // two of its largest gradients instead of one per node. Slots are assigned in call order (smallest
  // free slot that fits, else the largest free one grown, else a new one); a dry pass sizes them, the
  // real pass replays the same assignment. Their memory persists across calls and only grows.
  struct Slots {
    std::vector<int64_t> size;
    std::vector<char> busy;
    int acquire(int64_t count);
    void release(int s) { busy[size_t(s)] = 0; }
  };

  std::vector<NodeSpec> nodes_;
  std::vector<int> outputs_;
  std::vector<int> consumers_;                  // number of uses of each node's output
  // A batch/instance norm whose only consumer is a PReLU runs fused into it (norm.h's NormPrelu): the
  // norm's output is never stored, and the pair takes one pass over memory each way. Per node: the
  // PReLU a norm is fused into, and the norm a PReLU runs (-1: none).
  std::vector<int> fused_into_, fused_norm_;
  std::vector<ParamEntry> table_;
  std::vector<std::vector<int>> node_params_;   // per node: indices into table_ by role (-1 if none)
  std::vector<int> bn_counter_;                 // per node: index into counters_ or -1
  std::vector<float> params_, grads_, buffers_;
  std::vector<int64_t> counters_;

  int batch_ = 0;
  bool last_train_ = false;
  bool have_forward_ = false;
  // Inference folding: conv node i whose only consumer is a batch norm gets eval_bn_[i] = that norm; an
  // eval-mode forward then runs the conv with the norm (and the PReLU the norm is fused into) as its
  // epilogue and stores neither the conv's nor the norm's output. A backward after such a forward
  // re-runs the forward unfused first.
  std::vector<int> eval_bn_;
  std::vector<char> produced_;       // nodes an epilogue already wrote in this forward
  std::vector<float> fold_scale_, fold_shift_;
  bool last_folded_ = false;
  bool fold_ = true;                 // cleared for the unfused re-run
  // Eval-mode forwards keep each conv's packed weights (ConvPackCache) while params_gen_, bumped by
  // params() and init_params(), says the weights are unchanged.
  std::vector<std::unique_ptr<ConvPackCache>> pack_cache_;
  std::atomic<uint64_t> params_gen_{0};
  Status forward_nodes(bool train, uint64_t dropout_seed, uint64_t dropout_step);
  std::vector<BufferPtr> act_;
  BufferPtr input_grad_;
  bool input_grad_valid_ = false;
  std::vector<std::vector<float>> save_a_, save_b_;  // norm statistics / dropout masks per node
  Slots slots_;
  std::vector<std::unique_ptr<float[]>> slot_mem_;
  std::vector<int64_t> slot_cap_;
  // Per node during backward: whether its gradient exists yet, where it is read (a slot, the input
  // gradient, or the caller's dout), where it is written, and its slot (-1: none).
  std::vector<char> has_;
  std::vector<const float*> grad_in_;
  std::vector<float*> grad_out_;
  std::vector<int> grad_slot_;
};

}  // namespace vx
