// graph: the model description every engine shares: the spec parser, per-node shapes, the parameter
// layout, and PyTorch's default initialisation. vx::Net (the CPU executor, net.h) and
// vx::cuda::NetCuda (native/cuda/net_cuda.h) are both built on a vx::Model; neither constructs the other.
//
// A network is described by a small text spec, one node per line, so that the N-API addons, the WASM
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
#include <cstdint>
#include <string>
#include <vector>

#include "conv3d.h"
#include "status.h"

namespace vx {

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

// The convolution shape of conv3d / conv_transpose3d node n over `batch` samples of per-sample input `in`.
Status conv_shape_of(const NodeSpec& n, const Shape4& in, int batch, Conv3dShape* out);

// A parsed spec: nodes with their shapes, outputs, use counts and the parameter layout.
class Graph {
 public:
  // Parses and validates a spec; on failure returns InvalidArgument with a message naming the line.
  Status build(const std::string& spec);

  const std::vector<NodeSpec>& nodes() const { return nodes_; }
  const std::vector<int>& outputs() const { return outputs_; }
  const Shape4& input_shape() const { return nodes_[0].shape; }
  Shape4 output_shape(int k) const { return nodes_[size_t(outputs_[size_t(k)])].shape; }
  // Uses of each node's output (by later nodes and as a network output).
  const std::vector<int>& consumers() const { return consumers_; }
  const std::vector<ParamEntry>& param_table() const { return table_; }
  // Index into param_table() of (node, role), or -1.
  int param_index(int node, ParamRole role) const { return node_params_[size_t(node)][size_t(role)]; }
  // Index of node's num_batches_tracked counter, or -1.
  int bn_counter(int node) const { return bn_counter_[size_t(node)]; }
  int64_t param_count() const { return np_; }
  int64_t buffer_count() const { return nb_; }
  int counter_count() const { return nc_; }
  // Conv/linear FLOPs of one forward pass per sample (multiply-adds counted as 2).
  double forward_flops() const;
  // PyTorch's default initialisation (kaiming_uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in))
  // biases, BN weight 1 / bias 0 / running 0 and 1, PReLU 0.25) drawn from the Philox stream `seed`,
  // into params and buffers laid out as param_table() says.
  void init_params(uint64_t seed, float* params, float* buffers) const;

 protected:
  std::vector<NodeSpec> nodes_;
  std::vector<int> outputs_;
  std::vector<int> consumers_;
  std::vector<ParamEntry> table_;
  std::vector<std::vector<int>> node_params_;  // per node: indices into table_ by role (-1 if none)
  std::vector<int> bn_counter_;                // per node: index into the counters or -1
  int64_t np_ = 0, nb_ = 0;
  int nc_ = 0;

 private:
  Status parse(const std::string& spec);
  Status infer_shapes_and_layout();
};

// A graph with its parameters, gradients, buffers and num_batches_tracked counters on the host: what
// the CPU executor computes with, and what the CUDA engine uploads from and downloads into.
class Model : public Graph {
 public:
  // build() and allocation; the parameters are initialised with seed 0.
  Status create(const std::string& spec);

  int64_t num_params() const { return int64_t(params_.size()); }
  int64_t num_buffers() const { return int64_t(buffers_.size()); }
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  float* buffers() { return buffers_.data(); }
  // One num_batches_tracked counter per batch_norm3d node, in node order.
  std::vector<int64_t>& counters() { return counters_; }
  void init_params(uint64_t seed);  // Graph::init_params into this model's storage; counters reset
  void zero_grad();

 protected:
  std::vector<float> params_, grads_, buffers_;
  std::vector<int64_t> counters_;
};

}  // namespace vx
