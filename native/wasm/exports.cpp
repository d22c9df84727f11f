// exports: the C ABI of the WebAssembly build, a thin layer over vx::Net (native/core/net.h) for
// inference in browsers and Node. The kernels are native/core's; nothing here computes a layer.
//
// Conventions (see ts/wasm/runtime.ts, the only caller):
// - Every fallible call returns an int32 status (vx::Status: 0 ok); on failure vx_last_error() holds
//   the message. Calls that return a pointer return 0 on failure, with the message set.
// - JS owns memory it allocates with vx_alloc/vx_free; a net owns its parameters, its input buffer
//   and its activations, and frees them all in vx_net_destroy.
// - Sizes cross the boundary as int32 (a wasm32 memory holds at most 2^30 floats); seeds as doubles
//   holding safe integers, to keep BigInt out of the ABI.
// - Layout NCDHW, float32, like everywhere in voxvae.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "activation.h"
#include "loss.h"
#include "net.h"
#include "parallel.h"
#include "status.h"

#if defined(__EMSCRIPTEN__)
#include <emscripten/emscripten.h>
#include <malloc.h>
#define VX_EXPORT extern "C" EMSCRIPTEN_KEEPALIVE
#else
#define VX_EXPORT extern "C"
#endif

namespace {

using vx::Status;

// Bump when a signature below changes; the loader refuses a .wasm with another version.
constexpr int32_t kAbiVersion = 2;  // 2: vx_activate replaced vx_softmax and vx_sigmoid

// Largest byte count a single allocation may ask for: leaves the rest of the 4 GiB space to the stack,
// the parameters and the allocator's own bookkeeping.
constexpr uint64_t kMaxAlloc = (uint64_t(1) << 32) - (uint64_t(64) << 20);

struct WasmNet {
  std::unique_ptr<vx::Net> net;
  vx::BufferPtr input;  // batch * input numel floats, written by JS through vx_net_input
  int input_batch = 0;
};

int32_t st(Status s) { return static_cast<int32_t>(s); }

bool valid_node(WasmNet* w, int32_t i) { return w && i >= 0 && size_t(i) < w->net->nodes().size(); }

// Bytes the activations of a forward pass of `batch` samples need, plus headroom for the kernels'
// per-thread scratch (column tiles and packed panels: a few MiB per thread).
uint64_t forward_bytes(const vx::Net& net, int batch) {
  uint64_t floats = 0;
  const auto& nodes = net.nodes();
  for (size_t i = 1; i < nodes.size(); ++i) floats += uint64_t(batch) * uint64_t(nodes[i].shape.numel());
  return floats * sizeof(float) + uint64_t(vx::num_threads()) * (uint64_t(8) << 20);
}

}  // namespace

// ---- runtime -------------------------------------------------------------------------------------------

VX_EXPORT int32_t vx_abi_version() { return kAbiVersion; }

// 1 when this build uses WebAssembly SIMD (the engine validated it before instantiating).
VX_EXPORT int32_t vx_simd() {
#if defined(__wasm_simd128__)
  return 1;
#else
  return 0;
#endif
}

VX_EXPORT const char* vx_last_error() { return vx::last_error(); }
VX_EXPORT void vx_clear_error() { vx::clear_error(); }

VX_EXPORT void* vx_alloc(uint32_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = std::malloc(bytes);
  if (!p) vx::fail(Status::OutOfMemory, "wasm: cannot allocate %u bytes", bytes);
  return p;
}
VX_EXPORT void vx_free(void* p) { std::free(p); }

// Bytes currently allocated by the module's malloc (leak tests, memory reports).
VX_EXPORT double vx_heap_bytes() {
#if defined(__EMSCRIPTEN__)
  struct mallinfo mi = mallinfo();
  return double(uint32_t(mi.uordblks));
#else
  return 0;
#endif
}

VX_EXPORT int32_t vx_num_threads() { return vx::num_threads(); }
VX_EXPORT int32_t vx_set_num_threads(int32_t n) {
  vx::set_num_threads(n);
  return vx::num_threads();
}

// ---- networks ------------------------------------------------------------------------------------------

