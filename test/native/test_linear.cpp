// linear tests: the reference backward against finite differences, the optimized kernels against the
// double reference (each micro-kernel, 1 and 2 threads) on shapes that cross the GEMM's blocking,
// gradient semantics, and argument validation.
#include <vector>

#include "check.h"
#include "conv_cases.h"  // shared comparison helpers (float_exact_random, max_scaled_err, ...)
#include "gemm.h"
#include "linear.h"
#include "linear_ref.h"
#include "parallel.h"

using namespace vxtest;

struct LinearCase {
  const char* name;
  int n, in, out;
  bool small;
};

// clang-format off
static const LinearCase kCases[] = {
  {"1x1x1",                 1,    1,    1, true},
  {"n2_in5_out3",           2,    5,    3, true},
  {"n3_in17_out2",          3,   17,    2, true},
  {"n1_in300_out7",         1,  300,    7, true},
  {"n7_in33_out130",        7,   33,  130, false},  // out > MC rows of dw
  {"n5_in1030_out17",       5, 1030,   17, false},  // in > KC (forward) and > NC (dx, dw columns)
  {"n2_in20_out1100",       2,   20, 1100, false},  // out > NC (forward columns)
  {"n300_in9_out5",       300,    9,    5, false},  // n > KC (dw reduction), split by rows
};
// clang-format on

TEST(linear_ref_backward_matches_finite_differences) {
  for (const LinearCase& c : kCases) {
    if (!c.small) continue;
    CaseContext ctx(c.name, "reference", 1);
    const auto x = random_vec(size_t(c.n) * c.in, 1), w = random_vec(size_t(c.out) * c.in, 2);
    const auto b = random_vec(size_t(c.out), 3), r = random_vec(size_t(c.n) * c.out, 4);
    auto loss = [&](const std::vector<double>& xv, const std::vector<double>& wv, const std::vector<double>& bv) {
      std::vector<double> y(size_t(c.n) * c.out);
      CHECK(vx::linear_forward_ref(y.data(), xv.data(), wv.data(), bv.data(), c.n, c.in, c.out) == vx::Status::Ok);
      return dot(y, r);
    };
    std::vector<double> dx(x.size(), 9.0), dw(w.size(), 0.0), db(b.size(), 0.0);
    CHECK(vx::linear_backward_ref(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), c.n, c.in, c.out) ==
          vx::Status::Ok);
    // L is linear in each argument: a large step has no truncation error.
    const double h = 1e-2;
    const auto fdx = finite_diff(x, [&](const std::vector<double>& v) { return loss(v, w, b); }, h);
    const auto fdw = finite_diff(w, [&](const std::vector<double>& v) { return loss(x, v, b); }, h);
    const auto fdb = finite_diff(b, [&](const std::vector<double>& v) { return loss(x, w, v); }, h);
    CHECK_REL(dx.data(), fdx.data(), dx.size(), 1e-8);
    CHECK_REL(dw.data(), fdw.data(), dw.size(), 1e-8);
    CHECK_REL(db.data(), fdb.data(), db.size(), 1e-8);
  }
}

