// net: spec parsing, parameter layout, forward and backward over the node list (see net.h).
#include "net.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "activation.h"
#include "conv3d.h"
#include "conv_transpose3d.h"
#include "linear.h"
#include "norm.h"
#include "parallel.h"
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
Status conv_shape_of(const NodeSpec& n, const Shape4& in, int N, Conv3dShape* out) {
  Conv3dShape& s = *out;
  s.n = N; s.cin = in.c; s.cout = n.cout; s.id = in.d; s.ih = in.h; s.iw = in.w;
  s.kd = n.k[0]; s.kh = n.k[1]; s.kw = n.k[2]; s.sd = n.s[0]; s.sh = n.s[1]; s.sw = n.s[2];
  s.pd = n.p[0]; s.ph = n.p[1]; s.pw = n.p[2];
  if (n.op == OpKind::Conv3d) return conv3d_shape(s);
  s.opd = n.op_pad[0]; s.oph = n.op_pad[1]; s.opw = n.op_pad[2];
  return conv_transpose3d_shape(s);
}

}  // namespace

Status Net::create(const std::string& spec, std::unique_ptr<Net>* out) {
  std::unique_ptr<Net> net(new (std::nothrow) Net());
  if (!net) return fail(Status::OutOfMemory, "net: out of memory");
  VX_TRY(net->parse(spec));
  VX_TRY(net->infer_shapes_and_layout());
  *out = std::move(net);
  return Status::Ok;
}

Status Net::parse(const std::string& spec) {
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

Status Net::infer_shapes_and_layout() {
  int64_t np = 0, nb = 0;
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
          bn_counter_[i] = int(counters_.size());
          counters_.push_back(0);
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
  fused_into_.assign(nodes_.size(), -1);
  fused_norm_.assign(nodes_.size(), -1);
  eval_bn_.assign(nodes_.size(), -1);
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (nodes_[j].op != OpKind::BatchNorm3d) continue;
    const int i = nodes_[j].in[0];
    const OpKind k = nodes_[size_t(i)].op;
    if ((k == OpKind::Conv3d || k == OpKind::ConvTranspose3d) && consumers_[size_t(i)] == 1) eval_bn_[size_t(i)] = int(j);
  }
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (nodes_[j].op != OpKind::Prelu) continue;
    const int i = nodes_[j].in[0];
    const OpKind k = nodes_[size_t(i)].op;
    if ((k == OpKind::BatchNorm3d || k == OpKind::InstanceNorm3d) && consumers_[size_t(i)] == 1) {
      fused_into_[size_t(i)] = int(j);
      fused_norm_[j] = i;
    }
  }
  try {
    params_.assign(size_t(np), 0.f);
    grads_.assign(size_t(np), 0.f);
    buffers_.assign(size_t(nb), 0.f);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "net: cannot allocate %lld parameters", (long long)np);
  }
  act_.assign(nodes_.size(), nullptr);
  save_a_.assign(nodes_.size(), {});
  save_b_.assign(nodes_.size(), {});
  init_params(0);
  return Status::Ok;
}

double Net::forward_flops() const {
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

float* Net::param_ptr(int node, ParamRole role) {
  int e = node_params_[size_t(node)][size_t(role)];
  if (e < 0) return nullptr;
  const ParamEntry& p = table_[size_t(e)];
  return (p.is_buffer ? buffers_.data() : params_.data()) + p.offset;
}
const float* Net::cparam_ptr(int node, ParamRole role) const {
  return const_cast<Net*>(this)->param_ptr(node, role);
}
float* Net::grad_ptr(int node, ParamRole role) {
  int e = node_params_[size_t(node)][size_t(role)];
  if (e < 0 || table_[size_t(e)].is_buffer) return nullptr;
  return grads_.data() + table_[size_t(e)].offset;
}
float* Net::buffer_ptr(int node, ParamRole role) { return param_ptr(node, role); }

void Net::init_params(uint64_t seed) {
  params_gen_.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const NodeSpec& n = nodes_[i];
    float* w = param_ptr(int(i), ParamRole::Weight);
    float* b = param_ptr(int(i), ParamRole::Bias);
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
      if (float* rm = buffer_ptr(int(i), ParamRole::RunningMean)) std::fill(rm, rm + n.shape.c, 0.f);
      if (float* rv = buffer_ptr(int(i), ParamRole::RunningVar)) std::fill(rv, rv + n.shape.c, 1.f);
    } else if (n.op == OpKind::Prelu) {
      for (int64_t k = 0; k < wn; ++k) w[k] = 0.25f;
    }
  }
  std::fill(counters_.begin(), counters_.end(), 0);
}

