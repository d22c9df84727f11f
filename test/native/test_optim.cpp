// Adam/AdamW against a double transcription of torch.optim.Adam's single-tensor algorithm, gradient
// norm and clipping against PyTorch's clip_grad_norm_ formula, hyperparameter widening, argument checks.
#include <cmath>
#include <cstring>
#include <vector>

#include "check.h"
#include "optim.h"
#include "optim_ref.h"
#include "parallel.h"

namespace {

using vxtest::cast_vec;
using vxtest::random_vec;
using V = std::vector<double>;
using F = std::vector<float>;
using vx::AdamOptions;
using vx::Status;

// torch/optim/adam.py, _single_tensor_adam (amsgrad=False, maximize=False, capturable=False), in double:
//   if weight_decay != 0: decoupled ? param.mul_(1 - lr * wd) : grad = grad.add(param, alpha=wd)
//   exp_avg.lerp_(grad, 1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad.conj(), value=1 - beta2)
//   step_size = lr / (1 - beta1 ** step); bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)
struct TorchAdam {
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
  void step(V& p, V& m, V& v, const V& grad, int t) const {
    const double step_size = lr / (1 - std::pow(beta1, t));
    const double bc2_sqrt = std::sqrt(1 - std::pow(beta2, t));
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (wd != 0) {
        if (decoupled)
          p[i] *= 1 - lr * wd;
        else
          g += wd * p[i];
      }
      m[i] += (1 - beta1) * (g - m[i]);
      v[i] = v[i] * beta2 + (1 - beta2) * g * g;
      const double denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] += -step_size * m[i] / denom;
    }
  }
};

struct AdamCase {
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
};
// Defaults, the skull VAE's lr 1e-4, large lr and eps (so that eps's place in the formula shows),
// and weight decay as L2 (Adam) and decoupled (AdamW).
const AdamCase kAdam[] = {
    {1e-3, 0.9, 0.999, 1e-8, 0.0, false}, {1e-4, 0.9, 0.999, 1e-8, 0.0, false}, {0.05, 0.8, 0.99, 1e-2, 0.0, false},
    {0.05, 0.9, 0.999, 1e-8, 0.1, false}, {0.05, 0.9, 0.999, 1e-8, 0.1, true},  {0.01, 0.5, 0.9, 1e-3, 0.3, true},
};

AdamOptions params_of(const AdamCase& c) {
  AdamOptions a;
  a.lr = float(c.lr);
  a.betas[0] = float(c.beta1);
  a.betas[1] = float(c.beta2);
  a.eps = float(c.eps);
  a.weightDecay = float(c.wd);
  a.kind = c.decoupled ? vx::AdamKind::AdamW : vx::AdamKind::Adam;
  return a;
}

template <class Fn>
void with_threads(const Fn& fn) {
  for (int t : {1, 2, 3}) {  // 3 > the cores of a small CI machine: chunking, not speed, is tested
    vx::set_num_threads(t);
    fn(t);
  }
  vx::set_num_threads(0);
}

