// The helpers shared by every conv test (conv3d and conv_transpose3d, reference and optimized) over the one
// table of convolution cases, conv_cases() from conv_case_table.h: that header is generated from
// test/conv_cases.json, the single source that the CUDA and WebAssembly tests read too (see its "about").
// Adding a case is adding a row to the JSON and running `node --import tsx test/conv_cases.ts --write`.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.h"
#include "conv_case_table.h"
#include "conv3d.h"
#include "conv_engine.h"
#include "conv_transpose3d.h"
#include "gemm.h"
#include "parallel.h"

namespace vxtest {

inline vx::Conv3dShape base_shape(const ConvCase& c) {
  vx::Conv3dShape s;
  s.n = c.n, s.cin = c.cin, s.cout = c.cout;
  s.id = c.id, s.ih = c.ih, s.iw = c.iw;
  s.kd = c.kd, s.kh = c.kh, s.kw = c.kw;
  s.sd = c.sd, s.sh = c.sh, s.sw = c.sw;
  s.pd = c.pd, s.ph = c.ph, s.pw = c.pw;
  return s;
}

// The row as a conv3d (filled by conv3d_shape; output_padding dropped).
inline vx::Conv3dShape conv3d_case(const ConvCase& c) {
  vx::Conv3dShape s = base_shape(c);
  vx::Status st = vx::conv3d_shape(s);
  CHECK(st == vx::Status::Ok);
  return s;
}

// The row as a conv_transpose3d (filled by conv_transpose3d_shape).
inline vx::Conv3dShape conv_transpose3d_case(const ConvCase& c) {
  vx::Conv3dShape s = base_shape(c);
  s.opd = c.opd, s.oph = c.oph, s.opw = c.opw;
  vx::Status st = vx::conv_transpose3d_shape(s);
  CHECK(st == vx::Status::Ok);
  return s;
}

// The conv_transpose3d that is the adjoint of conv3d shape c: input like c's output, output like c's input.
inline vx::Conv3dShape adjoint_of(const vx::Conv3dShape& c) {
  vx::Conv3dShape t = c;
  t.cin = c.cout, t.cout = c.cin;
  t.id = c.od, t.ih = c.oh, t.iw = c.ow;
  t.opd = c.id - ((c.od - 1) * c.sd - 2 * c.pd + c.kd);
  t.oph = c.ih - ((c.oh - 1) * c.sh - 2 * c.ph + c.kh);
  t.opw = c.iw - ((c.ow - 1) * c.sw - 2 * c.pw + c.kw);
  vx::Status st = vx::conv_transpose3d_shape(t);
  CHECK(st == vx::Status::Ok);
  CHECK(t.od == c.id && t.oh == c.ih && t.ow == c.iw);
  return t;
}

inline size_t in_size(const vx::Conv3dShape& s) { return size_t(s.n) * s.cin * s.id * s.ih * s.iw; }
inline size_t out_size(const vx::Conv3dShape& s) { return size_t(s.n) * s.cout * s.od * s.oh * s.ow; }
inline size_t weight_size(const vx::Conv3dShape& s) { return size_t(s.cout) * s.cin * s.kd * s.kh * s.kw; }

// Random values that are exactly representable in float, as doubles: the float kernels and the double
// reference then see identical inputs, so any difference is the kernels' own rounding.
inline std::vector<double> float_exact_random(size_t n, unsigned seed) {
  std::vector<double> v = random_vec(n, seed);
  for (double& x : v) x = double(float(x));
  return v;
}

inline std::vector<double> abs_vec(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}

// Error of a float result against the double reference, relative to `scale`: the reference evaluated on
// the absolute values of its inputs, i.e. the sum of |terms| behind each element. Why not CHECK_REL's
// |expected| (floor 1e-3): an output that is a sum of hundreds of +-1 terms can cancel to ~1e-4, where
// float rounding of the individual terms (~1e-7 * sum|terms|) is a large fraction of the value; relative
// to sum|terms| the error is a property of the kernel's summation alone, and 1e-5 bounds it tightly
// (float epsilon is 6e-8). An element whose terms are all zero must match exactly.
inline double max_scaled_err(const std::vector<float>& a, const std::vector<double>& e,
                             const std::vector<double>& scale) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - e[i]);
    const double r = d == 0 ? 0 : (scale[i] > 0 ? d / scale[i] : INFINITY);
    if (std::isnan(r)) return r;  // a NaN anywhere is a failure
    if (r > worst) worst = r;
  }
  return worst;
}

