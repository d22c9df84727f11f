// conv_transpose3d tests: the reference backward against finite differences, the optimized gather
// against the (scatter) reference on every row of the conv case table (test/conv_cases.json, via
// conv_cases.h; each micro-kernel, 1 and 2 threads), the adjoint identity with conv3d, gradient
// semantics, and shape validation.
#include <climits>
#include <cmath>
#include <cstring>

#include "check.h"
#include "conv3d.h"
#include "conv3d_ref.h"
#include "conv_cases.h"
#include "conv_engine.h"
#include "conv_transpose3d.h"
#include "conv_transpose3d_ref.h"
#include "parallel.h"

using namespace vxtest;

static const ConvOps kConvT = {"conv_transpose3d", conv_transpose3d_case, vx::conv_transpose3d_forward,
                               vx::conv_transpose3d_backward, vx::conv_transpose3d_forward_ref<double>,
                               vx::conv_transpose3d_backward_ref<double>};

TEST(conv_transpose3d_ref_backward_matches_finite_differences) { check_ref_gradients(kConvT); }

TEST(conv_transpose3d_optimized_matches_reference_on_all_cases) { check_optimized_vs_reference(kConvT); }

TEST(conv_transpose3d_gradient_semantics) { check_gradient_semantics(kConvT); }

TEST(conv_transpose3d_forward_epilogue_matches_reference) { check_epilogue(kConvT); }

TEST(conv_transpose3d_forward_reuses_packed_weights_until_they_change) { check_pack_cache(kConvT); }

TEST(conv_transpose3d_bit_identical_for_any_thread_count_and_staging) { check_thread_invariance(kConvT); }