TEST(linear_optimized_matches_reference) {
  for (const char* kernel : available_kernels()) {
    vx::gemm_select_kernel(kernel);
    for (int threads : {1, 2}) {
      vx::set_num_threads(threads);
      for (const LinearCase& c : kCases) {
        CaseContext ctx(c.name, kernel, threads);
        const size_t nx = size_t(c.n) * c.in, nw = size_t(c.out) * c.in, ny = size_t(c.n) * c.out;
        const auto x = float_exact_random(nx, 11), w = float_exact_random(nw, 12);
        const auto b = float_exact_random(size_t(c.out), 13), dy = float_exact_random(ny, 14);
        const auto ax = abs_vec(x), aw = abs_vec(w), ab = abs_vec(b), ady = abs_vec(dy);
        const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), dyf = to_float(dy);

        std::vector<double> ye(ny), ys(ny);
        CHECK(vx::linear_forward_ref(ye.data(), x.data(), w.data(), b.data(), c.n, c.in, c.out) == vx::Status::Ok);
        CHECK(vx::linear_forward_ref(ys.data(), ax.data(), aw.data(), ab.data(), c.n, c.in, c.out) == vx::Status::Ok);
        std::vector<float> yf(ny, NAN), y0(ny, NAN);
        CHECK(vx::linear_forward(yf.data(), xf.data(), wf.data(), bf.data(), c.n, c.in, c.out) == vx::Status::Ok);
        CHECK_SCALED(yf, ye, ys, 1e-5);
        // Without bias: the same minus the bias.
        CHECK(vx::linear_forward(y0.data(), xf.data(), wf.data(), nullptr, c.n, c.in, c.out) == vx::Status::Ok);
        for (size_t i = 0; i < ny; ++i) ye[i] -= b[i % size_t(c.out)];
        CHECK_SCALED(y0, ye, ys, 1e-5);

        std::vector<double> dxe(nx), dwe(nw), dbe(size_t(c.out)), dxs(nx), dws(nw), dbs(size_t(c.out));
        CHECK(vx::linear_backward_ref(dxe.data(), dwe.data(), dbe.data(), dy.data(), x.data(), w.data(), c.n, c.in,
                                      c.out) == vx::Status::Ok);
        CHECK(vx::linear_backward_ref(dxs.data(), dws.data(), dbs.data(), ady.data(), ax.data(), aw.data(), c.n,
                                      c.in, c.out) == vx::Status::Ok);
        std::vector<float> dxf(nx, NAN), dwf(nw, 0.0f), dbf(size_t(c.out), 0.0f);
        CHECK(vx::linear_backward(dxf.data(), dwf.data(), dbf.data(), dyf.data(), xf.data(), wf.data(), c.n, c.in,
                                  c.out) == vx::Status::Ok);
        CHECK_SCALED(dxf, dxe, dxs, 1e-5);
        CHECK_SCALED(dwf, dwe, dws, 1e-5);
        CHECK_SCALED(dbf, dbe, dbs, 1e-5);

        // Accumulation: a second call adds the same again; dx is overwritten, not doubled.
        CHECK(vx::linear_backward(dxf.data(), dwf.data(), dbf.data(), dyf.data(), xf.data(), wf.data(), c.n, c.in,
                                  c.out) == vx::Status::Ok);
        for (auto* v : {&dwe, &dbe, &dws, &dbs})
          for (double& e : *v) e *= 2;
        CHECK_SCALED(dxf, dxe, dxs, 1e-5);
        CHECK_SCALED(dwf, dwe, dws, 1e-5);
        CHECK_SCALED(dbf, dbe, dbs, 1e-5);

        // Each gradient alone; what it does not need may be null.
        std::vector<float> dxo(nx, 3.0f), dwo(nw, 0.0f), dbo(size_t(c.out), 0.0f);
        std::vector<float> dx1(nx), dw1(nw, 0.0f), db1(size_t(c.out), 0.0f);
        CHECK(vx::linear_backward(dx1.data(), dw1.data(), db1.data(), dyf.data(), xf.data(), wf.data(), c.n, c.in,
                                  c.out) == vx::Status::Ok);
        CHECK(vx::linear_backward(dxo.data(), nullptr, nullptr, dyf.data(), nullptr, wf.data(), c.n, c.in, c.out) ==
              vx::Status::Ok);
        CHECK(vx::linear_backward(nullptr, dwo.data(), nullptr, dyf.data(), xf.data(), nullptr, c.n, c.in, c.out) ==
              vx::Status::Ok);
        CHECK(vx::linear_backward(nullptr, nullptr, dbo.data(), dyf.data(), nullptr, nullptr, c.n, c.in, c.out) ==
              vx::Status::Ok);
        CHECK(dxo == dx1 && dwo == dw1 && dbo == db1);
      }
    }
  }
  vx::set_num_threads(0);
  vx::gemm_select_kernel(nullptr);
}

