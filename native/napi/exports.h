// The JS surface of both addons, one list (ts/native.ts NativeBinding): the CPU addon (native/napi) and
// the CUDA addon (native/cuda/napi) each define a function of every C++ name below in their own
// namespace and instantiate the same table; a function missing from an engine is a compile error, not a
// JS surface that differs. The host functions (host_ops.h) are the same code in both.
#pragma once
#include <napi.h>

#include "host_ops.h"

namespace vxn {

// Bumped when a signature below (or of Tensor/Net/Adam) changes; ts/native.ts ADDON_ABI.
// 2: options objects (diceLoss, elementLoss, klNormal, reparameterize, reparameterizeBackward,
// populationKl, variancePenalty, Adam.step) and activate, activateBackward.
// 3: Tensor.readInto, activateInto.
constexpr int kAddonAbi = 3;

// (JS name, C++ function) of the engine's functions: each engine defines these.
#define VXN_ENGINE_OPS(X)                            \
  X(diceLoss, DiceLoss)                              \
  X(elementLoss, ElementLoss)                        \
  X(activate, Activate)                              \
  X(activateInto, ActivateInto)                      \
  X(activateBackward, ActivateBackward)              \
  X(klNormal, KlNormal)                              \
  X(reparameterize, Reparameterize)                  \
  X(reparameterizeBackward, ReparameterizeBackward)  \
  X(populationKl, PopulationKl)                      \
  X(variancePenalty, VariancePenalty)

// Host-side functions, shared code (host_ops.h).
#define VXN_HOST_OPS(X)                 \
  X(philoxNormal, vxn::PhiloxNormal)    \
  X(philoxUniform, vxn::PhiloxUniform)  \
  X(setNumThreads, vxn::SetNumThreads)  \
  X(numThreads, vxn::NumThreads)        \
  X(cpuIsa, vxn::CpuIsa)

#define VXN_EXPORT_FN(js, fn) exports.Set(#js, Napi::Function::New(env, fn, #js));

// The classes and constants: Tensor, Net, Adam, backend ('cpu' | 'cuda'), abiVersion; then the host ops.
inline void export_common(Napi::Env env, Napi::Object exports, Napi::Function tensor, Napi::Function net, Napi::Function adam,
                          const char* backend) {
  exports.Set("Tensor", tensor);
  exports.Set("Net", net);
  exports.Set("Adam", adam);
  exports.Set("backend", Napi::String::New(env, backend));
  exports.Set("abiVersion", Napi::Number::New(env, kAddonAbi));
  VXN_HOST_OPS(VXN_EXPORT_FN)
}

}  // namespace vxn