void Net::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

BufferPtr& Net::ensure(BufferPtr& b, int64_t count) {
  // Reuse only a buffer nobody else holds (a JS tensor may still reference the previous result).
  if (!b || b.use_count() > 1) b = std::make_shared<Buffer>(size_t(count));
  else if (int64_t(b->size()) != count) b->resize(size_t(count));
  return b;
}

Status Net::forward(const BufferPtr& x, int batch, bool train, uint64_t dropout_seed, uint64_t dropout_step) {
  if (batch < 1) return fail(Status::InvalidArgument, "forward: batch must be >= 1, got %d", batch);
  if (!x || int64_t(x->size()) != batch * input_shape().numel())
    return fail(Status::ShapeMismatch, "forward: input holds %lld values, expected batch %d x %lld",
                x ? (long long)x->size() : 0LL, batch, (long long)input_shape().numel());
  have_forward_ = false;
  batch_ = batch;
  last_train_ = train;
  act_[0] = x;
  VX_TRY(forward_nodes(train, dropout_seed, dropout_step));
  have_forward_ = true;
  return Status::Ok;
}

Status Net::forward_nodes(bool train, uint64_t dropout_seed, uint64_t dropout_step) {
  try {
    produced_.assign(nodes_.size(), 0);
    last_folded_ = false;
    for (size_t i = 1; i < nodes_.size(); ++i) {
      if (produced_[i]) continue;
      VX_TRY(forward_node(int(i), train, dropout_seed, dropout_step));
    }
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "forward: out of memory for batch %d", batch_);
  }
  return Status::Ok;
}

// Batch or instance norm node i, alone or with the PReLU it is fused into.
Status Net::norm_forward(int i, float* y, const float* x, bool train, const NormPrelu* prelu) {
  const NodeSpec& n = nodes_[size_t(i)];
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const int N = batch_;
  NormShape ns;
  ns.n = N; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  const float* gamma = cparam_ptr(i, ParamRole::Weight);
  const float* beta = cparam_ptr(i, ParamRole::Bias);
  std::vector<float>& sa = save_a_[size_t(i)];
  std::vector<float>& sb = save_b_[size_t(i)];
  if (n.op == OpKind::InstanceNorm3d) {
    sa.resize(size_t(N) * size_t(in.c));
    sb.resize(size_t(N) * size_t(in.c));
    return instance_norm3d_forward(y, sa.data(), sb.data(), x, gamma, beta, ns, prelu);
  }
  if (!train)
    return batch_norm3d_forward_eval(y, x, gamma, beta, cparam_ptr(i, ParamRole::RunningMean),
                                     cparam_ptr(i, ParamRole::RunningVar), ns, prelu);
  sa.resize(size_t(in.c));
  sb.resize(size_t(in.c));
  VX_TRY(batch_norm3d_forward_train(y, sa.data(), sb.data(), buffer_ptr(i, ParamRole::RunningMean),
                                    buffer_ptr(i, ParamRole::RunningVar), x, gamma, beta, ns, prelu));
  counters_[size_t(bn_counter_[size_t(i)])]++;
  return Status::Ok;
}