// The backward's dx and dw stage dy identically: dw reuses dx's staged copy when dy is staged as one
// group (and stages it again otherwise), with the same bits as dx and dw computed by separate calls.
TEST(conv_transpose3d_backward_reuses_the_staged_dy_for_dw) {
  for (const ConvCase& c : conv_cases()) {
    CaseContext ctx(c.name, vx::gemm_kernel_name(), 0);
    const vx::Conv3dShape s = conv_transpose3d_case(c);
    const auto x = to_float(random_vec(in_size(s), 41)), w = to_float(random_vec(weight_size(s), 42));
    const auto dy = to_float(random_vec(out_size(s), 44));
    for (int64_t budget : {int64_t(0), int64_t(1)}) {  // one group; one group per z plane
      vx::conv_engine_stage_budget(budget);
      std::vector<float> dx(x.size()), dw(w.size(), 0.0f), dx1(x.size()), dw1(w.size(), 0.0f);
      CHECK(vx::conv_transpose3d_backward(dx1.data(), nullptr, nullptr, dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      CHECK(vx::conv_transpose3d_backward(nullptr, dw1.data(), nullptr, dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      const vx::ConvEngineCounts before = vx::conv_engine_counts();
      CHECK(vx::conv_transpose3d_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      const vx::ConvEngineCounts after = vx::conv_engine_counts();
      CHECK(dx == dx1);
      CHECK(dw == dw1);
      // One group when all of dy fits the budget (the default always does here): staged once, reused once.
      const int64_t reused = after.reused - before.reused, staged = after.staged - before.staged;
      if (budget == 0) {
        CHECK(reused == 1);
        CHECK(staged == 1);
      } else {  // several groups (each staged twice), or a single z plane of a single sample: one group
        CHECK((reused == 0 && staged >= 4) || (reused == 1 && staged == 1));
      }
    }
    // Another call between the two (what another thread may do) replaces the staged copy: no reuse of it.
    {
      vx::conv_engine_stage_budget(0);
      std::vector<float> dw(w.size(), 0.0f), dw1(w.size(), 0.0f), y(out_size(s));
      CHECK(vx::conv_transpose3d_backward(nullptr, dw1.data(), nullptr, dy.data(), x.data(), w.data(), s) == vx::Status::Ok);
      vx::StageReuseScope scope;
      std::vector<float> dx(x.size());
      vx::Conv3dShape a;  // the conv3d this op is the adjoint of (as conv_transpose3d_backward builds it)
      a.n = s.n, a.cin = s.cout, a.cout = s.cin;
      a.id = s.od, a.ih = s.oh, a.iw = s.ow;
      a.kd = s.kd, a.kh = s.kh, a.kw = s.kw;
      a.sd = s.sd, a.sh = s.sh, a.sw = s.sw;
      a.pd = s.pd, a.ph = s.ph, a.pw = s.pw;
      CHECK(vx::conv3d_shape(a) == vx::Status::Ok);
      CHECK(vx::conv3d_forward(dx.data(), dy.data(), w.data(), nullptr, a) == vx::Status::Ok);
      CHECK(vx::conv_transpose3d_forward(y.data(), x.data(), w.data(), nullptr, s) == vx::Status::Ok);
      const vx::ConvEngineCounts before = vx::conv_engine_counts();
      CHECK(vx::conv3d_backward(nullptr, dw.data(), nullptr, x.data(), dy.data(), nullptr, a) == vx::Status::Ok);
      CHECK(vx::conv_engine_counts().reused == before.reused);
      CHECK(dw == dw1);
    }
  }
  vx::conv_engine_stage_budget(0);
}

// <conv3d(x), y> == <x, conv_transpose3d(y)> with the same weight array (conv3d's [cout, cin, k] is
// conv_transpose3d's [cin', cout', k] for cin' = cout). An independent check of both ops: the references
// are a direct sum and a scatter, the optimized kernels an im2col GEMM and a residue-class gather. Each
// row is read both ways: as a conv3d with its adjoint, and as a conv_transpose3d with its adjoint.
TEST(conv_transpose3d_is_the_adjoint_of_conv3d) {
  for (int threads : {1, 2}) {
    vx::set_num_threads(threads);
    for (const ConvCase& row : conv_cases()) {
      for (int as_transposed = 0; as_transposed < 2; ++as_transposed) {
        CaseContext ctx(row.name, as_transposed ? "adjoint of the transposed reading" : "adjoint", threads);
        vx::Conv3dShape c, t;
        if (!as_transposed) {
          c = conv3d_case(row);
          t = adjoint_of(c);
        } else {
          t = conv_transpose3d_case(row);
          c = t;
          c.cin = t.cout, c.cout = t.cin, c.id = t.od, c.ih = t.oh, c.iw = t.ow;
          c.opd = c.oph = c.opw = 0;
          CHECK(vx::conv3d_shape(c) == vx::Status::Ok);
          CHECK(c.od == t.id && c.oh == t.ih && c.ow == t.iw);
        }
        const auto x = float_exact_random(in_size(c), 31), y = float_exact_random(out_size(c), 32);
        const auto w = float_exact_random(weight_size(c), 33);
        const auto ax = abs_vec(x), ay = abs_vec(y), aw = abs_vec(w);
        std::vector<double> cx(out_size(c)), ty(in_size(c)), scale_v(in_size(c));
        CHECK(vx::conv3d_forward_ref(cx.data(), x.data(), w.data(), static_cast<const double*>(nullptr), c) ==
              vx::Status::Ok);
        CHECK(vx::conv_transpose3d_forward_ref(ty.data(), y.data(), w.data(), static_cast<const double*>(nullptr),
                                               t) == vx::Status::Ok);
        CHECK(vx::conv_transpose3d_forward_ref(scale_v.data(), ay.data(), aw.data(),
                                               static_cast<const double*>(nullptr), t) == vx::Status::Ok);
        const double scale = dot(ax, scale_v);  // sum of |terms| of either side
        const double lhs = dot(cx, y), rhs = dot(x, ty);
        CHECK(std::fabs(lhs - rhs) <= 1e-12 * scale);

        const auto xf = to_float(x), yf = to_float(y), wf = to_float(w);
        std::vector<float> cxf(out_size(c)), tyf(in_size(c));
        CHECK(vx::conv3d_forward(cxf.data(), xf.data(), wf.data(), nullptr, c) == vx::Status::Ok);
        CHECK(vx::conv_transpose3d_forward(tyf.data(), yf.data(), wf.data(), nullptr, t) == vx::Status::Ok);
        double lf = 0, rf = 0;
        for (size_t i = 0; i < cxf.size(); ++i) lf += double(cxf[i]) * y[i];
        for (size_t i = 0; i < tyf.size(); ++i) rf += x[i] * double(tyf[i]);
        // float kernels: each side within float summation error of the exact value.
        CHECK(std::fabs(lf - lhs) <= 1e-5 * scale);
        CHECK(std::fabs(rf - rhs) <= 1e-5 * scale);
      }
    }
  }
  vx::set_num_threads(0);
}

TEST(conv_transpose3d_shape_computes_output_size) {
  vx::Conv3dShape s;
  s.n = 1, s.cin = 4, s.cout = 2;
  s.id = 4, s.ih = 5, s.iw = 3;
  s.kd = 3, s.kh = 2, s.kw = 4;
  s.sd = 2, s.sh = 1, s.sw = 3;
  s.pd = 1, s.ph = 0, s.pw = 2;
  s.opd = 1, s.oph = 0, s.opw = 2;
  CHECK(vx::conv_transpose3d_shape(s) == vx::Status::Ok);
  CHECK(s.od == 3 * 2 - 2 + 3 + 1 && s.oh == 4 + 2 && s.ow == 2 * 3 - 4 + 4 + 2);
}

TEST(conv_transpose3d_invalid_shapes_fail_with_a_message) {
  auto ok = [] {
    vx::Conv3dShape s;
    s.n = 1, s.cin = 2, s.cout = 3, s.id = 4, s.ih = 4, s.iw = 4, s.kd = 3, s.kh = 3, s.kw = 3;
    s.sd = s.sh = s.sw = 2;
    return s;
  };
  struct Bad {
    void (*edit)(vx::Conv3dShape&);
    const char* needle;
  };
  const Bad bad[] = {
      {[](vx::Conv3dShape& s) { s.n = 0; }, "n=0"},
      {[](vx::Conv3dShape& s) { s.cout = -3; }, "cout=-3"},
      {[](vx::Conv3dShape& s) { s.iw = 0; }, "iw=0"},
      {[](vx::Conv3dShape& s) { s.kh = 0; }, "kh=0"},
      {[](vx::Conv3dShape& s) { s.sw = 0; }, "stride sw=0 must be >= 1"},
      {[](vx::Conv3dShape& s) { s.pd = -2; }, "pd=-2"},
      {[](vx::Conv3dShape& s) { s.oph = 2; }, "oph=2 must be >= 0 and < stride sh=2"},
      {[](vx::Conv3dShape& s) { s.opd = -1; }, "opd=-1"},
      {[](vx::Conv3dShape& s) { s.pw = 9; }, "ow="},  // (4-1)*2 - 18 + 3 < 1: empty output
      {[](vx::Conv3dShape& s) { s.id = INT_MAX; }, "od="},  // output size beyond int
      {[](vx::Conv3dShape& s) { s.cin = s.cout = 1 << 16, s.kd = 4; }, "2^36"},
      {[](vx::Conv3dShape& s) { s.n = 1 << 10, s.cout = 1 << 10, s.ih = 1 << 12; }, "2^36"},
  };
  for (const Bad& b : bad) {
    vx::Conv3dShape s = ok();
    b.edit(s);
    vx::clear_error();
    check_invalid(vx::conv_transpose3d_shape(s), b.needle);
    s.od = s.oh = s.ow = 2;
    float dummy[4] = {0, 0, 0, 0};
    check_invalid(vx::conv_transpose3d_forward(dummy, dummy, dummy, nullptr, s), b.needle);
    check_invalid(vx::conv_transpose3d_backward(dummy, dummy, dummy, dummy, dummy, dummy, s), b.needle);
    double dd[4] = {0, 0, 0, 0};
    check_invalid(vx::conv_transpose3d_forward_ref(dd, dd, dd, static_cast<const double*>(nullptr), s), b.needle);
    check_invalid(vx::conv_transpose3d_backward_ref(dd, dd, dd, dd, dd, dd, s), b.needle);
  }
  vx::Conv3dShape s = ok();
  float dummy[4] = {0, 0, 0, 0};
  check_invalid(vx::conv_transpose3d_forward(dummy, dummy, dummy, nullptr, s), "conv_transpose3d_shape");
  CHECK(vx::conv_transpose3d_shape(s) == vx::Status::Ok);
  check_invalid(vx::conv_transpose3d_forward(dummy, nullptr, dummy, nullptr, s), "x is null");
  check_invalid(vx::conv_transpose3d_backward(nullptr, dummy, nullptr, dummy, nullptr, dummy, s), "x is null");
}

VX_TEST_MAIN()