// Builds a network from a spec (net.h) of `len` bytes at `spec`; *out receives the handle.
VX_EXPORT int32_t vx_net_create(const char* spec, uint32_t len, WasmNet** out) {
  if (!spec || !out) return st(vx::fail(Status::InvalidArgument, "vx_net_create: null argument"));
  *out = nullptr;
  std::unique_ptr<WasmNet> w(new (std::nothrow) WasmNet());
  if (!w) return st(vx::fail(Status::OutOfMemory, "vx_net_create: out of memory"));
  Status s = vx::Net::create(std::string(spec, len), &w->net);
  if (s != Status::Ok) return st(s);
  *out = w.release();
  return 0;
}

VX_EXPORT void vx_net_destroy(WasmNet* w) { delete w; }

VX_EXPORT int32_t vx_net_num_nodes(WasmNet* w) { return w ? int32_t(w->net->nodes().size()) : 0; }

// op kind (vx::OpKind) of node i, -1 if out of range.
VX_EXPORT int32_t vx_net_node_op(WasmNet* w, int32_t i) {
  return valid_node(w, i) ? int32_t(w->net->nodes()[size_t(i)].op) : -1;
}

// Per-sample output shape [C, D, H, W] of node i into out[4].
VX_EXPORT int32_t vx_net_node_shape(WasmNet* w, int32_t i, int32_t* out) {
  if (!valid_node(w, i) || !out) return st(vx::fail(Status::InvalidArgument, "vx_net_node_shape: bad node %d", i));
  const vx::Shape4& s = w->net->nodes()[size_t(i)].shape;
  out[0] = s.c; out[1] = s.d; out[2] = s.h; out[3] = s.w;
  return 0;
}

VX_EXPORT int32_t vx_net_num_params(WasmNet* w) { return w ? int32_t(w->net->num_params()) : 0; }
VX_EXPORT float* vx_net_params(WasmNet* w) { return w ? w->net->params() : nullptr; }
VX_EXPORT int32_t vx_net_num_buffers(WasmNet* w) { return w ? int32_t(w->net->num_buffers()) : 0; }
VX_EXPORT float* vx_net_buffers(WasmNet* w) { return w ? w->net->buffers() : nullptr; }

VX_EXPORT int32_t vx_net_num_entries(WasmNet* w) { return w ? int32_t(w->net->param_table().size()) : 0; }

// Entry i of the parameter table into out[11]: node, role (vx::ParamRole), is_buffer, offset, count,
// ndim, shape[0..ndim) (ndim <= 5).
VX_EXPORT int32_t vx_net_entry(WasmNet* w, int32_t i, int32_t* out) {
  if (!w || !out || i < 0 || size_t(i) >= w->net->param_table().size())
    return st(vx::fail(Status::InvalidArgument, "vx_net_entry: bad entry %d", i));
  const vx::ParamEntry& e = w->net->param_table()[size_t(i)];
  if (e.shape.size() > 5) return st(vx::fail(Status::Internal, "vx_net_entry: %zu dimensions", e.shape.size()));
  out[0] = e.node;
  out[1] = int32_t(e.role);
  out[2] = e.is_buffer ? 1 : 0;
  out[3] = int32_t(e.offset);
  out[4] = int32_t(e.count);
  out[5] = int32_t(e.shape.size());
  for (size_t d = 0; d < e.shape.size(); ++d) out[6 + d] = int32_t(e.shape[d]);
  return 0;
}

VX_EXPORT int32_t vx_net_num_outputs(WasmNet* w) { return w ? int32_t(w->net->outputs().size()) : 0; }

// Per-sample shape of output k into out[4].
VX_EXPORT int32_t vx_net_output_shape(WasmNet* w, int32_t k, int32_t* out) {
  if (!w || !out || k < 0 || size_t(k) >= w->net->outputs().size())
    return st(vx::fail(Status::InvalidArgument, "vx_net_output_shape: bad output %d", k));
  const vx::Shape4 s = w->net->output_shape(k);
  out[0] = s.c; out[1] = s.d; out[2] = s.h; out[3] = s.w;
  return 0;
}

