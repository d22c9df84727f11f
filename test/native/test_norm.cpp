// batch_norm3d / instance_norm3d: reference backward passes against finite differences (double),
// optimized float kernels against the references over a table of shapes with 1, 2 and 3 threads
// (results bit-identical across thread counts), PyTorch's running-statistics update by hand, eval
// mode, and argument checks.
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "check.h"
#include "norm.h"
#include "norm_ref.h"
#include "parallel.h"

namespace {

using vxtest::cast_vec;
using vxtest::random_vec;
using V = std::vector<double>;
using F = std::vector<float>;
using vx::NormShape;
using vx::Status;

double dot(const V& a, const V& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

const double kFdTol = 1e-6;
const double kTol = 1e-5;  // optimized float vs double reference
// h = 1e-4: with sums of a few hundred terms, rounding (~1e-14 / h) dominates below that.
V finite_diff(const V& x, const std::function<double(const V&)>& f) { return vxtest::finite_diff(x, f, 1e-4); }

NormShape shape(int n, int c, int64_t spatial) {
  NormShape s;
  s.n = n;
  s.c = c;
  s.spatial = spatial;
  return s;
}

// Shared table: odd sizes, c not a multiple of 8/16, spatial 1 (batch norm only), one case that spans
// several reduction blocks and threads, and spatial sizes that are multiples of the vector width (8) or
// leave tails of 1 to 7 lanes (one after a full reduction block).
const NormShape kShapes[] = {shape(1, 1, 2), shape(1, 3, 105), shape(2, 5, 7), shape(3, 17, 33), shape(3, 9, 1),
                             shape(2, 3, 40001), shape(2, 4, 16), shape(1, 2, 16390), shape(3, 2, 13)};

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

bool same_bits(const F& a, const F& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

V widen(const F& f) { return V(f.begin(), f.end()); }

}  // namespace

TEST(batch_norm_train_ref_fd) {
  const NormShape s = shape(2, 3, 5 * 3 * 7);
  const size_t count = size_t(s.n) * s.c * s.spatial;
  const V x = random_vec(count, 1, -2, 2), r = random_vec(count, 2);
  const V gamma = random_vec(3, 3, 0.5, 1.5), beta = random_vec(3, 4);
  for (bool affine : {true, false}) {
    const double* g = affine ? gamma.data() : nullptr;
    const double* b = affine ? beta.data() : nullptr;
    auto loss = [&](const V& xv, const V& gv, const V& bv) {
      V y(count);
      vx::batch_norm3d_forward_train_ref<double>(y.data(), nullptr, nullptr, nullptr, nullptr, xv.data(),
                                                 affine ? gv.data() : nullptr, affine ? bv.data() : nullptr, s);
      return dot(y, r);
    };
    V y(count), mean(3), invstd(3), dx(count), dgamma(3, 0.5), dbeta(3, -0.5);
    CHECK(vx::batch_norm3d_forward_train_ref<double>(y.data(), mean.data(), invstd.data(), nullptr, nullptr, x.data(), g,
                                                     b, s) == Status::Ok);
    CHECK(vx::batch_norm3d_backward_ref<double>(dx.data(), dgamma.data(), dbeta.data(), r.data(), x.data(), g, mean.data(),
                                                invstd.data(), s) == Status::Ok);
    V fdx = finite_diff(x, [&](const V& v) { return loss(v, gamma, beta); });
    CHECK_REL(dx.data(), fdx.data(), count, kFdTol);
    if (affine) {
      V fdg = finite_diff(gamma, [&](const V& v) { return loss(x, v, beta); });
      V fdb = finite_diff(beta, [&](const V& v) { return loss(x, gamma, v); });
      for (int c = 0; c < 3; ++c) {
        fdg[c] += 0.5;  // parameter gradients accumulate
        fdb[c] -= 0.5;
      }
      CHECK_REL(dgamma.data(), fdg.data(), 3, kFdTol);
      CHECK_REL(dbeta.data(), fdb.data(), 3, kFdTol);
    }
  }
}

TEST(batch_norm_eval_ref_fd) {
  const NormShape s = shape(3, 3, 5 * 3 * 7);
  const size_t count = size_t(s.n) * s.c * s.spatial;
  const V x = random_vec(count, 5, -2, 2), r = random_vec(count, 6);
  const V gamma = random_vec(3, 7, 0.5, 1.5), beta = random_vec(3, 8);
  const V rm = random_vec(3, 9), rv = random_vec(3, 10, 0.5, 2.0);
  auto loss = [&](const V& xv, const V& gv, const V& bv) {
    V y(count);
    vx::batch_norm3d_forward_eval_ref<double>(y.data(), xv.data(), gv.data(), bv.data(), rm.data(), rv.data(), s);
    return dot(y, r);
  };
  V dx(count), dgamma(3, 0.0), dbeta(3, 0.0);
  CHECK(vx::batch_norm3d_backward_eval_ref<double>(dx.data(), dgamma.data(), dbeta.data(), r.data(), x.data(),
                                                   gamma.data(), rm.data(), rv.data(), s) == Status::Ok);
  V fdx = finite_diff(x, [&](const V& v) { return loss(v, gamma, beta); });
  V fdg = finite_diff(gamma, [&](const V& v) { return loss(x, v, beta); });
  V fdb = finite_diff(beta, [&](const V& v) { return loss(x, gamma, v); });
  CHECK_REL(dx.data(), fdx.data(), count, kFdTol);
  CHECK_REL(dgamma.data(), fdg.data(), 3, kFdTol);
  CHECK_REL(dbeta.data(), fdb.data(), 3, kFdTol);
}

TEST(instance_norm_ref_fd) {
  const NormShape s = shape(2, 3, 5 * 3 * 7);
  const size_t count = size_t(s.n) * s.c * s.spatial;
  const V x = random_vec(count, 11, -2, 2), r = random_vec(count, 12);
  const V gamma = random_vec(3, 13, 0.5, 1.5), beta = random_vec(3, 14);
  auto loss = [&](const V& xv, const V& gv, const V& bv) {
    V y(count);
    vx::instance_norm3d_forward_ref<double>(y.data(), nullptr, nullptr, xv.data(), gv.data(), bv.data(), s);
    return dot(y, r);
  };
  V y(count), mean(6), invstd(6), dx(count), dgamma(3, 0.0), dbeta(3, 0.0);
  vx::instance_norm3d_forward_ref<double>(y.data(), mean.data(), invstd.data(), x.data(), gamma.data(), beta.data(), s);
  CHECK(vx::instance_norm3d_backward_ref<double>(dx.data(), dgamma.data(), dbeta.data(), r.data(), x.data(), gamma.data(),
                                                 mean.data(), invstd.data(), s) == Status::Ok);
  V fdx = finite_diff(x, [&](const V& v) { return loss(v, gamma, beta); });
  V fdg = finite_diff(gamma, [&](const V& v) { return loss(x, v, beta); });
  V fdb = finite_diff(beta, [&](const V& v) { return loss(x, gamma, v); });
  CHECK_REL(dx.data(), fdx.data(), count, kFdTol);
  CHECK_REL(dgamma.data(), fdg.data(), 3, kFdTol);
  CHECK_REL(dbeta.data(), fdb.data(), 3, kFdTol);
}

// The fused PReLU variants of each case: none, one shared slope, one slope per channel.
struct PreluCase {
  int num_a;  // 0: no fused PReLU
};
const PreluCase kPrelus[] = {{0}, {1}, {-1}};  // -1: the channel count

// Slopes for a case (0.1 .. 0.5, one per num_a), and the float and double views of a fused PReLU.
struct Slopes {
  F af;
  V ad;
  int num_a = 0;
  Slopes(const PreluCase& p, int c) : num_a(p.num_a < 0 ? c : p.num_a) {
    if (num_a) af = cast_vec<float>(random_vec(size_t(num_a), 26, 0.1, 0.5));
    ad = widen(af);
  }
  // beta: the norm's beta, which backward needs to recompute the normalized values.
  vx::NormPrelu f(float* dslope, const float* beta) const {
    vx::NormPrelu p;
    p.slope = af.data();
    p.num_a = num_a;
    p.dslope = dslope;
    p.beta = beta;
    return p;
  }
  vx::NormPreluT<double> d(double* dslope, const double* beta) const {
    vx::NormPreluT<double> p;
    p.slope = ad.data();
    p.num_a = num_a;
    p.dslope = dslope;
    p.beta = beta;
    return p;
  }
};

TEST(batch_norm_optimized_vs_ref) {
  for (const NormShape& s : kShapes)
    for (const PreluCase& pc : kPrelus) {
      const size_t count = size_t(s.n) * s.c * s.spatial, c = size_t(s.c);
      const F xf = cast_vec<float>(random_vec(count, 20, -3, 5));
      const F dyf = cast_vec<float>(random_vec(count, 21));
      const F gf = cast_vec<float>(random_vec(c, 22, 0.5, 1.5)), bf = cast_vec<float>(random_vec(c, 23));
      const F rm0 = cast_vec<float>(random_vec(c, 24)), rv0 = cast_vec<float>(random_vec(c, 25, 0.5, 2));
      const V x = widen(xf), dy = widen(dyf), g = widen(gf), b = widen(bf);
      const Slopes sl(pc, s.c);
      const size_t na = size_t(sl.num_a);
      V y(count), mean(c), inv(c), rm = widen(rm0), rv = widen(rv0);
      const vx::NormPreluT<double> pfd = sl.d(nullptr, b.data());
      CHECK(vx::batch_norm3d_forward_train_ref<double>(y.data(), mean.data(), inv.data(), rm.data(), rv.data(),
                                                       x.data(), g.data(), b.data(), s, na ? &pfd : nullptr) ==
            Status::Ok);
      std::vector<F> first;
      with_threads([&](int t) {
        F yo(count), meano(c), invo(c), rmo = rm0, rvo = rv0, dxo(count), dgo(c, 1.0f), dbo(c, -1.0f), dao(na, 0.5f);
        const vx::NormPrelu pf = sl.f(dao.data(), bf.data());
        const vx::NormPrelu* pp = na ? &pf : nullptr;
        CHECK(vx::batch_norm3d_forward_train(yo.data(), meano.data(), invo.data(), rmo.data(), rvo.data(), xf.data(),
                                             gf.data(), bf.data(), s, pp) == Status::Ok);
        CHECK(vx::batch_norm3d_backward(dxo.data(), dgo.data(), dbo.data(), dyf.data(), xf.data(), gf.data(),
                                        meano.data(), invo.data(), s, pp) == Status::Ok);
        // Each backward is compared on the same (float) inputs it was given.
        V dx(count), dg(c, 1.0), db(c, -1.0), da(na, 0.5);
        const vx::NormPreluT<double> pd = sl.d(da.data(), b.data());
        vx::batch_norm3d_backward_ref<double>(dx.data(), dg.data(), db.data(), dy.data(), x.data(), g.data(),
                                              widen(meano).data(), widen(invo).data(), s, na ? &pd : nullptr);
        V ye(count), dxe(count), dge(c, 0.0), dbe(c, 0.0), dae(na, 0.0);
        const vx::NormPreluT<double> pde = sl.d(dae.data(), b.data());
        vx::batch_norm3d_forward_eval_ref<double>(ye.data(), x.data(), g.data(), b.data(), widen(rmo).data(),
                                                  widen(rvo).data(), s, na ? &pde : nullptr);
        vx::batch_norm3d_backward_eval_ref<double>(dxe.data(), dge.data(), dbe.data(), dy.data(), x.data(), g.data(),
                                                   widen(rmo).data(), widen(rvo).data(), s, na ? &pde : nullptr);
        CHECK_REL(yo.data(), y.data(), count, kTol);
        CHECK_REL(meano.data(), mean.data(), c, kTol);
        CHECK_REL(invo.data(), inv.data(), c, kTol);
        CHECK_REL(rmo.data(), rm.data(), c, kTol);
        CHECK_REL(rvo.data(), rv.data(), c, kTol);
        CHECK_REL(dxo.data(), dx.data(), count, kTol);
        CHECK_REL(dgo.data(), dg.data(), c, kTol);
        CHECK_REL(dbo.data(), db.data(), c, kTol);
        CHECK_REL(dao.data(), da.data(), na, kTol);
        // Eval mode with the updated running statistics.
        F yeo(count), dxeo(count), dgeo(c, 0.0f), dbeo(c, 0.0f), daeo(na, 0.0f);
        const vx::NormPrelu pfe = sl.f(daeo.data(), bf.data());
        const vx::NormPrelu* ppe = na ? &pfe : nullptr;
        CHECK(vx::batch_norm3d_forward_eval(yeo.data(), xf.data(), gf.data(), bf.data(), rmo.data(), rvo.data(), s,
                                            ppe) == Status::Ok);
        CHECK(vx::batch_norm3d_backward_eval(dxeo.data(), dgeo.data(), dbeo.data(), dyf.data(), xf.data(), gf.data(),
                                             rmo.data(), rvo.data(), s, ppe) == Status::Ok);
        CHECK_REL(yeo.data(), ye.data(), count, kTol);
        CHECK_REL(dxeo.data(), dxe.data(), count, kTol);
        CHECK_REL(dgeo.data(), dge.data(), c, kTol);
        CHECK_REL(dbeo.data(), dbe.data(), c, kTol);
        CHECK_REL(daeo.data(), dae.data(), na, kTol);
        const std::vector<F> all = {yo, meano, invo, rmo, rvo, dxo, dgo, dbo, dao, yeo, dxeo, dgeo, dbeo, daeo};
        if (t == 1) {
          first = all;
        } else {  // the thread count and the vector ISA change nothing
          for (size_t k = 0; k < all.size(); ++k) CHECK(same_bits(all[k], first[k]));
        }
        // affine=False, no running statistics, no saved statistics: the same normalized values.
        F yn(count);
        CHECK(vx::batch_norm3d_forward_train(yn.data(), nullptr, nullptr, nullptr, nullptr, xf.data(), nullptr, nullptr,
                                             s, pp) == Status::Ok);
        V yr(count);
        vx::batch_norm3d_forward_train_ref<double>(yr.data(), nullptr, nullptr, nullptr, nullptr, x.data(), nullptr,
                                                   nullptr, s, na ? &pfd : nullptr);
        CHECK_REL(yn.data(), yr.data(), count, kTol);
      });
    }
}

TEST(instance_norm_optimized_vs_ref) {
  for (const NormShape& s : kShapes)
    for (const PreluCase& pc : kPrelus) {
      if (s.spatial < 2) continue;
      const size_t count = size_t(s.n) * s.c * s.spatial, c = size_t(s.c), rows = size_t(s.n) * s.c;
      const F xf = cast_vec<float>(random_vec(count, 30, -1, 4));
      const F dyf = cast_vec<float>(random_vec(count, 31));
      const F gf = cast_vec<float>(random_vec(c, 32, 0.5, 1.5)), bf = cast_vec<float>(random_vec(c, 33));
      const V x = widen(xf), dy = widen(dyf), g = widen(gf), b = widen(bf);
      const Slopes sl(pc, s.c);
      const size_t na = size_t(sl.num_a);
      V y(count), mean(rows), inv(rows);
      const vx::NormPreluT<double> pfd = sl.d(nullptr, b.data());
      vx::instance_norm3d_forward_ref<double>(y.data(), mean.data(), inv.data(), x.data(), g.data(), b.data(), s,
                                              na ? &pfd : nullptr);
      std::vector<F> first;
      with_threads([&](int t) {
        F yo(count), meano(rows), invo(rows), dxo(count), dgo(c, 0.25f), dbo(c, 0.25f), dao(na, 0.25f);
        const vx::NormPrelu pf = sl.f(dao.data(), bf.data());
        const vx::NormPrelu* pp = na ? &pf : nullptr;
        CHECK(vx::instance_norm3d_forward(yo.data(), meano.data(), invo.data(), xf.data(), gf.data(), bf.data(), s,
                                          pp) == Status::Ok);
        CHECK(vx::instance_norm3d_backward(dxo.data(), dgo.data(), dbo.data(), dyf.data(), xf.data(), gf.data(),
                                           meano.data(), invo.data(), s, pp) == Status::Ok);
        V dx(count), dg(c, 0.25), db(c, 0.25), da(na, 0.25);
        const vx::NormPreluT<double> pd = sl.d(da.data(), b.data());
        vx::instance_norm3d_backward_ref<double>(dx.data(), dg.data(), db.data(), dy.data(), x.data(), g.data(),
                                                 widen(meano).data(), widen(invo).data(), s, na ? &pd : nullptr);
        CHECK_REL(yo.data(), y.data(), count, kTol);
        CHECK_REL(meano.data(), mean.data(), rows, kTol);
        CHECK_REL(invo.data(), inv.data(), rows, kTol);
        CHECK_REL(dxo.data(), dx.data(), count, kTol);
        CHECK_REL(dgo.data(), dg.data(), c, kTol);
        CHECK_REL(dbo.data(), db.data(), c, kTol);
        CHECK_REL(dao.data(), da.data(), na, kTol);
        const std::vector<F> all = {yo, meano, invo, dxo, dgo, dbo, dao};
        if (t == 1) {
          first = all;
        } else {
          for (size_t k = 0; k < all.size(); ++k) CHECK(same_bits(all[k], first[k]));
        }
      });
    }
}

TEST(batch_norm_running_stats_by_hand) {
  const NormShape s = shape(2, 2, 2);
  // [n0c0: 1 2][n0c1: 10 20][n1c0: 3 4][n1c1: 30 40] -> channel 0: 1..4, channel 1: 10..40.
  const F x = {1, 2, 10, 20, 3, 4, 30, 40};
  F y(8), mean(2), inv(2), rm = {0.5f, -1.0f}, rv = {2.0f, 3.0f};
  CHECK(vx::batch_norm3d_forward_train(y.data(), mean.data(), inv.data(), rm.data(), rv.data(), x.data(), nullptr, nullptr,
                                       s) == Status::Ok);
  const double eps = double(1e-5f);
  CHECK(std::fabs(mean[0] - 2.5) < 1e-6 && std::fabs(mean[1] - 25.0) < 1e-5);
  CHECK(std::fabs(inv[0] - 1.0 / std::sqrt(1.25 + eps)) < 1e-6);
  CHECK(std::fabs(inv[1] - 1.0 / std::sqrt(125.0 + eps)) < 1e-7);
  CHECK(std::fabs(rm[0] - (0.9 * 0.5 + 0.1 * 2.5)) < 1e-6);
  CHECK(std::fabs(rm[1] - (0.9 * -1.0 + 0.1 * 25.0)) < 1e-6);
  CHECK(std::fabs(rv[0] - (0.9 * 2.0 + 0.1 * (5.0 / 3.0))) < 1e-6);     // unbiased: 5/3, not 1.25
  CHECK(std::fabs(rv[1] - (0.9 * 3.0 + 0.1 * (500.0 / 3.0))) < 1e-5);   // unbiased: 500/3, not 125
  CHECK(std::fabs(y[0] - (1.0 - 2.5) / std::sqrt(1.25 + eps)) < 1e-6);
  CHECK(std::fabs(y[7] - (40.0 - 25.0) / std::sqrt(125.0 + eps)) < 1e-6);
  // A second step with another momentum.
  NormShape s2 = s;
  s2.momentum = 0.5f;
  const float rm_before = rm[0], rv_before = rv[0];
  vx::batch_norm3d_forward_train(y.data(), nullptr, nullptr, rm.data(), rv.data(), x.data(), nullptr, nullptr, s2);
  CHECK(std::fabs(rm[0] - (0.5 * rm_before + 0.5 * 2.5)) < 1e-6);
  CHECK(std::fabs(rv[0] - (0.5 * rv_before + 0.5 * (5.0 / 3.0))) < 1e-6);
}

TEST(batch_norm_eval_by_hand) {
  const NormShape s = shape(1, 2, 3);
  const F x = {1, 2, 3, -1, 0, 1}, g = {2.0f, 0.5f}, b = {0.25f, -1.0f}, rm = {2.0f, 0.5f}, rv = {4.0f, 0.25f};
  F y(6);
  CHECK(vx::batch_norm3d_forward_eval(y.data(), x.data(), g.data(), b.data(), rm.data(), rv.data(), s) == Status::Ok);
  const double eps = double(1e-5f);
  for (int i = 0; i < 6; ++i) {
    const int c = i / 3;
    const double want = (x[i] - rm[c]) / std::sqrt(double(rv[c]) + eps) * g[c] + b[c];
    CHECK(std::fabs(y[i] - want) < 1e-6);
  }
  // The running statistics are not touched by eval (they are const) and y does not depend on the batch.
  F y1(3);
  CHECK(vx::batch_norm3d_forward_eval(y1.data(), x.data(), g.data(), b.data(), rm.data(), rv.data(), shape(1, 1, 3)) ==
        Status::Ok);
  for (int i = 0; i < 3; ++i) CHECK(y1[i] == y[i]);
}

// Data with a mean far larger than its spread: the single-pass statistics must not cancel.
TEST(norm_large_mean) {
  const NormShape s = shape(2, 3, 5000);
  const size_t count = size_t(s.n) * s.c * s.spatial;
  V xv = random_vec(count, 40, -0.1, 0.1);
  for (double& v : xv) v += 1000.0;
  const F xf = cast_vec<float>(xv);
  const V x = widen(xf);
  V y(count), mean(3), inv(3);
  vx::batch_norm3d_forward_train_ref<double>(y.data(), mean.data(), inv.data(), nullptr, nullptr, x.data(), nullptr,
                                             nullptr, s);
  F yo(count), meano(3), invo(3);
  vx::batch_norm3d_forward_train(yo.data(), meano.data(), invo.data(), nullptr, nullptr, xf.data(), nullptr, nullptr, s);
  CHECK_REL(meano.data(), mean.data(), 3, 1e-7);
  CHECK_REL(invo.data(), inv.data(), 3, 1e-6);
  V yi(count), mi(6), ii(6);
  vx::instance_norm3d_forward_ref<double>(yi.data(), mi.data(), ii.data(), x.data(), nullptr, nullptr, s);
  F yio(count), mio(6), iio(6);
  vx::instance_norm3d_forward(yio.data(), mio.data(), iio.data(), xf.data(), nullptr, nullptr, s);
  CHECK_REL(iio.data(), ii.data(), 6, 1e-6);
}

TEST(norm_invalid_arguments) {
  F x(4, 1.0f), y(4), m(4), v(4, 1.0f);
  // One value per channel cannot be normalized in training mode (PyTorch raises too).
  CHECK(vx::batch_norm3d_forward_train(y.data(), m.data(), v.data(), nullptr, nullptr, x.data(), nullptr, nullptr,
                                       shape(1, 4, 1)) == Status::InvalidArgument);
  CHECK(std::strstr(vx::last_error(), "more than 1 value") != nullptr);
  CHECK(vx::batch_norm3d_forward_train_ref<float>(y.data(), m.data(), v.data(), nullptr, nullptr, x.data(), nullptr,
                                                  nullptr, shape(1, 4, 1)) == Status::InvalidArgument);
  CHECK(vx::instance_norm3d_forward(y.data(), m.data(), v.data(), x.data(), nullptr, nullptr, shape(4, 1, 1)) ==
        Status::InvalidArgument);
  // Eval mode with one value is fine.
  F rm(4, 0.0f);
  CHECK(vx::batch_norm3d_forward_eval(y.data(), x.data(), nullptr, nullptr, rm.data(), v.data(), shape(1, 4, 1)) ==
        Status::Ok);
  CHECK(vx::batch_norm3d_forward_train(y.data(), nullptr, nullptr, nullptr, nullptr, x.data(), nullptr, nullptr,
                                       shape(0, 4, 1)) == Status::InvalidArgument);
  CHECK(vx::batch_norm3d_forward_train(nullptr, nullptr, nullptr, nullptr, nullptr, x.data(), nullptr, nullptr,
                                       shape(1, 2, 2)) == Status::InvalidArgument);
  CHECK(vx::batch_norm3d_forward_eval(y.data(), x.data(), nullptr, nullptr, nullptr, v.data(), shape(1, 4, 1)) ==
        Status::InvalidArgument);
  CHECK(vx::batch_norm3d_backward(y.data(), nullptr, nullptr, x.data(), x.data(), nullptr, nullptr, v.data(),
                                  shape(1, 2, 2)) == Status::InvalidArgument);
}

VX_TEST_MAIN()