Status Net::forward_node(int i, bool train, uint64_t dseed, uint64_t dstep) {
  const NodeSpec& n = nodes_[size_t(i)];
  if (fused_into_[size_t(i)] >= 0) return Status::Ok;  // runs with its PReLU; its output is never stored
  const int N = batch_;
  // A conv folded with its norm (see eval_bn_) writes the norm's (or PReLU's) output, never its own.
  const bool folded = !train && fold_ && (n.op == OpKind::Conv3d || n.op == OpKind::ConvTranspose3d) &&
                      eval_bn_[size_t(i)] >= 0;
  float* y = folded ? nullptr : ensure(act_[size_t(i)], N * n.shape.numel())->data();
  if (fused_norm_[size_t(i)] >= 0) {
    const int k = fused_norm_[size_t(i)];
    NormPrelu p;
    p.slope = cparam_ptr(i, ParamRole::Weight);
    p.num_a = n.prelu_n;
    return norm_forward(k, y, act_[size_t(nodes_[size_t(k)].in[0])]->data(), train, &p);
  }
  const NodeSpec& src = nodes_[size_t(n.in[0])];
  const float* x = act_[size_t(n.in[0])]->data();
  const int64_t count = N * n.shape.numel();
  const Shape4& in = src.shape;
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
    case OpKind::ConvTranspose3d: {
      Conv3dShape s;
      VX_TRY(conv_shape_of(n, in, N, &s));
      ConvEpilogue ep;
      const int j = train || !fold_ ? -1 : eval_bn_[size_t(i)];
      if (j >= 0) {
        // Inference: y = prelu(bn(conv)) in one pass. bn(v) = v * s + (beta - mean * s),
        // s = gamma / sqrt(var + eps), folded into the conv's weights and bias by the kernels.
        const NodeSpec& bn = nodes_[size_t(j)];
        const float* gamma = cparam_ptr(j, ParamRole::Weight);
        const float* beta = cparam_ptr(j, ParamRole::Bias);
        const float* mean = cparam_ptr(j, ParamRole::RunningMean);
        const float* var = cparam_ptr(j, ParamRole::RunningVar);
        fold_scale_.resize(size_t(n.cout));
        fold_shift_.resize(size_t(n.cout));
        for (int c = 0; c < n.cout; ++c) {
          const double sc = (gamma ? gamma[c] : 1.0) / std::sqrt(double(var[c]) + double(bn.eps));
          fold_scale_[size_t(c)] = float(sc);
          fold_shift_[size_t(c)] = float((beta ? beta[c] : 0.0) - double(mean[c]) * sc);
        }
        ep.scale = fold_scale_.data();
        ep.shift = fold_shift_.data();
        int last = j;
        if (fused_into_[size_t(j)] >= 0) {  // and the PReLU the norm is fused into
          last = fused_into_[size_t(j)];
          ep.slope = cparam_ptr(last, ParamRole::Weight);
          ep.num_slopes = nodes_[size_t(last)].prelu_n;
        }
        y = ensure(act_[size_t(last)], N * nodes_[size_t(last)].shape.numel())->data();
        produced_[size_t(j)] = produced_[size_t(last)] = 1;
        last_folded_ = true;
      }
      if (!train) {
        if (pack_cache_.size() != nodes_.size()) pack_cache_.resize(nodes_.size());
        auto& pc = pack_cache_[size_t(i)];
        if (!pc) {
          try {
            pc = std::make_unique<ConvPackCache>();
          } catch (const std::bad_alloc&) {
            return fail(Status::OutOfMemory, "forward: out of memory for the packed weights of node %d", i);
          }
        }
        ep.cache = pc.get();
        ep.weights_gen = params_gen_.load(std::memory_order_relaxed);
      }
      const ConvEpilogue* epp = j >= 0 || !train ? &ep : nullptr;
      if (n.op == OpKind::Conv3d) {
        return conv3d_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), s, epp);
      }
      return conv_transpose3d_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), s, epp);
    }
    case OpKind::Linear:
      return linear_forward(y, x, cparam_ptr(i, ParamRole::Weight), cparam_ptr(i, ParamRole::Bias), N, in.c, n.cout);
    case OpKind::BatchNorm3d:
    case OpKind::InstanceNorm3d:
      return norm_forward(i, y, x, train, nullptr);
    case OpKind::Relu: return relu_forward(y, x, count);
    case OpKind::Prelu: return prelu_forward(y, x, cparam_ptr(i, ParamRole::Weight), N, in.c, in.spatial(), n.prelu_n);
    case OpKind::LeakyRelu: return leaky_relu_forward(y, x, count, n.slope);
    case OpKind::Sigmoid: return sigmoid_forward(y, x, count);
    case OpKind::Softmax: return softmax_forward(y, x, N, in.c, in.spatial());
    case OpKind::Dropout:
      if (train && n.drop_p > 0) {
        save_a_[size_t(i)].resize(size_t(count));
        // Each dropout node draws its own stream: the step is offset by the node index.
        return dropout_forward(y, save_a_[size_t(i)].data(), x, count, n.drop_p, dseed,
                               dstep * uint64_t(nodes_.size()) + uint64_t(i));
      }
      std::memcpy(y, x, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Flatten:
    case OpKind::Reshape:
      std::memcpy(y, x, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Add:
      return add_forward(y, x, act_[size_t(n.in[1])]->data(), count);
  }
  return fail(Status::Internal, "forward: unhandled op");
}

