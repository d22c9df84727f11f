// voxvae CPU addon: module init, the export table shared with the CUDA addon (exports.h) instantiated
// for the CPU engine.
#include "common.h"

namespace vxn {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function tensor = Tensor::Init(env);
  Napi::Function net = InitNet(env);
  Napi::Function adam = InitAdam(env);
  data->tensor_ctor = Napi::Persistent(tensor);
  data->net_ctor = Napi::Persistent(net);
  data->adam_ctor = Napi::Persistent(adam);
  export_common(env, exports, tensor, net, adam, "cpu");
  VXN_ENGINE_OPS(VXN_EXPORT_FN)
  return exports;
}

}  // namespace vxn

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) { return vxn::Init(env, exports); }

NODE_API_MODULE(voxvae, InitAll)
