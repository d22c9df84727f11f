// JS views of a vx::Graph / vx::Model (graph.h), shared by the Net handles of both addons (CPU:
// native/napi/net.cpp, CUDA: native/cuda/napi/net_wrap.inc): the parameter table, the node list, the
// output shapes, host arrays and the num_batches_tracked counters.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "graph.h"
#include "options.h"

namespace vxn {

inline const char* role_name(vx::ParamRole r) {
  switch (r) {
    case vx::ParamRole::Weight: return "weight";
    case vx::ParamRole::Bias: return "bias";
    case vx::ParamRole::RunningMean: return "running_mean";
    case vx::ParamRole::RunningVar: return "running_var";
  }
  return "?";
}

// Per-sample [C, D, H, W].
inline Napi::Array shape_js(Napi::Env env, const vx::Shape4& s) {
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(0u, s.c); a.Set(1u, s.d); a.Set(2u, s.h); a.Set(3u, s.w);
  return a;
}

// paramTable(): [{ node, role, buffer, offset, count, shape }]
inline Napi::Array param_table_js(Napi::Env env, const vx::Graph& g) {
  const auto& t = g.param_table();
  Napi::Array a = Napi::Array::New(env, t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("node", t[i].node);
    o.Set("role", role_name(t[i].role));
    o.Set("buffer", t[i].is_buffer);
    o.Set("offset", double(t[i].offset));
    o.Set("count", double(t[i].count));
    Napi::Array s = Napi::Array::New(env, t[i].shape.size());
    for (size_t k = 0; k < t[i].shape.size(); ++k) s.Set(uint32_t(k), double(t[i].shape[k]));
    o.Set("shape", s);
    a.Set(uint32_t(i), o);
  }
  return a;
}

// nodes(): [{ op, shape }]
inline Napi::Array nodes_js(Napi::Env env, const vx::Graph& g) {
  const auto& nodes = g.nodes();
  Napi::Array a = Napi::Array::New(env, nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", vx::op_name(nodes[i].op));
    o.Set("shape", shape_js(env, nodes[i].shape));
    a.Set(uint32_t(i), o);
  }
  return a;
}

// outputShapes(): per-sample shape of each output.
inline Napi::Array output_shapes_js(Napi::Env env, const vx::Graph& g) {
  Napi::Array a = Napi::Array::New(env, g.outputs().size());
  for (size_t k = 0; k < g.outputs().size(); ++k) a.Set(uint32_t(k), shape_js(env, g.output_shape(int(k))));
  return a;
}

inline Napi::Float32Array copy_out(Napi::Env env, const float* p, int64_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, size_t(n));
  if (n) std::memcpy(a.Data(), p, size_t(n) * sizeof(float));
  return a;
}

inline Napi::Float64Array counters_js(Napi::Env env, const std::vector<int64_t>& c) {
  Napi::Float64Array a = Napi::Float64Array::New(env, c.size());
  for (size_t i = 0; i < c.size(); ++i) a[i] = double(c[i]);
  return a;
}

// setCounters(Float64Array of non-negative integers, one per batch_norm3d node).
inline void set_counters(const Napi::CallbackInfo& info, size_t i, std::vector<int64_t>& c) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_error(env, "EINVAL", "counters must be a Float64Array");
  auto a = info[i].As<Napi::Float64Array>();
  if (a.ElementLength() != c.size())
    throw_error(env, "ESHAPE", "counters has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(c.size()));
  for (size_t k = 0; k < c.size(); ++k) {
    const double v = a[k];
    if (!(v >= 0 && v == std::floor(v) && v <= 9007199254740992.0)) throw_error(env, "EINVAL", "counters must be non-negative integers");
  }
  for (size_t k = 0; k < c.size(); ++k) c[k] = int64_t(a[k]);
}

}  // namespace vxn
