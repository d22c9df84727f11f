// NetCuda: the device twin of vx::Net. It builds the same vx::Model from the spec (graph.h: shapes,
// parameter layout, PyTorch initialisation on the host; no CPU executor), keeps parameters, gradients and buffers in three flat
// device buffers with the same offsets, and runs forward/backward over the node list with the kernels
// of native/cuda. Activations are shared device buffers handed out like the CPU's (reused only while
// nobody else holds them). Each network queues its work on a stream of its own (from the context's
// pool), so two models run concurrently; a forward or backward first waits for the shared stream, where
// its inputs were uploaded. Callers synchronise stream() before reading results on the host.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "allocator.h"
#include "context.h"
#include "graph.h"

namespace vx {
namespace cuda {

class NetCuda {
 public:
  static Status create(const std::string& spec, std::unique_ptr<NetCuda>* out);
  ~NetCuda();
  NetCuda(const NetCuda&) = delete;
  NetCuda& operator=(const NetCuda&) = delete;

  // The graph and the host copies of parameters, gradients, buffers and counters.
  const Model& host() const { return *host_; }
  Model& host() { return *host_; }
  int64_t num_params() const { return host_->num_params(); }
  int64_t num_buffers() const { return host_->num_buffers(); }
  float* params() { return params_->ptr; }
  float* grads() { return grads_->ptr; }
  float* buffers() { return buffers_ ? buffers_->ptr : nullptr; }
  Context& ctx() { return *ctx_; }
  cudaStream_t stream() const { return stream_; }
  Status sync(const char* what);

  // Host <-> device copies of the flat arrays (the host Model's arrays are the staging area).
  Status init_params(uint64_t seed);
  Status upload_params();   // host_->params()/buffers() -> device
  Status download_params(); // device -> host_->params()/buffers()
  Status download_grads();  // device grads -> host_->grads()
  Status zero_grad();

  Status forward(const DeviceBufferPtr& x, int batch, bool train, uint64_t dropout_seed = 0, uint64_t dropout_step = 0);
  const DeviceBufferPtr& output(int k) const { return act_[size_t(host_->outputs()[size_t(k)])]; }
  Shape4 output_shape(int k) const { return host_->output_shape(k); }
  int batch() const { return batch_; }
  Status backward(const std::vector<const float*>& dout, bool need_input_grad);
  const DeviceBufferPtr& input_grad() const { return grad_[0]; }

  // Per-node device time, accumulated over the passes run while Options::profile is on (each such pass
  // records an event pair around every node and synchronises at its end to read them).
  struct NodeTime {
    double fwd_ms = 0, bwd_ms = 0;
    int64_t fwd_calls = 0, bwd_calls = 0;
  };
  const std::vector<NodeTime>& node_times() const { return times_; }
  void reset_node_times() { times_.assign(times_.size(), NodeTime()); }

 private:
  Status forward_node(int i, bool train, uint64_t dropout_step_mul);
  Status backward_node(int i, float* dx0, float* dx1);
  Status ensure(std::vector<DeviceBufferPtr>& v, int i, int64_t count);
  Status ensure_save(std::vector<DeviceBufferPtr>& v, int i, int64_t count);
  float* p(int node, ParamRole role);
  float* g(int node, ParamRole role);

  NetCuda() = default;
  Context* ctx_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Model> host_;
  std::vector<std::vector<int>> roles_;  // per node: param table index by role
  DeviceBufferPtr params_, grads_, buffers_, seed_step_, scratch_;
  std::vector<DeviceBufferPtr> act_, grad_, save_a_, save_b_;
  int batch_ = 0;
  bool last_train_ = false, have_forward_ = false;
  std::vector<NodeTime> times_;
  std::vector<cudaEvent_t> ev_;  // profiling: one event before node 1 and one after every node
  Status profile_mark(size_t k);
  Status profile_collect(bool backward, const std::vector<int>& order);
};

}  // namespace cuda
}  // namespace vx
