// Rivera's population prior (L_pop) and variance penalty (L_ind): reference gradients against finite
// differences of the loss in double — including the cross-sample coupling through the batch mean and
// variance (moving one sample's mu changes every sample's gradient) — the closed form by hand, the
// float kernels against the references, and the bad-input paths (batch of 1, equal means, NaN).
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "check.h"
#include "population_prior.h"
#include "population_prior_ref.h"

namespace {

using vxtest::cast_vec;
using vxtest::random_vec;
using V = std::vector<double>;
using F = std::vector<float>;
using vx::PopulationVariance;
using vx::Reduction;
using vx::Status;

const double kFdTol = 1e-6;
const double kTol = 1e-5;
V finite_diff(const V& x, const std::function<double(const V&)>& f) { return vxtest::finite_diff(x, f, 1e-5); }
V widen(const F& f) { return V(f.begin(), f.end()); }

struct PopCase {
  int n, l;
  PopulationVariance mode;
  float weight;
};
const PopCase kPop[] = {
    {2, 1, PopulationVariance::Means, 1.0f},   {3, 7, PopulationVariance::Means, 1.0f},
    {10, 5, PopulationVariance::Means, 0.5f},  {1, 4, PopulationVariance::Mixture, 1.0f},
    {4, 6, PopulationVariance::Mixture, 2.0f}, {17, 3, PopulationVariance::Mixture, 1.0f},
};

}  // namespace

TEST(population_kl_ref_fd) {
  for (const PopCase& c : kPop) {
    const size_t count = size_t(c.n) * c.l;
    const V mu = random_vec(count, 21 + c.n, -1.5, 1.5), lv = random_vec(count, 22 + c.l, -2, 1);
    auto loss = [&](const V& m, const V& v) {
      double out = 0;
      CHECK(vx::population_kl_ref<double>(&out, nullptr, nullptr, nullptr, nullptr, m.data(), v.data(), c.n, c.l, c.mode,
                                          c.weight) == Status::Ok);
      return out;
    };
    double out = 0;
    V dmu(count, 0.25), dlv(count, -0.5), mean(size_t(c.l)), var(size_t(c.l));
    CHECK(vx::population_kl_ref<double>(&out, dmu.data(), dlv.data(), mean.data(), var.data(), mu.data(), lv.data(), c.n,
                                        c.l, c.mode, c.weight) == Status::Ok);
    V fdm = finite_diff(mu, [&](const V& m) { return loss(m, lv); });
    V fdv = finite_diff(lv, [&](const V& v) { return loss(mu, v); });
    for (size_t i = 0; i < count; ++i) {
      fdm[i] += 0.25;  // gradients are added to what dmu/dlogvar held
      fdv[i] -= 0.5;
    }
    CHECK_REL(dmu.data(), fdm.data(), count, kFdTol);
    CHECK_REL(dlv.data(), fdv.data(), count, kFdTol);
    // Closed form: KL(N(m, diag v) || N(0, I)) with m, v the batch moments (biased variance).
    double want = 0;
    for (int k = 0; k < c.l; ++k) {
      double m = 0, v = 0, s = 0;
      for (int i = 0; i < c.n; ++i) m += mu[i * c.l + k] / c.n;
      for (int i = 0; i < c.n; ++i) v += (mu[i * c.l + k] - m) * (mu[i * c.l + k] - m) / c.n;
      for (int i = 0; i < c.n; ++i) s += std::exp(lv[i * c.l + k]) / c.n;
      if (c.mode == PopulationVariance::Mixture) v += s;
      CHECK(std::fabs(mean[k] - m) < 1e-12 && std::fabs(var[k] - v) < 1e-12);
      want += 0.5 * (m * m + v - std::log(v) - 1);
    }
    CHECK(std::fabs(out - double(c.weight) * want) < 1e-12 * std::fmax(1.0, std::fabs(want)));
  }
}