#define CHECK_SCALED(a, e, scale, tol)                                                              \
  do {                                                                                              \
    double vx_e_ = vxtest::max_scaled_err((a), (e), (scale));                                       \
    if (!(vx_e_ <= (tol))) {                                                                        \
      std::fprintf(stderr, "%s:%d: CHECK_SCALED failed: %s vs %s: max err / sum|terms| %.3g > %.3g\n", \
                   __FILE__, __LINE__, #a, #e, vx_e_, double(tol));                                 \
      ++vxtest::failures();                                                                         \
    }                                                                                               \
  } while (0)

// The micro-kernels this CPU can run: every optimized-vs-reference comparison runs once per kernel.
inline std::vector<const char*> available_kernels() {
  std::vector<const char*> r;
  for (const char* k : {"avx512f", "avx2", "portable"})
    if (vx::gemm_select_kernel(k)) r.push_back(k);
  vx::gemm_select_kernel(nullptr);
  return r;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// --- Checks shared by the conv3d and conv_transpose3d tests ------------------------------------------------

// One op under test: its shape reading of a table row, optimized kernels and double reference.
struct ConvOps {
  const char* name;
  vx::Conv3dShape (*shape)(const ConvCase&);
  vx::Status (*fwd)(float*, const float*, const float*, const float*, const vx::Conv3dShape&,
                    const vx::ConvEpilogue*);
  vx::Status (*bwd)(float*, float*, float*, const float*, const float*, const float*, const vx::Conv3dShape&);
  vx::Status (*fwd_ref)(double*, const double*, const double*, const double*, const vx::Conv3dShape&,
                        const vx::ConvEpilogue*);
  vx::Status (*bwd_ref)(double*, double*, double*, const double*, const double*, const double*,
                        const vx::Conv3dShape&);
};

inline std::vector<float> to_float(const std::vector<double>& v) { return cast_vec<float>(v); }

// Reports which case failed (the CHECK lines only name the source line).
struct CaseContext {
  int before = failures();
  const char* what;
  const char* kernel;
  int threads;
  CaseContext(const char* w, const char* k, int t) : what(w), kernel(k), threads(t) {}
  ~CaseContext() {
    if (failures() != before)
      std::fprintf(stderr, "  ^ in case %s (kernel %s, %d threads)\n", what, kernel, threads);
  }
};

// Reference backward (double) against central finite differences of L = sum(y * r) on the small rows.
// L is linear in each of x, w and b, so a large step (1e-2) has no truncation error and little rounding.
inline void check_ref_gradients(const ConvOps& op) {
  for (const ConvCase& c : conv_cases()) {
    if (!c.small) continue;
    CaseContext ctx(c.name, "reference", 1);
    const vx::Conv3dShape s = op.shape(c);
    const auto x = random_vec(in_size(s), 1), w = random_vec(weight_size(s), 2);
    const auto b = random_vec(size_t(s.cout), 3), r = random_vec(out_size(s), 4);
    auto loss = [&](const std::vector<double>& xv, const std::vector<double>& wv, const std::vector<double>& bv) {
      std::vector<double> y(out_size(s));
      CHECK(op.fwd_ref(y.data(), xv.data(), wv.data(), bv.data(), s, nullptr) == vx::Status::Ok);
      return dot(y, r);
    };
    std::vector<double> dx(x.size(), 7.0), dw(w.size(), 0.0), db(b.size(), 0.0);
    CHECK(op.bwd_ref(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), s) == vx::Status::Ok);
    const double h = 1e-2;
    const auto fdx = finite_diff(x, [&](const std::vector<double>& v) { return loss(v, w, b); }, h);
    const auto fdw = finite_diff(w, [&](const std::vector<double>& v) { return loss(x, v, b); }, h);
    const auto fdb = finite_diff(b, [&](const std::vector<double>& v) { return loss(x, w, v); }, h);
    CHECK_REL(dx.data(), fdx.data(), dx.size(), 1e-8);
    CHECK_REL(dw.data(), fdw.data(), dw.size(), 1e-8);
    CHECK_REL(db.data(), fdb.data(), db.size(), 1e-8);
  }
}

// Optimized float forward and backward against the double reference on every row, for every micro-kernel
// this CPU has and for 1 and 2 threads.
// Each also with staging budgets small enough to cut the input into per-sample groups and z slabs
// (1 float: every slab one grid plane of one sample).
inline void check_optimized_vs_reference(const ConvOps& op) {
  for (const char* kernel : available_kernels()) {
    vx::gemm_select_kernel(kernel);
    for (int threads : {1, 2}) {
      vx::set_num_threads(threads);
      for (int64_t budget : {int64_t(0), int64_t(1), int64_t(200), int64_t(2000)}) {
      vx::conv_engine_stage_budget(budget);
      for (const ConvCase& c : conv_cases()) {
        CaseContext ctx(c.name, kernel, threads);
        const vx::Conv3dShape s = op.shape(c);
        const auto x = float_exact_random(in_size(s), 11), w = float_exact_random(weight_size(s), 12);
        const auto b = float_exact_random(size_t(s.cout), 13), dy = float_exact_random(out_size(s), 14);
        const auto ax = abs_vec(x), aw = abs_vec(w), ab = abs_vec(b), ady = abs_vec(dy);
        const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), dyf = to_float(dy);

        std::vector<double> ye(out_size(s)), ys(out_size(s));
        CHECK(op.fwd_ref(ye.data(), x.data(), w.data(), b.data(), s, nullptr) == vx::Status::Ok);
        CHECK(op.fwd_ref(ys.data(), ax.data(), aw.data(), ab.data(), s, nullptr) == vx::Status::Ok);
        std::vector<float> yf(out_size(s), NAN);
        CHECK(op.fwd(yf.data(), xf.data(), wf.data(), bf.data(), s, nullptr) == vx::Status::Ok);
        CHECK_SCALED(yf, ye, ys, 1e-5);

        std::vector<double> dxe(x.size()), dwe(w.size()), dbe(b.size()), dxs(x.size()), dws(w.size()),
            dbs(b.size());
        CHECK(op.bwd_ref(dxe.data(), dwe.data(), dbe.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
        CHECK(op.bwd_ref(dxs.data(), dws.data(), dbs.data(), ady.data(), ax.data(), aw.data(), s) ==
              vx::Status::Ok);
        std::vector<float> dxf(x.size(), NAN), dwf(w.size(), 0.0f), dbf(b.size(), 0.0f);
        CHECK(op.bwd(dxf.data(), dwf.data(), dbf.data(), dyf.data(), xf.data(), wf.data(), s) == vx::Status::Ok);
        CHECK_SCALED(dxf, dxe, dxs, 1e-5);
        CHECK_SCALED(dwf, dwe, dws, 1e-5);
        CHECK_SCALED(dbf, dbe, dbs, 1e-5);
      }
      }
    }
  }
  vx::conv_engine_stage_budget(0);
  vx::set_num_threads(0);
  vx::gemm_select_kernel(nullptr);
}

// The forward epilogue (ConvEpilogue: per-channel scale and shift, then a shared or per-channel PReLU) on
// every row, for every micro-kernel and 1 and 2 threads, against the double reference with the same
// epilogue. The optimized kernels fold the scale into the weights, so the comparison is relative to the
// sum of |terms| scaled by |scale| (plus |shift|).
inline void check_epilogue(const ConvOps& op) {
  for (const char* kernel : available_kernels()) {
    vx::gemm_select_kernel(kernel);
    for (int threads : {1, 2}) {
      vx::set_num_threads(threads);
      for (const ConvCase& c : conv_cases()) {
        for (int shared : {0, 1}) {
          CaseContext ctx(c.name, kernel, threads);
          const vx::Conv3dShape s = op.shape(c);
          const auto x = float_exact_random(in_size(s), 41), w = float_exact_random(weight_size(s), 42);
          const auto b = float_exact_random(size_t(s.cout), 43);
          const auto scale = to_float(float_exact_random(size_t(s.cout), 44));
          const auto shift = to_float(float_exact_random(size_t(s.cout), 45));
          auto slope = to_float(abs_vec(float_exact_random(size_t(s.cout), 46)));
          vx::ConvEpilogue ep;
          ep.scale = scale.data(), ep.shift = shift.data(), ep.slope = slope.data();
          ep.num_slopes = shared ? 1 : s.cout;
          std::vector<double> ye(out_size(s)), ys(out_size(s));
          CHECK(op.fwd_ref(ye.data(), x.data(), w.data(), b.data(), s, &ep) == vx::Status::Ok);
          // The scale of each element: sum|terms| * |scale| + |shift| (slope <= 1 only shrinks it).
          const auto ax = abs_vec(x), aw = abs_vec(w), ab = abs_vec(b);
          const auto as = to_float(abs_vec(std::vector<double>(scale.begin(), scale.end())));
          const auto ah = to_float(abs_vec(std::vector<double>(shift.begin(), shift.end())));
          vx::ConvEpilogue abs_ep;
          abs_ep.scale = as.data(), abs_ep.shift = ah.data();
          CHECK(op.fwd_ref(ys.data(), ax.data(), aw.data(), ab.data(), s, &abs_ep) == vx::Status::Ok);
          std::vector<float> yf(out_size(s), NAN);
          const auto xf = to_float(x), wf = to_float(w), bf = to_float(b);
          CHECK(op.fwd(yf.data(), xf.data(), wf.data(), bf.data(), s, &ep) == vx::Status::Ok);
          CHECK_SCALED(yf, ye, ys, 1e-5);
          // Without a bias and with only a PReLU: the epilogue's pieces are independent.
          vx::ConvEpilogue only;
          only.slope = slope.data(), only.num_slopes = ep.num_slopes;
          CHECK(op.fwd_ref(ye.data(), x.data(), w.data(), nullptr, s, &only) == vx::Status::Ok);
          CHECK(op.fwd_ref(ys.data(), ax.data(), aw.data(), nullptr, s, nullptr) == vx::Status::Ok);
          CHECK(op.fwd(yf.data(), xf.data(), wf.data(), nullptr, s, &only) == vx::Status::Ok);
          CHECK_SCALED(yf, ye, ys, 1e-5);
        }
      }
    }
  }
  vx::set_num_threads(0);
  vx::gemm_select_kernel(nullptr);
}

// Every output and gradient is bit-identical for any thread count: each element is summed by one work
// item in an order that does not depend on it (the weight gradient included: its items own blocks of dw
// and walk positions in order). Checked at several staging budgets (the budget itself may change how the
// weight gradient's sums are chunked, so results are compared within a budget).
inline void check_thread_invariance(const ConvOps& op) {
  for (const ConvCase& c : conv_cases()) {
    CaseContext ctx(c.name, vx::gemm_kernel_name(), 0);
    const vx::Conv3dShape s = op.shape(c);
    const auto x = to_float(random_vec(in_size(s), 31)), w = to_float(random_vec(weight_size(s), 32));
    const auto b = to_float(random_vec(size_t(s.cout), 33)), dy = to_float(random_vec(out_size(s), 34));
    for (int64_t budget : {int64_t(0), int64_t(1), int64_t(500)}) {
      std::vector<float> y1, dx1, dw1, db1;
      for (int threads : {1, 2, 3}) {
        vx::set_num_threads(threads);
        vx::conv_engine_stage_budget(budget);
        std::vector<float> y(out_size(s)), dx(x.size()), dw(w.size(), 0.0f), db(b.size(), 0.0f);
        CHECK(op.fwd(y.data(), x.data(), w.data(), b.data(), s, nullptr) == vx::Status::Ok);
        CHECK(op.bwd(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
        if (y1.empty()) {
          y1 = y, dx1 = dx, dw1 = dw, db1 = db;
          continue;
        }
        CHECK(y == y1);
        CHECK(dx == dx1);
        CHECK(dw == dw1);
        CHECK(db == db1);
      }
    }
  }
  vx::conv_engine_stage_budget(0);
  vx::set_num_threads(0);
}

// Packed-weight cache (ConvPackCache): a forward given a cache gives the same bits as one without, the
// second call with unchanged weights reuses the panels (the cache stays valid and the output is
// identical), and each thing the panels depend on forces a repack: a new weights generation (weights
// rewritten in place), another epilogue scale in the same buffer, no scale, another micro-kernel. One
// cache is carried across all kernels and cases, as a Net's is across calls.
inline void check_pack_cache(const ConvOps& op) {
  vx::ConvPackCache cache;
  uint64_t gen = 0;
  for (const char* kernel : available_kernels()) {
    vx::gemm_select_kernel(kernel);
    for (const ConvCase& c : conv_cases()) {
      CaseContext ctx(c.name, kernel, 0);
      const vx::Conv3dShape s = op.shape(c);
      const auto x = to_float(random_vec(in_size(s), 51));
      auto w = to_float(random_vec(weight_size(s), 52));
      const auto b = to_float(random_vec(size_t(s.cout), 53));
      auto scale = to_float(random_vec(size_t(s.cout), 54));
      const auto shift = to_float(random_vec(size_t(s.cout), 55));
      vx::ConvEpilogue plain;
      plain.scale = scale.data(), plain.shift = shift.data();
      // The reference for each state: the same epilogue without a cache.
      auto fresh = [&](const vx::ConvEpilogue& e) {
        std::vector<float> y(out_size(s), NAN);
        vx::ConvEpilogue u = e;
        u.cache = nullptr;
        CHECK(op.fwd(y.data(), x.data(), w.data(), b.data(), s, &u) == vx::Status::Ok);
        return y;
      };
      auto cached = [&](const vx::ConvEpilogue& e) {
        std::vector<float> y(out_size(s), NAN);
        CHECK(op.fwd(y.data(), x.data(), w.data(), b.data(), s, &e) == vx::Status::Ok);
        CHECK(cache.valid);
        return y;
      };
      vx::ConvEpilogue ep = plain;
      ep.cache = &cache, ep.weights_gen = ++gen;
      const auto y0 = fresh(ep);
      CHECK(cached(ep) == y0);  // packs
      const float* panels = cache.data.data();
      CHECK(cached(ep) == y0);  // reuses
      CHECK(cache.data.data() == panels);
      // Weights rewritten in place under a new generation.
      for (float& v : w) v = -0.5f * v + 0.25f;
      ep.weights_gen = ++gen;
      const auto y1 = fresh(ep);
      CHECK(y1 != y0);
      CHECK(cached(ep) == y1);
      // Another scale in the same buffer, same generation.
      for (float& v : scale) v = 2.0f * v - 0.125f;
      const auto y2 = fresh(ep);
      CHECK(y2 != y1);
      CHECK(cached(ep) == y2);
      // No scale at all.
      ep.scale = nullptr;
      const auto y3 = fresh(ep);
      CHECK(cached(ep) == y3);
    }
  }
  // Another micro-kernel (other panel height) with the cache filled by the last one.
  const auto kernels = available_kernels();
  if (kernels.size() > 1) {
    const ConvCase& c = conv_cases().front();
    CaseContext ctx(c.name, kernels.front(), 0);
    const vx::Conv3dShape s = op.shape(c);
    const auto x = to_float(random_vec(in_size(s), 61)), w = to_float(random_vec(weight_size(s), 62));
    std::vector<float> ya(out_size(s)), yb(out_size(s));
    vx::ConvEpilogue ep;
    ep.cache = &cache, ep.weights_gen = ++gen;
    vx::gemm_select_kernel(kernels.back());
    CHECK(op.fwd(ya.data(), x.data(), w.data(), nullptr, s, &ep) == vx::Status::Ok);
    vx::gemm_select_kernel(kernels.front());
    CHECK(op.fwd(ya.data(), x.data(), w.data(), nullptr, s, &ep) == vx::Status::Ok);
    CHECK(op.fwd(yb.data(), x.data(), w.data(), nullptr, s, nullptr) == vx::Status::Ok);
    CHECK(ya == yb);
  }
  vx::gemm_select_kernel(nullptr);
}

// Gradient semantics of the optimized backward: parameter gradients accumulate (two calls give twice one
// call, on top of what was there), the input gradient is overwritten, any gradient pointer may be null
// (and then w or x may be too), and repeated calls with the same thread count are bit-identical.
inline void check_gradient_semantics(const ConvOps& op) {
  for (int threads : {1, 2}) {
    vx::set_num_threads(threads);
    for (const ConvCase& c : conv_cases()) {
      CaseContext ctx(c.name, vx::gemm_kernel_name(), threads);
      const vx::Conv3dShape s = op.shape(c);
      const auto x = to_float(random_vec(in_size(s), 21)), w = to_float(random_vec(weight_size(s), 22));
      const auto dy = to_float(random_vec(out_size(s), 24));
      const auto dw0 = to_float(random_vec(weight_size(s), 25)), db0 = to_float(random_vec(size_t(s.cout), 26));

      std::vector<float> dx1(x.size()), dw1(w.size(), 0.0f), db1(size_t(s.cout), 0.0f);
      CHECK(op.bwd(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);

      // Same call again from scratch: bit-identical (deterministic partial sums).
      std::vector<float> dx2(x.size(), 5.0f), dw2(w.size(), 0.0f), db2(size_t(s.cout), 0.0f);
      CHECK(op.bwd(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      CHECK(dx1 == dx2 && dw1 == dw2 && db1 == db2);

      // Twice from zero: exactly 2x one call (each call adds its finished sum once); dx is overwritten
      // each time, not doubled. Once on top of dw0/db0: exactly dw0 + grad.
      std::vector<float> dwz(w.size(), 0.0f), dbz(size_t(s.cout), 0.0f), dxa(x.size(), 1e30f);
      for (int rep = 0; rep < 2; ++rep)
        CHECK(op.bwd(dxa.data(), dwz.data(), dbz.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      CHECK(dxa == dx1);
      bool doubled = true;
      for (size_t i = 0; i < w.size(); ++i) doubled = doubled && dwz[i] == 2.0f * dw1[i];
      for (size_t i = 0; i < dbz.size(); ++i) doubled = doubled && dbz[i] == 2.0f * db1[i];
      CHECK(doubled);
      std::vector<float> dwa = dw0, dba = db0;
      CHECK(op.bwd(nullptr, dwa.data(), dba.data(), dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      bool added = true;
      for (size_t i = 0; i < w.size(); ++i) added = added && dwa[i] == dw0[i] + dw1[i];
      for (size_t i = 0; i < dba.size(); ++i) added = added && dba[i] == db0[i] + db1[i];
      CHECK(added);

      // Each gradient alone, the others null; what it does not need may be null too.
      std::vector<float> dxo(x.size(), 3.0f), dwo(w.size(), 0.0f), dbo(size_t(s.cout), 0.0f);
      CHECK(op.bwd(dxo.data(), nullptr, nullptr, dy.data(), nullptr, w.data(), s) == vx::Status::Ok);
      CHECK(op.bwd(nullptr, dwo.data(), nullptr, dy.data(), x.data(), nullptr, s) == vx::Status::Ok);
      CHECK(op.bwd(nullptr, nullptr, dbo.data(), dy.data(), nullptr, nullptr, s) == vx::Status::Ok);
      CHECK(dxo == dx1 && dwo == dw1 && dbo == db1);
      CHECK(op.bwd(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, s) == vx::Status::Ok);

      // Missing inputs that a requested gradient needs: InvalidArgument with a message, nothing written.
      vx::clear_error();
      CHECK(op.bwd(dxo.data(), nullptr, nullptr, dy.data(), x.data(), nullptr, s) == vx::Status::InvalidArgument);
      CHECK(vx::last_error()[0] != 0);
      vx::clear_error();
      CHECK(op.bwd(nullptr, dwo.data(), nullptr, dy.data(), nullptr, w.data(), s) == vx::Status::InvalidArgument);
      CHECK(vx::last_error()[0] != 0);
      vx::clear_error();
      CHECK(op.bwd(nullptr, nullptr, dbo.data(), nullptr, x.data(), w.data(), s) == vx::Status::InvalidArgument);
      CHECK(vx::last_error()[0] != 0);
      std::vector<float> y(out_size(s));
      vx::clear_error();
      CHECK(op.fwd(y.data(), nullptr, w.data(), nullptr, s, nullptr) == vx::Status::InvalidArgument);
      CHECK(vx::last_error()[0] != 0);
      // Bias is optional: forward without it equals forward with a zero bias.
      std::vector<float> y0(out_size(s)), zero_b(size_t(s.cout), 0.0f);
      CHECK(op.fwd(y.data(), x.data(), w.data(), nullptr, s, nullptr) == vx::Status::Ok);
      CHECK(op.fwd(y0.data(), x.data(), w.data(), zero_b.data(), s, nullptr) == vx::Status::Ok);
      CHECK(y == y0);
    }
  }
  vx::set_num_threads(0);
}

// Expects `st` to be InvalidArgument with a message that contains `needle` (the bad field).
inline void check_invalid(vx::Status st, const char* needle) {
  CHECK(st == vx::Status::InvalidArgument);
  const char* msg = vx::last_error();
  const bool has = std::strstr(msg, needle) != nullptr;
  if (!has) std::fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", msg, needle);
  CHECK(has);
  vx::clear_error();
}

}  // namespace vxtest