bool same_bits(const F& a, const F& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(widen_decimal_recovers_typed_values) {
  CHECK(vx::widen_decimal(0.9f) == 0.9);
  CHECK(vx::widen_decimal(0.999f) == 0.999);
  CHECK(vx::widen_decimal(1e-4f) == 1e-4);
  CHECK(vx::widen_decimal(1e-8f) == 1e-8);
  CHECK(vx::widen_decimal(3e-4f) == 3e-4);
  CHECK(vx::widen_decimal(0.1234567f) == 0.1234567);
  CHECK(vx::widen_decimal(-2.5f) == -2.5);
  CHECK(vx::widen_decimal(100.0f) == 100.0);
  CHECK(vx::widen_decimal(0.0f) == 0.0);
  CHECK(vx::widen_decimal(1e30f) == double(1e30f));  // beyond the exact powers of ten: unchanged
  const float third = 1.0f / 3.0f;                    // needs 9 digits: round-trips
  CHECK(static_cast<float>(vx::widen_decimal(third)) == third);
}

TEST(adam_matches_torch_algorithm) {
  const size_t n = 70001;  // several parallel chunks with 2 threads
  for (const AdamCase& c : kAdam) {
    const TorchAdam torch{c.lr, c.beta1, c.beta2, c.eps, c.wd, c.decoupled};
    const AdamOptions a = params_of(c);
    const F p0 = cast_vec<float>(random_vec(n, 1, -1, 1));
    std::vector<F> grads;
    for (int t = 1; t <= 5; ++t) grads.push_back(cast_vec<float>(random_vec(n, 10 + t, -1, 1)));
    // Torch algorithm in double from the same float start and gradients.
    V pt(p0.begin(), p0.end()), mt(n, 0.0), vt(n, 0.0);
    for (int t = 1; t <= 5; ++t) torch.step(pt, mt, vt, V(grads[t - 1].begin(), grads[t - 1].end()), t);
    // The reference in double.
    V pr(p0.begin(), p0.end()), mr(n, 0.0), vr(n, 0.0);
    for (int t = 1; t <= 5; ++t) {
      V g(grads[t - 1].begin(), grads[t - 1].end());
      CHECK(vx::adam_step_ref<double>(pr.data(), mr.data(), vr.data(), g.data(), int64_t(n), a, t) == Status::Ok);
    }
    CHECK_REL(pr.data(), pt.data(), n, 1e-12);
    CHECK_REL(mr.data(), mt.data(), n, 1e-12);
    CHECK_REL(vr.data(), vt.data(), n, 1e-12);
    // The float kernel, 1 to 3 threads. Each of the 5 steps is checked against the torch algorithm in
    // double run from the kernel's own float state (param, m, v), to 1e-6. The whole 5-step trajectory
    // is checked to 1e-4 only: storing param, m and v in float between steps costs ~6e-8 of their
    // magnitude per step, and CHECK_REL divides by max(|expected|, 1e-3), so a parameter or moment that
    // passes near 0 after being ~0.1 shows that as ~1e-5.
    F p1;
    with_threads([&](int th) {
      F p = p0, m(n, 0.0f), v(n, 0.0f);
      for (int t = 1; t <= 5; ++t) {
        V pd(p.begin(), p.end()), md(m.begin(), m.end()), vd(v.begin(), v.end());
        torch.step(pd, md, vd, V(grads[t - 1].begin(), grads[t - 1].end()), t);
        CHECK(vx::adam_step(p.data(), m.data(), v.data(), grads[t - 1].data(), int64_t(n), a, t) == Status::Ok);
        CHECK_REL(p.data(), pd.data(), n, 1e-6);
        CHECK_REL(m.data(), md.data(), n, 1e-6);
        CHECK_REL(v.data(), vd.data(), n, 1e-6);
      }
      CHECK_REL(p.data(), pt.data(), n, 1e-4);
      CHECK_REL(m.data(), mt.data(), n, 1e-4);
      CHECK_REL(v.data(), vt.data(), n, 1e-4);
      if (th == 1) p1 = p;
      else CHECK(same_bits(p, p1));
    });
  }
}

TEST(adam_first_step_by_hand) {
  AdamOptions a;
  a.lr = 0.01f;
  F p = {1.0f, -2.0f, 0.5f}, m(3, 0.0f), v(3, 0.0f);
  F g = {0.3f, -4.0f, 1e-3f};
  CHECK(vx::adam_step(p.data(), m.data(), v.data(), g.data(), 3, a, 1) == Status::Ok);
  CHECK(std::fabs(p[0] - (1.0 - 0.01)) < 1e-6);
  CHECK(std::fabs(p[1] - (-2.0 + 0.01)) < 1e-6);
  CHECK(std::fabs(p[2] - (0.5 - 0.01 * 1e-3 / (1e-3 + 1e-8))) < 1e-6);
  CHECK(std::fabs(m[0] - 0.03) < 1e-8 && std::fabs(v[1] - 0.016) < 1e-8);
}

// gradScale: the step equals one on the gradient scaled beforehand, and the scaled gradient is left behind.
TEST(adam_grad_scale) {
  AdamOptions a;
  a.lr = 0.01f;
  a.weightDecay = 0.1f;
  a.kind = vx::AdamKind::AdamW;
  F p1 = {1.0f, -2.0f, 0.5f}, m1(3, 0.0f), v1(3, 0.0f), g1 = {0.3f, -4.0f, 1e-3f};
  F p2 = p1, m2 = m1, v2 = v1, g2 = g1;
  for (float& g : g2) g *= 0.375f;
  a.gradScale = 0.375f;
  CHECK(vx::adam_step(p1.data(), m1.data(), v1.data(), g1.data(), 3, a, 1) == Status::Ok);
  a.gradScale = 1.0f;
  CHECK(vx::adam_step(p2.data(), m2.data(), v2.data(), g2.data(), 3, a, 1) == Status::Ok);
  CHECK(p1 == p2 && m1 == m2 && v1 == v2 && g1 == g2);
}

TEST(adam_invalid_arguments) {
  F p(2, 1.0f), m(2), v(2), g(2, 1.0f);
  AdamOptions a;
  CHECK(vx::adam_step(p.data(), m.data(), v.data(), g.data(), 2, a, 0) == Status::InvalidArgument);
  CHECK(vx::adam_step(nullptr, m.data(), v.data(), g.data(), 2, a, 1) == Status::InvalidArgument);
  CHECK(vx::adam_step(nullptr, nullptr, nullptr, nullptr, 0, a, 1) == Status::Ok);
  a.betas[0] = 1.0f;
  CHECK(vx::adam_step(p.data(), m.data(), v.data(), g.data(), 2, a, 1) == Status::InvalidArgument);
  a.betas[0] = 0.9f;
  a.lr = -1.0f;
  CHECK(vx::adam_step(p.data(), m.data(), v.data(), g.data(), 2, a, 1) == Status::InvalidArgument);
  CHECK(p[0] == 1.0f && p[1] == 1.0f);  // untouched on failure
}

TEST(grad_norm_and_clip) {
  const F small = {3.0f, 4.0f};
  CHECK(vx::grad_norm(small.data(), 2) == 5.0);
  CHECK(vx::grad_norm(nullptr, 0) == 0.0);
  const size_t n1 = 100003, n2 = 777;
  const F a = cast_vec<float>(random_vec(n1, 20, -1, 1)), b = cast_vec<float>(random_vec(n2, 21, -1, 1));
  const V ad(a.begin(), a.end());
  double na1 = 0;
  with_threads([&](int t) {
    const double na = vx::grad_norm(a.data(), int64_t(n1));
    const double ref = vx::grad_norm_ref<double>(ad.data(), int64_t(n1));
    CHECK(std::fabs(na - ref) <= 1e-12 * ref);
    if (t == 1) na1 = na;
    else CHECK(na == na1);  // thread-count independent
  });
  // torch.nn.utils.clip_grad_norm_: total = norm of the per-tensor norms; coef = max / (total + 1e-6),
  // grads scaled by min(coef, 1).
  const double total = std::hypot(vx::grad_norm(a.data(), int64_t(n1)), vx::grad_norm(b.data(), int64_t(n2)));
  const double max_norm = 0.25 * total;
  F ca = a, cb = b;
  vx::clip_grad_scale(ca.data(), int64_t(n1), total, max_norm);
  vx::clip_grad_scale(cb.data(), int64_t(n2), total, max_norm);
  const double coef = max_norm / (total + 1e-6);
  for (size_t i = 0; i < n1; i += 101) CHECK(ca[i] == a[i] * float(coef));
  for (size_t i = 0; i < n2; ++i) CHECK(cb[i] == b[i] * float(coef));
  const double after = std::hypot(vx::grad_norm(ca.data(), int64_t(n1)), vx::grad_norm(cb.data(), int64_t(n2)));
  CHECK(std::fabs(after - max_norm * total / (total + 1e-6)) < 1e-6 * max_norm);
  V rd(b.begin(), b.end());
  vx::clip_grad_scale_ref<double>(rd.data(), int64_t(n2), total, max_norm);
  CHECK_REL(cb.data(), rd.data(), n2, 1e-7);
  // Below the limit (coef >= 1) nothing changes.
  F same = b;
  vx::clip_grad_scale(same.data(), int64_t(n2), total, 2.0 * total);
  CHECK(same_bits(same, b));
}

VX_TEST_MAIN()
