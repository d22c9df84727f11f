// graph: spec parsing, shapes, parameter layout and initialisation (see graph.h), shared by the CPU
// executor (net.cpp) and the CUDA engine (native/cuda/net_cuda.cpp).
#include "graph.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>
#include <sstream>

#include "conv_transpose3d.h"
#include "rng.h"

namespace vx {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Input: return "input";
    case OpKind::Conv3d: return "conv3d";
    case OpKind::ConvTranspose3d: return "conv_transpose3d";
    case OpKind::Linear: return "linear";
    case OpKind::BatchNorm3d: return "batch_norm3d";
    case OpKind::InstanceNorm3d: return "instance_norm3d";
    case OpKind::Relu: return "relu";
    case OpKind::Prelu: return "prelu";
    case OpKind::LeakyRelu: return "leaky_relu";
    case OpKind::Sigmoid: return "sigmoid";
    case OpKind::Softmax: return "softmax";
    case OpKind::Dropout: return "dropout";
    case OpKind::Flatten: return "flatten";
    case OpKind::Reshape: return "reshape";
    case OpKind::Add: return "add";
  }
  return "?";
}

namespace {

constexpr int64_t kMaxElems = int64_t(1) << 40;  // per-sample sanity bound

bool parse_op(const std::string& s, OpKind* k) {
  static const struct { const char* n; OpKind k; } ops[] = {
      {"input", OpKind::Input}, {"conv3d", OpKind::Conv3d},
      {"conv_transpose3d", OpKind::ConvTranspose3d}, {"linear", OpKind::Linear},
      {"batch_norm3d", OpKind::BatchNorm3d}, {"instance_norm3d", OpKind::InstanceNorm3d},
      {"relu", OpKind::Relu}, {"prelu", OpKind::Prelu}, {"leaky_relu", OpKind::LeakyRelu},
      {"sigmoid", OpKind::Sigmoid}, {"softmax", OpKind::Softmax}, {"dropout", OpKind::Dropout},
      {"flatten", OpKind::Flatten}, {"reshape", OpKind::Reshape}, {"add", OpKind::Add}};
  for (auto& o : ops)
    if (s == o.n) {
      *k = o.k;
      return true;
    }
  return false;
}

bool parse_int(const std::string& s, long long* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtoll(s.c_str(), &end, 10);
  return end && *end == 0;
}

bool parse_float(const std::string& s, float* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (!end || *end != 0 || !std::isfinite(d)) return false;
  *v = float(d);
  return true;
}

// "3" -> {3,3,3}; "3,2,1" -> {3,2,1}
bool parse_triple(const std::string& s, int out[3]) {
  std::vector<long long> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t c = s.find(',', pos);
    if (c == std::string::npos) c = s.size();
    long long x;
    if (!parse_int(s.substr(pos, c - pos), &x) || x < -(1 << 30) || x > (1 << 30)) return false;
    v.push_back(x);
    pos = c + 1;
  }
  if (v.size() == 1) v = {v[0], v[0], v[0]};
  if (v.size() != 3) return false;
  for (int i = 0; i < 3; ++i) out[i] = int(v[size_t(i)]);
  return true;
}

// The kernel shape of a conv3d / conv_transpose3d node for a batch of N samples of shape `in`.
}  // namespace

Status conv_shape_of(const NodeSpec& n, const Shape4& in, int N, Conv3dShape* out) {
  Conv3dShape& s = *out;
  s.n = N; s.cin = in.c; s.cout = n.cout; s.id = in.d; s.ih = in.h; s.iw = in.w;
  s.kd = n.k[0]; s.kh = n.k[1]; s.kw = n.k[2]; s.sd = n.s[0]; s.sh = n.s[1]; s.sw = n.s[2];
  s.pd = n.p[0]; s.ph = n.p[1]; s.pw = n.p[2];
  if (n.op == OpKind::Conv3d) return conv3d_shape(s);
  s.opd = n.op_pad[0]; s.oph = n.op_pad[1]; s.opw = n.op_pad[2];
  return conv_transpose3d_shape(s);
}

Status Graph::build(const std::string& spec) {
  *this = Graph();
  VX_TRY(parse(spec));
  return infer_shapes_and_layout();
}

