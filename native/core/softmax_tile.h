// The vector body of the channel softmax, shared by softmax_forward (activation.cpp) and dice_loss
// (loss.cpp), so that the probabilities a model outputs and the ones its Dice loss sees are the same bits.
// Include only from a .cpp that uses vmath.h's VXM_DISPATCH: the function is always inlined into each
// ISA's kernel body.
#pragma once
#include <cstdint>

#include "vmath.h"

namespace vx {

// One tile of len <= kV * 8 spatial positions of one sample's [c, spatial] logits: x points at the tile's
// first position of channel 0 (channel stride xs); writes e_k = exp(x_k - max_j x_j) to e (channel
// stride es; may be x itself) and inv[v] = 1 / sum_k e_k for each vector v of 8 positions. The caller
// multiplies e by inv (the probabilities), fused with whatever else it does with them.
template <int kV>
VXM_INLINE void softmax_tile_exp(const float* x, int64_t xs, float* e, int64_t es, int c, int64_t len, vm::f8* inv) {
  constexpr int kL = vm::kLanes;
  vm::f8 mx[kV];
  const int64_t nv = (len + kL - 1) / kL;
  for (int64_t v = 0; v < nv; ++v) mx[v] = vm::load_n(x + v * kL, len - v * kL);
  for (int k = 1; k < c; ++k)
    for (int64_t v = 0; v < nv; ++v) {
      const vm::f8 t = vm::load_n(x + k * xs + v * kL, len - v * kL);
      mx[v] = vm::select(mx[v] < t, t, mx[v]);
    }
  for (int64_t v = 0; v < nv; ++v) inv[v] = vm::splat(0.0f);
  for (int k = 0; k < c; ++k)
    for (int64_t v = 0; v < nv; ++v) {
      const vm::f8 ev = vm::exp_neg(vm::load_n(x + k * xs + v * kL, len - v * kL) - mx[v]);
      vm::store_n(e + k * es + v * kL, ev, len - v * kL);
      inv[v] += ev;
    }
  for (int64_t v = 0; v < nv; ++v) inv[v] = vm::splat(1.0f) / inv[v];
}

}  // namespace vx