int Net::Slots::acquire(int64_t count) {
  int best = -1, largest = -1;
  for (size_t s = 0; s < size.size(); ++s) {
    if (busy[s]) continue;
    if (size[s] >= count && (best < 0 || size[s] < size[size_t(best)])) best = int(s);
    if (largest < 0 || size[s] > size[size_t(largest)]) largest = int(s);
  }
  if (best < 0 && largest >= 0) {
    best = largest;
    size[size_t(best)] = count;
  }
  if (best < 0) {
    best = int(size.size());
    size.push_back(count);
    busy.push_back(0);
  }
  busy[size_t(best)] = 1;
  return best;
}

Status Net::backward(const std::vector<const float*>& dout, bool need_input_grad) {
  if (!have_forward_) return fail(Status::InvalidArgument, "backward: call forward first");
  input_grad_valid_ = false;
  if (last_folded_) {
    // The folded inference forward stored neither the convs' nor the norms' outputs: recompute them.
    fold_ = false;
    const Status st = forward_nodes(false, 0, 0);
    fold_ = true;
    VX_TRY(st);
  }
  if (dout.size() != outputs_.size())
    return fail(Status::InvalidArgument, "backward: %zu output gradients given, the network has %zu outputs", dout.size(), outputs_.size());
  try {
    VX_TRY(backward_pass(dout, need_input_grad, true));
    slot_mem_.resize(slots_.size.size());
    slot_cap_.resize(slots_.size.size(), 0);
    for (size_t s = 0; s < slots_.size.size(); ++s)
      if (slot_cap_[s] < slots_.size[s]) {
        slot_mem_[s].reset();  // the old block first: peak memory is the new one alone
        slot_mem_[s].reset(new float[size_t(slots_.size[s])]);
        slot_cap_[s] = slots_.size[s];
      }
    VX_TRY(backward_pass(dout, need_input_grad, false));
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, "backward: out of memory for batch %d", batch_);
  }
  input_grad_valid_ = need_input_grad;
  return Status::Ok;
}

// Where node j's gradient is written when it is first produced: the input gradient for node 0, else a
// newly acquired slot. Null in a dry pass.
float* Net::grad_target(int j, bool dry) {
  const int64_t count = batch_ * nodes_[size_t(j)].shape.numel();
  float* g = nullptr;
  if (j == 0) {
    if (!dry) g = ensure(input_grad_, count)->data();
  } else {
    grad_slot_[size_t(j)] = slots_.acquire(count);
    if (!dry) g = slot_mem_[size_t(grad_slot_[size_t(j)])].get();
  }
  grad_in_[size_t(j)] = grad_out_[size_t(j)] = g;
  return g;
}