// Bytes a forward pass of `batch` samples needs for activations (an estimate with scratch headroom),
// as a double: it can exceed 2^32, which is the point of asking.
VX_EXPORT double vx_net_forward_bytes(WasmNet* w, int32_t batch) {
  if (!w || batch < 1) return 0;
  return double(forward_bytes(*w->net, batch)) + double(batch) * double(w->net->input_shape().numel()) * 4.0;
}

// The input buffer for `batch` samples (batch * input numel floats), to be filled before
// vx_net_forward. Stays valid until the next call with another batch or vx_net_destroy.
VX_EXPORT float* vx_net_input(WasmNet* w, int32_t batch) {
  if (!w || batch < 1) {
    vx::fail(Status::InvalidArgument, "vx_net_input: batch must be >= 1, got %d", batch);
    return nullptr;
  }
  const uint64_t count = uint64_t(batch) * uint64_t(w->net->input_shape().numel());
  if (count * sizeof(float) > kMaxAlloc) {
    vx::fail(Status::OutOfMemory, "vx_net_input: %llu input values do not fit in WebAssembly's 4 GiB memory",
             (unsigned long long)count);
    return nullptr;
  }
  // The only other holder of the buffer is the net itself (its input activation, kept for a backward
  // pass that inference never runs), so a buffer of the right size is rewritten in place.
  if (!w->input || w->input->size() != count) {
    float* fresh = static_cast<float*>(std::malloc(size_t(count) * sizeof(float)));
    if (!fresh) {
      vx::fail(Status::OutOfMemory, "vx_net_input: cannot allocate %llu input values", (unsigned long long)count);
      return nullptr;
    }
    std::free(fresh);  // only a probe: std::vector below must not abort on failure
    w->input.reset();
    w->input = std::make_shared<vx::Buffer>(size_t(count));
  }
  w->input_batch = batch;
  return w->input->data();
}

// Eval-mode forward of the batch written through vx_net_input. Before running, checks that the
// activations fit in the memory that is left (the C++ allocator would otherwise abort the instance).
VX_EXPORT int32_t vx_net_forward(WasmNet* w, int32_t batch) {
  if (!w) return st(vx::fail(Status::InvalidArgument, "vx_net_forward: null net"));
  if (!w->input || batch != w->input_batch)
    return st(vx::fail(Status::InvalidArgument, "vx_net_forward: call vx_net_input(%d) first", batch));
  const uint64_t need = forward_bytes(*w->net, batch);
  if (need > kMaxAlloc)
    return st(vx::fail(Status::OutOfMemory,
                       "forward: batch %d needs %.2f GiB of activations; WebAssembly memory is limited to 4 GiB "
                       "(use a smaller batch or the native engine)",
                       batch, double(need) / double(1 << 30)));
  void* probe = std::malloc(size_t(need));
  if (!probe)
    return st(vx::fail(Status::OutOfMemory,
                       "forward: batch %d needs %.2f GiB of activations and the WebAssembly memory cannot grow "
                       "that far (use a smaller batch)",
                       batch, double(need) / double(1 << 30)));
  std::free(probe);
  return st(w->net->forward(w->input, batch, /*train=*/false));
}

// Output k of the last forward (batch * numel floats); valid until the next forward or destroy.
VX_EXPORT float* vx_net_output(WasmNet* w, int32_t k) {
  if (!w || k < 0 || size_t(k) >= w->net->outputs().size() || !w->net->output(k)) {
    vx::fail(Status::InvalidArgument, "vx_net_output: no output %d (call vx_net_forward first)", k);
    return nullptr;
  }
  return w->net->output(k)->data();
}