// The coupling: d L / d mu_i depends on mu_j (j != i). Checked as a mixed second difference of the
// loss, compared with the finite difference of the analytic gradient of sample 0 as sample 1 moves.
TEST(population_kl_cross_sample_coupling) {
  const int n = 4, l = 3;
  const size_t count = size_t(n) * l;
  const V mu = random_vec(count, 31, -1, 1), lv = random_vec(count, 32, -1, 0.5);
  for (PopulationVariance mode : {PopulationVariance::Means, PopulationVariance::Mixture}) {
    auto grad0 = [&](const V& m) {  // analytic dL/dmu_{0,0}
      V d(count, 0.0);
      double out = 0;
      vx::population_kl_ref<double>(&out, d.data(), nullptr, nullptr, nullptr, m.data(), lv.data(), n, l, mode, 1.0f);
      return d[0];
    };
    V cross = finite_diff(mu, grad0);  // d/dmu_j of dL/dmu_{0,0}
    // Sample 1, same dimension: nonzero and equal to the analytic mixed derivative.
    double m = 0, v = 0, s = 0;
    for (int i = 0; i < n; ++i) m += mu[i * l] / n;
    for (int i = 0; i < n; ++i) v += (mu[i * l] - m) * (mu[i * l] - m) / n;
    for (int i = 0; i < n; ++i) s += std::exp(lv[i * l]) / n;
    if (mode == PopulationVariance::Mixture) v += s;
    // d/dmu_{1,0} of (1/n)(m + (1 - 1/v)(mu_0 - m)) = (1/n)[1/n - (1 - 1/v)/n + (mu_0 - m)(2 (mu_1 - m)/n)/v^2]
    const double want = (1.0 / n) * (1.0 / n - (1 - 1 / v) / n + (mu[0] - m) * 2 * (mu[l] - m) / (n * v * v));
    CHECK(std::fabs(cross[l] - want) < 1e-6);
    CHECK(std::fabs(cross[l]) > 1e-3);
    // Other dimensions do not couple.
    CHECK(std::fabs(cross[l + 1]) < 1e-8);
  }
}

TEST(population_kl_optimized_vs_ref) {
  for (const PopCase& c : kPop) {
    const size_t count = size_t(c.n) * c.l;
    const F mu = cast_vec<float>(random_vec(count, 41 + c.n, -2, 2)), lv = cast_vec<float>(random_vec(count, 42, -3, 1));
    double outf = 0, outr = 0;
    F dmu(count, 0.1f), dlv(count, 0.2f), mean(size_t(c.l)), var(size_t(c.l));
    V dmur(count, 0.1), dlvr(count, 0.2), meanr(size_t(c.l)), varr(size_t(c.l));
    CHECK(vx::population_kl(&outf, dmu.data(), dlv.data(), mean.data(), var.data(), mu.data(), lv.data(), c.n, c.l, c.mode,
                            c.weight) == Status::Ok);
    CHECK(vx::population_kl_ref<double>(&outr, dmur.data(), dlvr.data(), meanr.data(), varr.data(), widen(mu).data(),
                                        widen(lv).data(), c.n, c.l, c.mode, c.weight) == Status::Ok);
    CHECK_REL(&outf, &outr, 1, kTol);
    CHECK_REL(dmu.data(), dmur.data(), count, kTol);
    CHECK_REL(dlv.data(), dlvr.data(), count, kTol);
    CHECK_REL(mean.data(), meanr.data(), size_t(c.l), kTol);
    CHECK_REL(var.data(), varr.data(), size_t(c.l), kTol);
    // Bit-identical on a second call.
    double out2 = 0;
    F dmu2(count, 0.1f), dlv2(count, 0.2f);
    vx::population_kl(&out2, dmu2.data(), dlv2.data(), nullptr, nullptr, mu.data(), lv.data(), c.n, c.l, c.mode, c.weight);
    CHECK(out2 == outf && std::memcmp(dmu2.data(), dmu.data(), count * 4) == 0 &&
          std::memcmp(dlv2.data(), dlv.data(), count * 4) == 0);
  }
}