Status Graph::parse(const std::string& spec) {
  std::istringstream lines(spec);
  std::string line;
  int lineno = 0;
  bool have_output = false;
  while (std::getline(lines, line)) {
    ++lineno;
    std::istringstream toks(line);
    std::string op;
    if (!(toks >> op) || op[0] == '#') continue;
    if (have_output) return fail(Status::InvalidArgument, "net spec line %d: nothing may follow 'output'", lineno);
    if (op == "output") {
      std::string t;
      while (toks >> t) {
        long long v;
        if (!parse_int(t, &v) || v < 0 || v >= (long long)nodes_.size())
          return fail(Status::InvalidArgument, "net spec line %d: output '%s' is not a node index < %zu",
                      lineno, t.c_str(), nodes_.size());
        outputs_.push_back(int(v));
      }
      if (outputs_.empty()) return fail(Status::InvalidArgument, "net spec line %d: 'output' lists no node", lineno);
      have_output = true;
      continue;
    }
    NodeSpec n;
    if (!parse_op(op, &n.op)) return fail(Status::InvalidArgument, "net spec line %d: unknown op '%s'", lineno, op.c_str());
    if ((n.op == OpKind::Input) != nodes_.empty())
      return fail(Status::InvalidArgument, "net spec line %d: the first node, and only it, must be 'input'", lineno);
    std::string kv;
    while (toks >> kv) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos) return fail(Status::InvalidArgument, "net spec line %d: expected key=value, got '%s'", lineno, kv.c_str());
      std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
      long long iv = 0;
      bool ok = true;
      if (key == "in") {
        // One or two comma-separated node indices.
        n.in.clear();
        size_t pos = 0;
        while (ok && pos <= val.size() && n.in.size() < 3) {
          size_t c = val.find(',', pos);
          if (c == std::string::npos) c = val.size();
          long long j = -1;
          ok = parse_int(val.substr(pos, c - pos), &j) && j >= 0 && j < (long long)nodes_.size();
          if (ok) n.in.push_back(int(j));
          pos = c + 1;
        }
        ok = ok && n.in.size() <= 2;
      } else if (key == "c" || key == "d" || key == "h" || key == "w" || key == "cout" || key == "out" ||
                 key == "n") {
        ok = parse_int(val, &iv) && iv >= 1 && iv <= (1LL << 30);
        if (ok) {
          int v = int(iv);
          if (key == "c") n.shape.c = v;
          else if (key == "d") n.shape.d = v;
          else if (key == "h") n.shape.h = v;
          else if (key == "w") n.shape.w = v;
          else if (key == "n") n.prelu_n = v;
          else n.cout = v;
        }
      } else if (key == "k") {
        ok = parse_triple(val, n.k);
      } else if (key == "s") {
        ok = parse_triple(val, n.s);
      } else if (key == "p") {
        ok = parse_triple(val, n.p);
      } else if (key == "op") {
        ok = parse_triple(val, n.op_pad);
      } else if (key == "bias" || key == "affine") {
        ok = parse_int(val, &iv) && (iv == 0 || iv == 1);
        (key == "bias" ? n.bias : n.affine) = iv == 1;
      } else if (key == "eps") {
        ok = parse_float(val, &n.eps) && n.eps > 0;
      } else if (key == "momentum") {
        ok = parse_float(val, &n.momentum) && n.momentum >= 0 && n.momentum <= 1;
      } else if (key == "slope") {
        ok = parse_float(val, &n.slope);
      } else if (key == "rate") {
        ok = parse_float(val, &n.drop_p) && n.drop_p >= 0 && n.drop_p < 1;
      } else {
        return fail(Status::InvalidArgument, "net spec line %d: unknown key '%s' for %s", lineno, key.c_str(), op.c_str());
      }
      if (!ok) return fail(Status::InvalidArgument, "net spec line %d: bad value '%s' for %s.%s", lineno, val.c_str(), op.c_str(), key.c_str());
    }
    size_t want_in = n.op == OpKind::Input ? 0 : n.op == OpKind::Add ? 2 : 1;
    if (n.in.size() != want_in)
      return fail(Status::InvalidArgument, "net spec line %d: %s takes %zu input(s) (in=...), got %zu", lineno, op.c_str(), want_in, n.in.size());
    nodes_.push_back(n);
  }
  if (nodes_.empty()) return fail(Status::InvalidArgument, "net spec: empty");
  if (outputs_.empty()) return fail(Status::InvalidArgument, "net spec: the last line must be 'output <node>...'");
  return Status::Ok;
}

