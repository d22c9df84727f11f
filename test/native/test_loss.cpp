// Losses and latent ops: reference gradients against finite differences of the loss (double), Dice
// against hand-computed MONAI values, optimized float kernels against the references over a table of
// shapes with 1, 2 and 3 threads (results bit-identical across thread counts), label validation, KL and
// reparameterization in every mode.
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "check.h"
#include "loss.h"
#include "loss_ref.h"
#include "parallel.h"

namespace {

using vxtest::cast_vec;
using vxtest::random_vec;
using V = std::vector<double>;
using F = std::vector<float>;
using vx::LatentMode;
using vx::Reduction;
using vx::Status;

const double kFdTol = 1e-6;
const double kTol = 1e-5;  // optimized float vs double reference
V finite_diff(const V& x, const std::function<double(const V&)>& f) { return vxtest::finite_diff(x, f, 1e-4); }

double dot(const V& a, const V& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

V widen(const F& f) { return V(f.begin(), f.end()); }
bool same_bits(const F& a, const F& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// fn(t) with t = 1, 2, 3 threads under the first vector ISA, then t + 3 for the same thread counts under
// each other one (vxtest::with_isas): only the first call gets t == 1, the run later ones compare with.
template <class Fn>
void with_threads(const Fn& fn) {
  vxtest::with_isas([&](bool first_isa) {
    for (int t : {1, 2, 3}) {  // 3 > the cores of a small CI machine: chunking, not speed, is tested
      vx::set_num_threads(t);
      fn(first_isa ? t : t + 3);
    }
  });
  vx::set_num_threads(0);
}

// Class indices 0..c-1 stored as floats, as dice_loss expects.
V random_labels(size_t count, int c, unsigned seed) {
  V l = random_vec(count, seed, 0, c);
  for (double& v : l) v = std::floor(v);
  return l;
}

struct DiceCase {
  int n, c;
  int64_t spatial;
  float smooth_nr, smooth_dr, weight;
  Reduction r;
  double grad_tol = kTol;
};
// Shared table: odd sizes, c not a multiple of 8, the MONAI skull configuration (c = 2, weight 80,
// sum), large smoothing, one case over several work items and threads, and channel counts that
// exercise the small-tile and heap paths of the loss-only softmax (c = 200: 8-position tiles; c = 300:
// the heap). Two classes take their own kernels: sizes with and without a tail of < 8 positions, and
// one whose last work item holds 5 positions. The 2100-class case gets a looser
// gradient tolerance: over 3 voxels, sum_j p_j (dp_k - dp_j) adds 2100 terms that nearly cancel, and the
// softmax is kept in float (in grad) between the two passes, so ~1e-7 relative errors of p are
// amplified ~100x; the loss itself still meets kTol.
const DiceCase kDice[] = {
    {1, 2, 1, 1e-5f, 1e-5f, 1.0f, Reduction::Mean},    {1, 3, 105, 1e-5f, 1e-5f, 1.0f, Reduction::Mean},
    {2, 5, 7, 0.5f, 1.0f, 2.0f, Reduction::Sum},       {3, 17, 33, 1e-5f, 1e-5f, 1.0f, Reduction::Sum},
    {2, 2, 40001, 1e-5f, 1e-5f, 80.0f, Reduction::Sum}, {3, 9, 1, 1.0f, 1.0f, 1.0f, Reduction::Mean},
    {2, 64, 50, 1e-5f, 1e-5f, 1.0f, Reduction::Mean},  {1, 2100, 3, 1e-5f, 1e-5f, 1.0f, Reduction::Sum, 1e-4},
    {3, 2, 8197, 1e-5f, 1e-5f, 1.0f, Reduction::Mean}, {1, 2, 16, 1e-5f, 1e-5f, 80.0f, Reduction::Sum},
    {2, 2, 13, 0.5f, 1.0f, 1.0f, Reduction::Mean},    {2, 4, 8200, 1e-5f, 1e-5f, 1.0f, Reduction::Sum},
    {1, 300, 21, 1e-5f, 1e-5f, 1.0f, Reduction::Mean}, {2, 200, 45, 1e-5f, 1e-5f, 1.0f, Reduction::Sum},
};

}  // namespace

TEST(dice_ref_fd) {
  const int n = 2, c = 3;
  const int64_t sp = 5 * 3 * 7, count = n * c * sp;
  const V logits = random_vec(size_t(count), 1, -3, 3), labels = random_labels(size_t(n * sp), c, 2);
  struct P {
    float nr, dr, w;
    Reduction r;
  };
  for (const P& p : {P{1e-5f, 1e-5f, 1.0f, Reduction::Mean}, P{1e-5f, 1e-5f, 80.0f, Reduction::Sum},
                     P{0.5f, 2.0f, 1.0f, Reduction::Mean}, P{1.0f, 1.0f, 3.0f, Reduction::Sum}}) {
    auto loss = [&](const V& x) {
      double l = 0;
      vx::dice_loss_ref<double>(&l, nullptr, x.data(), labels.data(), n, c, sp, {p.nr, p.dr, p.r, p.w});
      return l;
    };
    double l = 0;
    V grad(count);
    CHECK(vx::dice_loss_ref<double>(&l, grad.data(), logits.data(), labels.data(), n, c, sp, {p.nr, p.dr, p.r, p.w}) ==
          Status::Ok);
    CHECK(l == loss(logits));
    const V fd = finite_diff(logits, loss);
    CHECK_REL(grad.data(), fd.data(), size_t(count), kFdTol);
  }
}

// MONAI DiceLoss(to_onehot_y=True, softmax=True, include_background=True) on 1 x 2 x 4 voxels.
// logits: class 0 = [ln 3, 0, 0, 0], class 1 = [0, 0, ln 3, ln 3] -> p1 = [1/4, 1/2, 3/4, 3/4];
// labels [0, 1, 1, 0].
// class 0: g = [1, 0, 0, 1], sum(p*g) = 3/4 + 1/4 = 1, sum(g) = 2, sum(p) = 7/4
// class 1: g = [0, 1, 1, 0], sum(p*g) = 1/2 + 3/4 = 5/4, sum(g) = 2, sum(p) = 9/4
TEST(dice_by_hand) {
  const float l3 = std::log(3.0f);
  const F logits = {l3, 0, 0, 0, 0, 0, l3, l3};
  const F labels = {0, 1, 1, 0};
  const double sn = 1e-5f, sd = 1e-5f;
  const double f0 = 1.0 - (2.0 * 1.0 + sn) / (2.0 + 1.75 + sd);
  const double f1 = 1.0 - (2.0 * 1.25 + sn) / (2.0 + 2.25 + sd);
  double lm = 0, ls = 0;
  CHECK(vx::dice_loss(&lm, nullptr, logits.data(), labels.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
        Status::Ok);
  CHECK(vx::dice_loss(&ls, nullptr, logits.data(), labels.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Sum, 80.0f}) ==
        Status::Ok);
  CHECK(std::fabs(lm - (f0 + f1) / 2) < 1e-6);
  CHECK(std::fabs(ls - 80.0 * (f0 + f1)) < 1e-4);
  // No smoothing, uniform logits (p = 1/2): f0 = 1 - 2 * 0.5 / (1 + 2) = 2/3, f1 = 1 - 2 * 1.5 / (3 + 2) = 2/5.
  const F zeros(8, 0.0f), lab2 = {0, 1, 1, 1};
  CHECK(vx::dice_loss(&lm, nullptr, zeros.data(), lab2.data(), 1, 2, 4, {0.0f, 0.0f, Reduction::Mean, 1.0f}) ==
        Status::Ok);
  CHECK(std::fabs(lm - (2.0 / 3.0 + 2.0 / 5.0) / 2) < 1e-7);
  // The reference agrees.
  const V ld = widen(logits), lbd = widen(labels);
  double lr = 0;
  vx::dice_loss_ref<double>(&lr, nullptr, ld.data(), lbd.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f});
  CHECK(std::fabs(lr - (f0 + f1) / 2) < 1e-7);
}

// batch=False: every (n, c) is its own term, so a batch is the sum of its samples.
TEST(dice_per_sample_terms) {
  const int c = 3;
  const int64_t sp = 40;
  const F logits = cast_vec<float>(random_vec(size_t(2 * c * sp), 3, -2, 2));
  const F labels = cast_vec<float>(random_labels(size_t(2 * sp), c, 4));
  double both = 0, first = 0, second = 0, mean = 0;
  vx::dice_loss(&both, nullptr, logits.data(), labels.data(), 2, c, sp, {1e-5f, 1e-5f, Reduction::Sum, 1.0f});
  vx::dice_loss(&first, nullptr, logits.data(), labels.data(), 1, c, sp, {1e-5f, 1e-5f, Reduction::Sum, 1.0f});
  vx::dice_loss(&second, nullptr, logits.data() + c * sp, labels.data() + sp, 1, c, sp, {1e-5f, 1e-5f, Reduction::Sum, 1.0f});
  vx::dice_loss(&mean, nullptr, logits.data(), labels.data(), 2, c, sp, {1e-5f, 1e-5f, Reduction::Mean, 1.0f});
  CHECK(std::fabs(both - (first + second)) < 1e-12);
  CHECK(std::fabs(mean - both / (2 * c)) < 1e-12);
}

TEST(dice_invalid_labels) {
  const F logits(2 * 4, 0.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (float bad : {2.0f, -1.0f, 0.5f, nan, 1e9f}) {
    const F labels = {0, 1, bad, 0};
    const V ld = widen(logits), lbd = widen(labels);
    double l = 0;
    F grad(8);
    V gd(8);
    CHECK(vx::dice_loss(&l, grad.data(), logits.data(), labels.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
          Status::InvalidArgument);
    CHECK(std::strstr(vx::last_error(), "index 2") != nullptr);
    CHECK(vx::dice_loss(&l, nullptr, logits.data(), labels.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
          Status::InvalidArgument);
    CHECK(vx::dice_loss_ref<double>(&l, gd.data(), ld.data(), lbd.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
          Status::InvalidArgument);
  }
  double l = 0;
  const F ok = {0, 1, 1, 0};
  CHECK(vx::dice_loss(nullptr, nullptr, logits.data(), ok.data(), 1, 2, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
        Status::InvalidArgument);
  CHECK(vx::dice_loss(&l, nullptr, logits.data(), ok.data(), 1, 0, 4, {1e-5f, 1e-5f, Reduction::Mean, 1.0f}) ==
        Status::InvalidArgument);
}

TEST(dice_optimized_vs_ref) {
  for (const DiceCase& d : kDice) {
    const int64_t count = int64_t(d.n) * d.c * d.spatial;
    const F logits = cast_vec<float>(random_vec(size_t(count), 5, -4, 4));
    const F labels = cast_vec<float>(random_labels(size_t(int64_t(d.n) * d.spatial), d.c, 6));
    const V ld = widen(logits), lbd = widen(labels);
    double lr = 0;
    V gr(count);
    CHECK(vx::dice_loss_ref<double>(&lr, gr.data(), ld.data(), lbd.data(), d.n, d.c, d.spatial, {d.smooth_nr, d.smooth_dr,
                                    d.r, d.weight}) == Status::Ok);
    double l1 = 0;
    F g1;
    with_threads([&](int t) {
      double l = 0, l_only = 0;
      F g(count);
      CHECK(vx::dice_loss(&l, g.data(), logits.data(), labels.data(), d.n, d.c, d.spatial, {d.smooth_nr, d.smooth_dr, d.r,
                          d.weight}) == Status::Ok);
      CHECK(vx::dice_loss(&l_only, nullptr, logits.data(), labels.data(), d.n, d.c, d.spatial, {d.smooth_nr, d.smooth_dr,
                          d.r, d.weight}) == Status::Ok);
      CHECK_REL(&l, &lr, 1, kTol);
      CHECK(l_only == l);  // the loss does not depend on where the softmax is kept
      CHECK_REL(g.data(), gr.data(), size_t(count), d.grad_tol);
      if (t == 1) {
        l1 = l;
        g1 = g;
      } else {
        CHECK(l == l1 && same_bits(g, g1));  // thread-count independent
      }
    });
  }
}

TEST(elementwise_losses_ref_fd) {
  const int64_t count = 3 * 3 * 105;
  const V x = random_vec(size_t(count), 7, -3, 3);
  V t = random_vec(size_t(count), 8, 0, 1);
  for (size_t i = 0; i < t.size(); ++i)  // keep |x - t| away from 0 for l1's kink
    if (std::fabs(x[i] - t[i]) < 0.01) t[i] += 0.05;
  using Fn = Status (*)(double*, double*, const double*, const double*, int64_t, Reduction, float);
  const Fn fns[] = {&vx::bce_with_logits_loss_ref<double>, &vx::mse_loss_ref<double>, &vx::l1_loss_ref<double>};
  for (Fn fn : fns)
    for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
      auto loss = [&](const V& xv) {
        double l = 0;
        fn(&l, nullptr, xv.data(), t.data(), count, r, 1.5f);
        return l;
      };
      double l = 0;
      V g(count);
      CHECK(fn(&l, g.data(), x.data(), t.data(), count, r, 1.5f) == Status::Ok);
      const V fd = finite_diff(x, loss);
      CHECK_REL(g.data(), fd.data(), size_t(count), kFdTol);
    }
  // BCE with logits by hand: x = 0 -> log 2 for any target; x = 2, t = 1 -> log(1 + e^-2).
  const V xs = {0.0, 2.0, -50.0}, ts = {0.3, 1.0, 0.0};
  double l = 0;
  vx::bce_with_logits_loss_ref<double>(&l, nullptr, xs.data(), ts.data(), 3, Reduction::Sum, 1.0f);
  CHECK(std::fabs(l - (std::log(2.0) + std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-50.0)))) < 1e-12);
}

TEST(elementwise_losses_optimized_vs_ref) {
  const int64_t counts[] = {1, 7, 105, 1001, 70001};
  using FnF = Status (*)(double*, float*, const float*, const float*, int64_t, Reduction, float);
  using FnD = Status (*)(double*, double*, const double*, const double*, int64_t, Reduction, float);
  const FnF ff[] = {&vx::bce_with_logits_loss, &vx::mse_loss, &vx::l1_loss};
  const FnD fd[] = {&vx::bce_with_logits_loss_ref<double>, &vx::mse_loss_ref<double>, &vx::l1_loss_ref<double>};
  for (int64_t count : counts)
    for (int k = 0; k < 3; ++k)
      for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
        const F x = cast_vec<float>(random_vec(size_t(count), 9, -5, 5));
        const F t = cast_vec<float>(random_vec(size_t(count), 10, 0, 1));
        const V xd = widen(x), td = widen(t);
        double lr = 0;
        V gr(count);
        fd[k](&lr, gr.data(), xd.data(), td.data(), count, r, 0.7f);
        double l1 = 0;
        with_threads([&](int th) {
          double l = 0;
          F g(count);
          CHECK(ff[k](&l, g.data(), x.data(), t.data(), count, r, 0.7f) == Status::Ok);
          CHECK_REL(&l, &lr, 1, kTol);
          CHECK_REL(g.data(), gr.data(), size_t(count), kTol);
          if (th == 1) l1 = l;
          else CHECK(l == l1);
        });
      }
  double l = 0;
  const float one = 1.0f;
  CHECK(vx::mse_loss(&l, nullptr, &one, &one, 0, Reduction::Mean, 1.0f) == Status::InvalidArgument);
  CHECK(vx::mse_loss(&l, nullptr, nullptr, &one, 1, Reduction::Mean, 1.0f) == Status::InvalidArgument);
  // l1's gradient is 0 where x == t (PyTorch's sign).
  float g = 5.0f;
  vx::l1_loss(&l, &g, &one, &one, 1, Reduction::Sum, 1.0f);
  CHECK(g == 0.0f && l == 0.0);
}

TEST(kl_normal_ref_fd_and_optimized) {
  const int n = 3, l = 7;
  const size_t count = size_t(n) * l;
  const V mu = random_vec(count, 11, -1.5, 1.5), lv = random_vec(count, 12, -2, 1);
  for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
    auto loss = [&](const V& m, const V& v) {
      double out = 0;
      vx::kl_normal_ref<double>(&out, nullptr, nullptr, nullptr, m.data(), v.data(), n, l, r, 0.01f);
      return out;
    };
    double out = 0;
    V per(n), dmu(count, 0.5), dlv(count, -0.5);
    CHECK(vx::kl_normal_ref<double>(&out, per.data(), dmu.data(), dlv.data(), mu.data(), lv.data(), n, l, r, 0.01f) ==
          Status::Ok);
    V fdm = finite_diff(mu, [&](const V& m) { return loss(m, lv); });
    V fdv = finite_diff(lv, [&](const V& v) { return loss(mu, v); });
    for (size_t i = 0; i < count; ++i) {
      fdm[i] += 0.5;  // gradients are added to what dmu/dlogvar held
      fdv[i] -= 0.5;
    }
    CHECK_REL(dmu.data(), fdm.data(), count, kFdTol);
    CHECK_REL(dlv.data(), fdv.data(), count, kFdTol);
    // Per-sample values by hand, and the reduction over samples.
    double total = 0;
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int k = 0; k < l; ++k) s += 1 + lv[i * l + k] - mu[i * l + k] * mu[i * l + k] - std::exp(lv[i * l + k]);
      CHECK(std::fabs(per[i] - (-0.5 * s)) < 1e-12);
      total += -0.5 * s;
    }
    CHECK(std::fabs(out - double(0.01f) * (r == Reduction::Mean ? total / n : total)) < 1e-12);
    // Optimized against the reference.
    const F muf = cast_vec<float>(mu), lvf = cast_vec<float>(lv);
    double outf = 0;
    F perf(n), dmuf(count, 0.5f), dlvf(count, -0.5f);
    CHECK(vx::kl_normal(&outf, perf.data(), dmuf.data(), dlvf.data(), muf.data(), lvf.data(), n, l, r, 0.01f) ==
          Status::Ok);
    double outr = 0;
    V perr(n), dmur(count, 0.5), dlvr(count, -0.5);
    vx::kl_normal_ref<double>(&outr, perr.data(), dmur.data(), dlvr.data(), widen(muf).data(), widen(lvf).data(), n, l,
                              r, 0.01f);
    CHECK_REL(&outf, &outr, 1, kTol);
    CHECK_REL(perf.data(), perr.data(), size_t(n), kTol);
    CHECK_REL(dmuf.data(), dmur.data(), count, kTol);
    CHECK_REL(dlvf.data(), dlvr.data(), count, kTol);
  }
  double out = 0;
  CHECK(vx::kl_normal(&out, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, Reduction::Sum, 1.0f) ==
        Status::InvalidArgument);
}

