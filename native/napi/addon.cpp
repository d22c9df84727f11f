// voxvae CPU addon: module init as one export table (Tensor, Net, Adam, and the op functions).
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
  exports.Set("Tensor", tensor);
  exports.Set("Net", net);
  exports.Set("Adam", adam);
  InitOps(env, exports);
  InitRivera(env, exports);
  exports.Set("backend", Napi::String::New(env, "cpu"));
  exports.Set("abiVersion", Napi::Number::New(env, 2));  // ts/native.ts ADDON_ABI
  return exports;
}

}  // namespace vxn

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) { return vxn::Init(env, exports); }

NODE_API_MODULE(voxvae, InitAll)
