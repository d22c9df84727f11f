// Elementwise activations and the channel softmax (PyTorch semantics). Reference twins: activation_ref.h.
// Backward functions overwrite dx, except parameter gradients (prelu's da), which accumulate.
#pragma once
#include <cstdint>

#include "status.h"

namespace vx {

Status relu_forward(float* y, const float* x, int64_t count);
Status relu_backward(float* dx, const float* dy, const float* x, int64_t count);  // grad 0 at x == 0

// PReLU over [n, c, spatial]: y = x if x > 0 else a[k] * x, k = 0 when num_a == 1, else channel.
// num_a must be 1 or c.
Status prelu_forward(float* y, const float* x, const float* a, int n, int c, int64_t spatial, int num_a);
Status prelu_backward(float* dx, float* da, const float* dy, const float* x, const float* a, int n, int c,
                      int64_t spatial, int num_a);

Status leaky_relu_forward(float* y, const float* x, int64_t count, float slope);
Status leaky_relu_backward(float* dx, const float* dy, const float* x, int64_t count, float slope);

Status sigmoid_forward(float* y, const float* x, int64_t count);
Status sigmoid_backward(float* dx, const float* dy, const float* y, int64_t count);  // uses the output y

// Softmax over the channel axis of [n, c, spatial] (numerically stable: max subtracted).
Status softmax_forward(float* y, const float* x, int n, int c, int64_t spatial);
Status softmax_backward(float* dx, const float* dy, const float* y, int n, int c, int64_t spatial);

// A model's output activation, applied to its logits for inference: the one implementation the CPU addon
// (Net forward's `activation` / `activate`), the WASM module (vx_activate) and the training losses use
// (dice_loss computes the same softmax, shared as softmax_tile in activation_tile.h). The names are the
// ones TS spells: 'none' | 'sigmoid' | 'softmax'.
enum class OutputActivation : int32_t { None = 0, Sigmoid = 1, Softmax = 2 };
const char* output_activation_name(OutputActivation a);
// Parses 'none' | 'sigmoid' | 'softmax'; false for any other name.
bool parse_output_activation(const char* name, OutputActivation* out);
// y = act(x) over [n, c, spatial] (softmax over the channels c, sigmoid elementwise, none copies);
// y may equal x (in place). Threaded; bit-identical for any thread count.
Status output_activation_forward(float* y, const float* x, OutputActivation a, int n, int c, int64_t spatial);
// Its backward from the output y: dx = (∂y/∂x)ᵀ dy (softmax over the channels, sigmoid elementwise, none
// copies). dx must not alias dy or y. Threaded; bit-identical for any thread count.
Status output_activation_backward(float* dx, const float* dy, const float* y, OutputActivation a, int n, int c,
                                  int64_t spatial);

// Residual add: y = a + b (backward is the identity to both inputs, done by the caller).
Status add_forward(float* y, const float* a, const float* b, int64_t count);

// Dropout (inverted): y = x * mask / (1 - p), mask[i] = u_i >= p with u_i = philox_uniform(seed, step, i).
// mask (out, may be null) stores 0 or 1/(1-p) for backward. p in [0, 1).
Status dropout_forward(float* y, float* mask, const float* x, int64_t count, float p, uint64_t seed,
                       uint64_t step);
Status dropout_backward(float* dx, const float* dy, const float* mask, int64_t count);

}  // namespace vx