// One backward sweep. A dry pass only assigns slots (no pointer is used, no kernel runs); the real
// pass makes the same assignment over the allocated slots and computes.
Status Net::backward_pass(const std::vector<const float*>& dout, bool need_input_grad, bool dry) {
  const int N = batch_;
  slots_.size.clear();
  slots_.busy.clear();
  has_.assign(nodes_.size(), 0);
  grad_in_.assign(nodes_.size(), nullptr);
  grad_out_.assign(nodes_.size(), nullptr);
  grad_slot_.assign(nodes_.size(), -1);
  auto add_into = [](float* g, const float* s, int64_t count) {
    parallel_for(count, 1 << 16, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) g[e] += s[e];
    });
  };
  for (size_t k = 0; k < outputs_.size(); ++k) {
    const int o = outputs_[k];
    if (!dout[k]) continue;
    const int64_t count = N * nodes_[size_t(o)].shape.numel();
    if (o != 0 && consumers_[size_t(o)] == 1) {
      grad_in_[size_t(o)] = dout[k];  // nothing else adds to it: read the caller's buffer in place
    } else if (!has_[size_t(o)]) {
      float* g = grad_target(o, dry);
      if (!dry) std::memcpy(g, dout[k], size_t(count) * sizeof(float));
    } else if (!dry) {
      add_into(grad_out_[size_t(o)], dout[k], count);
    }
    has_[size_t(o)] = 1;
  }
  for (int i = int(nodes_.size()) - 1; i >= 1; --i) {
    if (!has_[size_t(i)]) continue;
    // A PReLU fused with a norm passes its gradient straight to the norm's input.
    const std::vector<int>& ins = nodes_[size_t(fused_norm_[size_t(i)] >= 0 ? fused_norm_[size_t(i)] : i)].in;
    float* dx[2] = {nullptr, nullptr};
    bool want[2] = {false, false};
    int temp[2] = {-1, -1};  // slot of a contribution to add to a gradient that already exists
    for (size_t j = 0; j < ins.size(); ++j) {
      const int src = ins[j];
      if (src == 0 && !need_input_grad) continue;
      want[j] = true;
      const bool twice = j == 1 && src == ins[0];  // y = a + a: the second contribution must add
      if (!has_[size_t(src)] && !twice) {
        dx[j] = grad_target(src, dry);
      } else {
        temp[j] = slots_.acquire(N * nodes_[size_t(src)].shape.numel());
        if (!dry) dx[j] = slot_mem_[size_t(temp[j])].get();
      }
    }
    if (!dry) VX_TRY(backward_node(i, grad_in_[size_t(i)], dx[0], dx[1]));
    for (size_t j = 0; j < ins.size(); ++j) {
      if (!want[j]) continue;
      const int src = ins[j];
      if (temp[j] >= 0) {
        if (!dry) add_into(grad_out_[size_t(src)], dx[j], N * nodes_[size_t(src)].shape.numel());
        slots_.release(temp[j]);
      }
      has_[size_t(src)] = 1;
    }
    if (grad_slot_[size_t(i)] >= 0) slots_.release(grad_slot_[size_t(i)]);  // consumed
  }
  return Status::Ok;
}