Status Graph::infer_shapes_and_layout() {
  int64_t np = 0, nb = 0;
  nc_ = 0;
  table_.clear();
  node_params_.assign(nodes_.size(), std::vector<int>(4, -1));
  bn_counter_.assign(nodes_.size(), -1);
  consumers_.assign(nodes_.size(), 0);
  auto add_entry = [&](int node, ParamRole role, bool buf, std::vector<int64_t> shape) {
    int64_t count = 1;
    for (auto d : shape) count *= d;
    ParamEntry e{node, role, buf, buf ? nb : np, count, std::move(shape)};
    (buf ? nb : np) += count;
    node_params_[size_t(node)][size_t(role)] = int(table_.size());
    table_.push_back(e);
  };
  for (size_t i = 0; i < nodes_.size(); ++i) {
    NodeSpec& n = nodes_[i];
    const int line = int(i) + 1;
    for (int j : n.in) consumers_[size_t(j)]++;
    const Shape4 in = n.in.empty() ? n.shape : nodes_[size_t(n.in[0])].shape;
    switch (n.op) {
      case OpKind::Input: break;
      case OpKind::Conv3d:
      case OpKind::ConvTranspose3d: {
        if (n.cout < 1) return fail(Status::InvalidArgument, "net spec line %d: %s needs cout=", line, op_name(n.op));
        Conv3dShape s;
        Status st = conv_shape_of(n, in, 1, &s);
        if (st != Status::Ok) return fail(st, "net spec line %d: %s", line, last_error());
        n.shape = Shape4{n.cout, s.od, s.oh, s.ow};
        std::vector<int64_t> ws = n.op == OpKind::Conv3d
                                      ? std::vector<int64_t>{n.cout, in.c, n.k[0], n.k[1], n.k[2]}
                                      : std::vector<int64_t>{in.c, n.cout, n.k[0], n.k[1], n.k[2]};
        add_entry(int(i), ParamRole::Weight, false, ws);
        if (n.bias) add_entry(int(i), ParamRole::Bias, false, {n.cout});
        break;
      }
      case OpKind::Linear: {
        if (in.d != 1 || in.h != 1 || in.w != 1)
          return fail(Status::InvalidArgument, "net spec line %d: linear needs a flat input (insert 'flatten')", line);
        if (n.cout < 1) return fail(Status::InvalidArgument, "net spec line %d: linear needs out=", line);
        n.shape = Shape4{n.cout, 1, 1, 1};
        add_entry(int(i), ParamRole::Weight, false, {n.cout, in.c});
        if (n.bias) add_entry(int(i), ParamRole::Bias, false, {n.cout});
        break;
      }
      case OpKind::BatchNorm3d:
      case OpKind::InstanceNorm3d:
        n.shape = in;
        if (n.affine) {
          add_entry(int(i), ParamRole::Weight, false, {in.c});
          add_entry(int(i), ParamRole::Bias, false, {in.c});
        }
        if (n.op == OpKind::BatchNorm3d) {
          add_entry(int(i), ParamRole::RunningMean, true, {in.c});
          add_entry(int(i), ParamRole::RunningVar, true, {in.c});
          bn_counter_[i] = nc_++;
        }
        break;
      case OpKind::Prelu:
        if (n.prelu_n != 1 && n.prelu_n != in.c)
          return fail(Status::InvalidArgument, "net spec line %d: prelu n=%d must be 1 or the channel count %d", line, n.prelu_n, in.c);
        n.shape = in;
        add_entry(int(i), ParamRole::Weight, false, {n.prelu_n});
        break;
      case OpKind::Relu: case OpKind::LeakyRelu: case OpKind::Sigmoid: case OpKind::Softmax: case OpKind::Dropout:
        n.shape = in;
        break;
      case OpKind::Flatten:
        if (in.numel() > (1LL << 30)) return fail(Status::InvalidArgument, "net spec line %d: flatten of %lld values is too large", line, (long long)in.numel());
        n.shape = Shape4{int(in.numel()), 1, 1, 1};
        break;
      case OpKind::Reshape:
        if (n.shape.numel() != in.numel())
          return fail(Status::InvalidArgument, "net spec line %d: reshape to %dx%dx%dx%d (%lld values) from %lld values", line,
                      n.shape.c, n.shape.d, n.shape.h, n.shape.w, (long long)n.shape.numel(), (long long)in.numel());
        break;
      case OpKind::Add: {
        const Shape4& b = nodes_[size_t(n.in[1])].shape;
        if (b.c != in.c || b.d != in.d || b.h != in.h || b.w != in.w)
          return fail(Status::InvalidArgument, "net spec line %d: add of differently shaped nodes %d and %d", line, n.in[0], n.in[1]);
        n.shape = in;
        break;
      }
    }
    if (n.shape.numel() > kMaxElems) return fail(Status::InvalidArgument, "net spec line %d: output too large", line);
  }
  for (int o : outputs_) consumers_[size_t(o)]++;
  np_ = np;
  nb_ = nb;
  return Status::Ok;
}