// Backward of the last eval-mode vx_net_forward of a one-output net (a decoder): dout holds the gradient
// of an objective with respect to that output (batch * output numel floats, caller memory); the gradient
// with respect to the input is written to dx (batch * input numel floats). This is the vector-Jacobian
// product latent fitting needs (native/core's Net::backward, as the native engine runs it). Parameter
// gradients are accumulated along the way and never used: nothing a later forward reads changes.
VX_EXPORT int32_t vx_net_backward_input(WasmNet* w, const float* dout, float* dx) {
  if (!w || !dout || !dx) return st(vx::fail(Status::InvalidArgument, "vx_net_backward_input: null argument"));
  if (w->net->outputs().size() != 1)
    return st(vx::fail(Status::InvalidArgument, "vx_net_backward_input: the net has %zu outputs, not 1",
                       w->net->outputs().size()));
  if (!w->input || w->net->batch() != w->input_batch || !w->net->output(0))
    return st(vx::fail(Status::InvalidArgument, "vx_net_backward_input: call vx_net_forward first"));
  const Status s = w->net->backward({dout}, /*need_input_grad=*/true);
  if (s != Status::Ok) return st(s);
  const vx::BufferPtr& g = w->net->input_grad();
  const uint64_t count = uint64_t(w->input_batch) * uint64_t(w->net->input_shape().numel());
  if (!g || g->size() < count) return st(vx::fail(Status::Internal, "vx_net_backward_input: no input gradient"));
  std::memcpy(dx, g->data(), size_t(count) * sizeof(float));
  return 0;
}

// ---- elementwise ops on caller memory ------------------------------------------------------------------

// z = mu (mode 1), mu + exp(logvar / 2) (mode 2) or mu + exp(logvar / 2) * eps with eps from the Philox
// stream (seed, step) (mode 0), exactly like the native engine. eps may be null.
VX_EXPORT int32_t vx_reparameterize(float* z, float* eps, const float* mu, const float* logvar, int32_t n,
                                    int32_t l, int32_t mode, double seed, double step) {
  if (mode < 0 || mode > 2) return st(vx::fail(Status::InvalidArgument, "reparameterize: mode %d", mode));
  if (!(seed >= 0 && seed <= 9007199254740991.0) || !(step >= 0 && step <= 9007199254740991.0))
    return st(vx::fail(Status::InvalidArgument, "reparameterize: seed and step must be safe integers >= 0"));
  return st(vx::reparameterize_forward(z, eps, mu, logvar, n, l, static_cast<vx::LatentMode>(mode),
                                       uint64_t(seed), uint64_t(step)));
}

// The output activation of [n, c, spatial] logits, y may equal x: native/core's output_activation_forward,
// the function the CPU addon's decode runs. activation: 0 none, 1 sigmoid, 2 softmax over c
// (vx::OutputActivation; ts/wasm/runtime.ts OUTPUT_ACTIVATION_CODE spells them as TS does).
VX_EXPORT int32_t vx_activate(float* y, const float* x, int32_t activation, int32_t n, int32_t c, int32_t spatial) {
  if (activation < 0 || activation > 2) return st(vx::fail(Status::InvalidArgument, "activate: activation %d", activation));
  return st(vx::output_activation_forward(y, x, static_cast<vx::OutputActivation>(activation), n, c, spatial));
}

// Binary/label mask of [n, c, spatial] scores: c >= 2 gives the index of the largest channel (the first
// on ties) per voxel, mask [n, spatial]; c == 1 gives x > threshold, mask [n, spatial].
// Scores may be logits: softmax and sigmoid keep the order (pass the logit threshold for c == 1).
VX_EXPORT int32_t vx_argmax(uint8_t* mask, const float* x, int32_t n, int32_t c, int32_t spatial,
                            float threshold) {
  if (!mask || !x || n < 1 || c < 1 || c > 255 || spatial < 1)
    return st(vx::fail(Status::InvalidArgument, "argmax: bad arguments n=%d c=%d spatial=%d", n, c, spatial));
  for (int32_t b = 0; b < n; ++b) {
    const float* xb = x + int64_t(b) * c * spatial;
    uint8_t* mb = mask + int64_t(b) * spatial;
    if (c == 1) {
      for (int32_t s = 0; s < spatial; ++s) mb[s] = xb[s] > threshold ? 1 : 0;
      continue;
    }
    // Channel-outer loops keep the reads contiguous; the running winner is kept in the mask itself.
    for (int32_t s = 0; s < spatial; ++s) mb[s] = 0;
    for (int32_t k = 1; k < c; ++k) {
      const float* xk = xb + int64_t(k) * spatial;
      for (int32_t s = 0; s < spatial; ++s)
        if (xk[s] > xb[int64_t(mb[s]) * spatial + s]) mb[s] = uint8_t(k);
    }
  }
  return 0;
}