TEST(population_kl_bad_input) {
  const F mu = {0.5f, -0.25f, 1.0f}, lv = {0.f, 0.f, 0.f};
  double out = 0;
  F dmu(3, 0.f);
  // Batch of one with the code's variance of the means: a clear error, nothing written.
  CHECK(vx::population_kl(&out, dmu.data(), nullptr, nullptr, nullptr, mu.data(), nullptr, 1, 3, PopulationVariance::Means,
                          1.0f) == Status::InvalidArgument);
  CHECK(std::strstr(vx::last_error(), "at least 2") != nullptr);
  CHECK(dmu[0] == 0.f && dmu[1] == 0.f && dmu[2] == 0.f);
  // The mixture variance is defined for one sample: finite value and gradient.
  CHECK(vx::population_kl(&out, dmu.data(), nullptr, nullptr, nullptr, mu.data(), lv.data(), 1, 3,
                          PopulationVariance::Mixture, 1.0f) == Status::Ok);
  CHECK(std::isfinite(out) && std::isfinite(dmu[0]));
  // Equal means in one dimension: an error naming the dimension, not -log 0.
  const F same = {1.f, 2.f, 1.f, 3.f};
  CHECK(vx::population_kl(&out, nullptr, nullptr, nullptr, nullptr, same.data(), nullptr, 2, 2, PopulationVariance::Means,
                          1.0f) == Status::InvalidArgument);
  CHECK(std::strstr(vx::last_error(), "dimension 0") != nullptr);
  // NaN in the means.
  const F bad = {1.f, std::numeric_limits<float>::quiet_NaN(), 0.f, 2.f};
  CHECK(vx::population_kl(&out, nullptr, nullptr, nullptr, nullptr, bad.data(), nullptr, 2, 2, PopulationVariance::Means,
                          1.0f) == Status::NotFinite);
  CHECK(vx::population_kl(&out, nullptr, nullptr, nullptr, nullptr, mu.data(), nullptr, 3, 1, PopulationVariance::Mixture,
                          1.0f) == Status::InvalidArgument);  // mixture without logvar
  CHECK(vx::population_kl(nullptr, nullptr, nullptr, nullptr, nullptr, mu.data(), nullptr, 3, 1,
                          PopulationVariance::Means, 1.0f) == Status::InvalidArgument);
}

TEST(variance_penalty_ref_fd_and_optimized) {
  const int n = 3, l = 7;
  const size_t count = size_t(n) * l;
  const V lv = random_vec(count, 51, -3, 2);
  for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
    auto loss = [&](const V& v) {
      double out = 0;
      vx::variance_penalty_ref<double>(&out, nullptr, nullptr, v.data(), n, l, r, 0.1f);
      return out;
    };
    double out = 0;
    V per(n), dlv(count, 0.5);
    CHECK(vx::variance_penalty_ref<double>(&out, per.data(), dlv.data(), lv.data(), n, l, r, 0.1f) == Status::Ok);
    V fd = finite_diff(lv, loss);
    for (double& g : fd) g += 0.5;
    CHECK_REL(dlv.data(), fd.data(), count, kFdTol);
    double total = 0;
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int k = 0; k < l; ++k) s += std::exp(lv[i * l + k]) - lv[i * l + k] - 1;  // the code's -(1 + lv - e^lv)
      CHECK(std::fabs(per[i] - s) < 1e-12);
      total += s;
    }
    CHECK(std::fabs(out - double(0.1f) * (r == Reduction::Mean ? total / n : total)) < 1e-12);
    const F lvf = cast_vec<float>(lv);
    double outf = 0, outr = 0;
    F perf(n), dlvf(count, 0.5f);
    V perr(n), dlvr(count, 0.5);
    CHECK(vx::variance_penalty(&outf, perf.data(), dlvf.data(), lvf.data(), n, l, r, 0.1f) == Status::Ok);
    vx::variance_penalty_ref<double>(&outr, perr.data(), dlvr.data(), widen(lvf).data(), n, l, r, 0.1f);
    CHECK_REL(&outf, &outr, 1, kTol);
    CHECK_REL(perf.data(), perr.data(), size_t(n), kTol);
    CHECK_REL(dlvf.data(), dlvr.data(), count, kTol);
  }
  // Minimum at sigma = 1 (logvar = 0): zero value, zero gradient.
  const F zero(6, 0.f);
  double out = 1;
  F d(6, 0.f);
  CHECK(vx::variance_penalty(&out, nullptr, d.data(), zero.data(), 2, 3, Reduction::Mean, 1.0f) == Status::Ok);
  CHECK(out == 0 && d[0] == 0.f);
  CHECK(vx::variance_penalty(&out, nullptr, nullptr, nullptr, 2, 3, Reduction::Mean, 1.0f) == Status::InvalidArgument);
}

VX_TEST_MAIN()