// Backward of norm node i (alone, or with the PReLU it is fused into: dy is then the PReLU's).
Status Net::norm_backward(int i, const float* dy, float* dx, const NormPrelu* prelu) {
  const NodeSpec& n = nodes_[size_t(i)];
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const float* x = act_[size_t(n.in[0])]->data();
  NormShape ns;
  ns.n = batch_; ns.c = in.c; ns.spatial = in.spatial(); ns.eps = n.eps; ns.momentum = n.momentum;
  float* dg = grad_ptr(i, ParamRole::Weight);
  float* db = grad_ptr(i, ParamRole::Bias);
  const float* gamma = cparam_ptr(i, ParamRole::Weight);
  const float* sa = save_a_[size_t(i)].data();
  const float* sb = save_b_[size_t(i)].data();
  if (n.op == OpKind::InstanceNorm3d) return instance_norm3d_backward(dx, dg, db, dy, x, gamma, sa, sb, ns, prelu);
  if (last_train_) return batch_norm3d_backward(dx, dg, db, dy, x, gamma, sa, sb, ns, prelu);
  return batch_norm3d_backward_eval(dx, dg, db, dy, x, gamma, cparam_ptr(i, ParamRole::RunningMean),
                                    cparam_ptr(i, ParamRole::RunningVar), ns, prelu);
}

Status Net::backward_node(int i, const float* dy, float* dx, float* dx1) {
  const NodeSpec& n = nodes_[size_t(i)];
  if (fused_norm_[size_t(i)] >= 0) {
    const int k = fused_norm_[size_t(i)];
    NormPrelu p;
    p.slope = cparam_ptr(i, ParamRole::Weight);
    p.num_a = n.prelu_n;
    p.dslope = grad_ptr(i, ParamRole::Weight);
    p.beta = cparam_ptr(k, ParamRole::Bias);
    return norm_backward(k, dy, dx, &p);
  }
  const Shape4& in = nodes_[size_t(n.in[0])].shape;
  const float* x = act_[size_t(n.in[0])]->data();
  const float* y = act_[size_t(i)]->data();
  const int N = batch_;
  const int64_t count = N * n.shape.numel();
  switch (n.op) {
    case OpKind::Input: return Status::Ok;
    case OpKind::Conv3d:
    case OpKind::ConvTranspose3d: {
      Conv3dShape s;
      VX_TRY(conv_shape_of(n, in, N, &s));
      if (n.op == OpKind::Conv3d) {
        return conv3d_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                               cparam_ptr(i, ParamRole::Weight), s);
      }
      return conv_transpose3d_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                                       cparam_ptr(i, ParamRole::Weight), s);
    }
    case OpKind::Linear:
      return linear_backward(dx, grad_ptr(i, ParamRole::Weight), grad_ptr(i, ParamRole::Bias), dy, x,
                             cparam_ptr(i, ParamRole::Weight), N, in.c, n.cout);
    case OpKind::BatchNorm3d:
    case OpKind::InstanceNorm3d:
      return norm_backward(i, dy, dx, nullptr);
    case OpKind::Relu: return dx ? relu_backward(dx, dy, x, count) : Status::Ok;
    case OpKind::Prelu:
      return prelu_backward(dx, grad_ptr(i, ParamRole::Weight), dy, x, cparam_ptr(i, ParamRole::Weight), N, in.c,
                            in.spatial(), n.prelu_n);
    case OpKind::LeakyRelu: return dx ? leaky_relu_backward(dx, dy, x, count, n.slope) : Status::Ok;
    case OpKind::Sigmoid: return dx ? sigmoid_backward(dx, dy, y, count) : Status::Ok;
    case OpKind::Softmax: return dx ? softmax_backward(dx, dy, y, N, in.c, in.spatial()) : Status::Ok;
    case OpKind::Dropout:
      if (!dx) return Status::Ok;
      if (last_train_ && n.drop_p > 0) return dropout_backward(dx, dy, save_a_[size_t(i)].data(), count);
      std::memcpy(dx, dy, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Flatten:
    case OpKind::Reshape:
      if (dx) std::memcpy(dx, dy, size_t(count) * sizeof(float));
      return Status::Ok;
    case OpKind::Add:
      if (dx) std::memcpy(dx, dy, size_t(count) * sizeof(float));
      if (dx1) std::memcpy(dx1, dy, size_t(count) * sizeof(float));
      return Status::Ok;
  }
  return fail(Status::Internal, "backward: unhandled op");
}

}  // namespace vx