double Graph::forward_flops() const {
  double f = 0;
  for (const NodeSpec& n : nodes_) {
    if (n.in.empty()) continue;
    const Shape4& in = nodes_[size_t(n.in[0])].shape;
    double taps = double(n.k[0]) * n.k[1] * n.k[2];
    if (n.op == OpKind::Conv3d) f += 2.0 * n.shape.numel() * in.c * taps;
    if (n.op == OpKind::ConvTranspose3d) f += 2.0 * in.numel() * n.cout * taps;
    if (n.op == OpKind::Linear) f += 2.0 * in.c * n.cout;
  }
  return f;
}

void Graph::init_params(uint64_t seed, float* params, float* buffers) const {
  auto at = [&](int node, ParamRole role) -> float* {
    const int e = node_params_[size_t(node)][size_t(role)];
    if (e < 0) return nullptr;
    const ParamEntry& p = table_[size_t(e)];
    return (p.is_buffer ? buffers : params) + p.offset;
  };
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const NodeSpec& n = nodes_[i];
    float* w = at(int(i), ParamRole::Weight);
    float* b = at(int(i), ParamRole::Bias);
    const int64_t wn = node_params_[i][0] >= 0 ? table_[size_t(node_params_[i][0])].count : 0;
    const int64_t bn = node_params_[i][1] >= 0 ? table_[size_t(node_params_[i][1])].count : 0;
    double fan_in = 0;
    const double taps = double(n.k[0]) * n.k[1] * n.k[2];
    if (n.op == OpKind::Conv3d) fan_in = nodes_[size_t(n.in[0])].shape.c * taps;
    if (n.op == OpKind::ConvTranspose3d) fan_in = n.cout * taps;  // PyTorch: weight.size(1) * taps
    if (n.op == OpKind::Linear) fan_in = nodes_[size_t(n.in[0])].shape.c;
    if (fan_in > 0) {
      const float bound = float(1.0 / std::sqrt(fan_in));
      // One stream per (node, role): weight uses step 2i, bias 2i+1.
      for (int64_t k = 0; k < wn; ++k) w[k] = (2.f * philox_uniform(seed, 2 * i, uint64_t(k)) - 1.f) * bound;
      for (int64_t k = 0; k < bn; ++k) b[k] = (2.f * philox_uniform(seed, 2 * i + 1, uint64_t(k)) - 1.f) * bound;
    } else if (n.op == OpKind::BatchNorm3d || n.op == OpKind::InstanceNorm3d) {
      for (int64_t k = 0; k < wn; ++k) w[k] = 1.f;
      for (int64_t k = 0; k < bn; ++k) b[k] = 0.f;
      if (float* rm = at(int(i), ParamRole::RunningMean)) std::fill(rm, rm + n.shape.c, 0.f);
      if (float* rv = at(int(i), ParamRole::RunningVar)) std::fill(rv, rv + n.shape.c, 1.f);
    } else if (n.op == OpKind::Prelu) {
      for (int64_t k = 0; k < wn; ++k) w[k] = 0.25f;
    }
  }
}

Status Model::create(const std::string& spec) {
  VX_TRY(build(spec));
  try {
    params_.assign(size_t(np_), 0.f);
    grads_.assign(size_t(np_), 0.f);
    buffers_.assign(size_t(nb_), 0.f);
    counters_.assign(size_t(nc_), 0);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "net: cannot allocate %lld parameters", (long long)np_);
  }
  init_params(0);
  return Status::Ok;
}

void Model::init_params(uint64_t seed) {
  Graph::init_params(seed, params_.data(), buffers_.data());
  std::fill(counters_.begin(), counters_.end(), 0);
}

void Model::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

}  // namespace vx
