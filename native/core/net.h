// net: the CPU executor of a vx::Model (graph.h: the spec, shapes, parameter layout and initialisation):
// activations, forward and backward over the node list, with the inference-time fusions (norm + PReLU,
// conv + batch norm) and the packed-weight caches.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "conv3d.h"
#include "graph.h"
#include "norm.h"
#include "status.h"

namespace vx {

// A reference-counted float buffer. Tensors handed to JS share these; a network reuses an activation
// buffer only while nobody else holds it (use_count() == 1), so results handed out stay valid.
using Buffer = std::vector<float>;
using BufferPtr = std::shared_ptr<Buffer>;

class Net : public Model {
 public:
  // Parses and validates a spec; on failure returns InvalidArgument with a message naming the line.
  static Status create(const std::string& spec, std::unique_ptr<Net>* out);

  // Writable parameters. Every call counts as a write (packed-weight caches are dropped), so take the
  // pointer again after a forward before writing through it.
  float* params() {
    params_gen_.fetch_add(1, std::memory_order_relaxed);
    return params_.data();
  }
  void init_params(uint64_t seed);  // Model::init_params, dropping the packed-weight caches

  // Forward for `batch` samples; x holds batch * input numel floats and must stay alive until
  // backward. train selects batch statistics (and updates running ones) vs running statistics, and
  // enables dropout with the Philox stream (dropout_seed, dropout_step).
  Status forward(const BufferPtr& x, int batch, bool train, uint64_t dropout_seed = 0,
                 uint64_t dropout_step = 0);
  // The k-th output of the last forward (batch * numel floats), shared.
  const BufferPtr& output(int k) const { return act_[size_t(outputs_[size_t(k)])]; }
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
  Status prepare();
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

  // A batch/instance norm whose only consumer is a PReLU runs fused into it (norm.h's NormPrelu): the
  // norm's output is never stored, and the pair takes one pass over memory each way. Per node: the
  // PReLU a norm is fused into, and the norm a PReLU runs (-1: none).
  std::vector<int> fused_into_, fused_norm_;

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