// The micro-kernel that reads B in place (conv_engine's panels whose vectors lie in the staged input)
// gives the same bits as the packed one on a panel holding the same values: every kernel, every row count,
// full and partial column counts, with and without beta and bias; each vector of a row from its own place.
TEST(gemm_micro_kernel_in_place_matches_packed_bits) {
  for (const char* kernel : available_kernels()) {
    vx::gemm_select_kernel(kernel);
    CaseContext ctx("micro in place", kernel, 1);
    const int mr = vx::gemm_mr(), nr = vx::gemm_nr(), vl = vx::gemm_vl(), nv = nr / vl;
    CHECK(nv >= 1 && nv * vl == nr);
    const int64_t kc = 37;
    const auto a = to_float(random_vec(size_t(mr * kc), 51)), bias = to_float(random_vec(size_t(mr), 52));
    const auto packed = to_float(random_vec(size_t(kc * nr), 53));
    // Row k's vectors scattered through a larger buffer: vector j at rows[k] + voff[j], rows in shuffled
    // order at odd (unaligned) offsets, vectors apart by a gap (as a panel across two grid rows is).
    const int64_t gap = 2 * nr + 7;
    std::vector<int64_t> voff(static_cast<size_t>(nv));
    for (int j = 0; j < nv; ++j) voff[size_t(j)] = j * gap;
    std::vector<float> spread(size_t(kc * nv * gap + 3), -1.0f);
    std::vector<const float*> rows(static_cast<size_t>(kc));
    for (int64_t k = 0; k < kc; ++k) {
      float* r = spread.data() + 3 + ((k * 5) % kc) * nv * gap;
      for (int j = 0; j < nv; ++j)
        std::copy(packed.begin() + k * nr + j * vl, packed.begin() + k * nr + (j + 1) * vl, r + voff[size_t(j)]);
      rows[size_t(k)] = r;
    }
    for (int m = 1; m <= mr; ++m)
      for (int n : {nr, nr - 3})
        for (bool beta : {false, true})
          for (const float* bi : {static_cast<const float*>(nullptr), bias.data()}) {
            const auto c0 = to_float(random_vec(size_t(mr * nr), 54));
            std::vector<float> c1 = c0, c2 = c0;
            vx::gemm_micro_kernel()(m, kc, a.data(), packed.data(), c1.data(), nr, 1, n, beta, bi);
            vx::gemm_micro_rows_kernel()(m, kc, a.data(), rows.data(), voff.data(), c2.data(), nr, 1, n, beta, bi);
            CHECK(c1 == c2);
            CHECK(c1 != c0);  // the call wrote something
          }
  }
  vx::gemm_select_kernel(nullptr);
}

TEST(linear_invalid_arguments_fail_with_a_message) {
  float d[4] = {0, 0, 0, 0};
  double dd[4] = {0, 0, 0, 0};
  check_invalid(vx::linear_forward(d, d, d, nullptr, 0, 2, 2), "n=0");
  check_invalid(vx::linear_forward(d, d, d, nullptr, 1, -1, 2), "in=-1");
  check_invalid(vx::linear_forward(d, d, d, nullptr, 1, 2, 0), "out=0");
  check_invalid(vx::linear_forward(d, d, d, nullptr, 1 << 20, 1 << 20, 1), "n*in");
  check_invalid(vx::linear_forward(d, d, d, nullptr, 1, 1 << 20, 1 << 20), "out*in");
  check_invalid(vx::linear_forward(nullptr, d, d, nullptr, 1, 2, 2), "y is null");
  check_invalid(vx::linear_forward(d, d, nullptr, nullptr, 1, 2, 2), "w is null");
  check_invalid(vx::linear_backward(d, nullptr, nullptr, nullptr, d, d, 1, 2, 2), "dy is null");
  check_invalid(vx::linear_backward(nullptr, d, nullptr, d, nullptr, d, 1, 2, 2), "x is null");
  check_invalid(vx::linear_backward(d, nullptr, nullptr, d, d, nullptr, 1, 2, 2), "w is null");
  check_invalid(vx::linear_backward(d, d, d, d, d, d, 2, 0, 2), "in=0");
  check_invalid(vx::linear_forward_ref(dd, dd, dd, static_cast<const double*>(nullptr), 0, 2, 2), "n=0");
  check_invalid(vx::linear_backward_ref(dd, dd, dd, static_cast<const double*>(nullptr), dd, dd, 1, 2, 2),
                "dy is null");
  CHECK(vx::linear_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 2, 2) == vx::Status::Ok);
}

VX_TEST_MAIN()