TEST(reparameterize_ref_fd_and_modes) {
  const int n = 3, l = 7;
  const size_t count = size_t(n) * l;
  const V mu = random_vec(count, 13), lv = random_vec(count, 14, -2, 1), r = random_vec(count, 15);
  for (LatentMode mode : {LatentMode::Sample, LatentMode::MeanPlusStd, LatentMode::Mean}) {
    auto loss = [&](const V& m, const V& v) {
      V z(count);
      vx::reparameterize_forward_ref<double>(z.data(), nullptr, m.data(), v.data(), n, l, mode, 42, 3);
      return dot(z, r);
    };
    V z(count), eps(count), dmu(count, 1.0), dlv(count, 2.0);
    CHECK(vx::reparameterize_forward_ref<double>(z.data(), eps.data(), mu.data(), lv.data(), n, l, mode, 42, 3) ==
          Status::Ok);
    CHECK(vx::reparameterize_backward_ref<double>(dmu.data(), dlv.data(), r.data(), eps.data(), lv.data(), n, l) ==
          Status::Ok);
    V fdm = finite_diff(mu, [&](const V& m) { return loss(m, lv); });
    V fdv = finite_diff(lv, [&](const V& v) { return loss(mu, v); });
    for (size_t i = 0; i < count; ++i) {
      fdm[i] += 1.0;
      fdv[i] += 2.0;
    }
    CHECK_REL(dmu.data(), fdm.data(), count, kFdTol);
    CHECK_REL(dlv.data(), fdv.data(), count, kFdTol);
    for (size_t i = 0; i < count; ++i) {
      const double want_eps = mode == LatentMode::Sample ? double(vx::philox_normal(42, 3, i))
                                                         : (mode == LatentMode::Mean ? 0.0 : 1.0);
      CHECK(eps[i] == want_eps);
    }
    // Optimized against the reference, 1 to 3 threads.
    const F muf = cast_vec<float>(mu), lvf = cast_vec<float>(lv), rf = cast_vec<float>(r);
    V zr(count), er(count), dmr(count, 1.0), dlr(count, 2.0);
    vx::reparameterize_forward_ref<double>(zr.data(), er.data(), widen(muf).data(), widen(lvf).data(), n, l, mode, 42, 3);
    vx::reparameterize_backward_ref<double>(dmr.data(), dlr.data(), widen(rf).data(), er.data(), widen(lvf).data(), n, l);
    with_threads([&](int) {
      F zf(count), ef(count), dmf(count, 1.0f), dlf(count, 2.0f);
      CHECK(vx::reparameterize_forward(zf.data(), ef.data(), muf.data(), lvf.data(), n, l, mode, 42, 3) == Status::Ok);
      CHECK(vx::reparameterize_backward(dmf.data(), dlf.data(), rf.data(), ef.data(), lvf.data(), n, l) == Status::Ok);
      CHECK_REL(zf.data(), zr.data(), count, kTol);
      CHECK_REL(ef.data(), er.data(), count, 0.0);
      CHECK_REL(dmf.data(), dmr.data(), count, kTol);
      CHECK_REL(dlf.data(), dlr.data(), count, kTol);
      if (mode == LatentMode::Mean)
        for (size_t i = 0; i < count; ++i) CHECK(zf[i] == muf[i]);
      if (mode == LatentMode::MeanPlusStd)  // MONAI's eval-mode reparameterize: mu + exp(logvar / 2)
        for (size_t i = 0; i < count; ++i) CHECK(std::fabs(zf[i] - (muf[i] + std::exp(0.5 * lvf[i]))) < 1e-6);
    });
  }
  // A longer latent, split over threads, still draws element i from stream index i.
  const int big = 70001;
  F mu0(big, 0.0f), lv0(big, 0.0f), z(big), e(big);
  vx::set_num_threads(2);
  CHECK(vx::reparameterize_forward(z.data(), e.data(), mu0.data(), lv0.data(), 1, big, LatentMode::Sample, 8, 9) ==
        Status::Ok);
  vx::set_num_threads(0);
  for (int i = 0; i < big; i += 997) CHECK(z[i] == vx::philox_normal(8, 9, uint64_t(i)) && e[i] == z[i]);
  F dm(big);
  CHECK(vx::reparameterize_backward(dm.data(), lv0.data(), z.data(), nullptr, lv0.data(), 1, big) ==
        Status::InvalidArgument);  // dlogvar needs eps
}

VX_TEST_MAIN()
