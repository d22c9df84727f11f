// conv3d tests: the reference backward against finite differences, the optimized kernels against the
// reference on every row of the conv case table (test/conv_cases.json, via conv_cases.h; each
// micro-kernel, 1 and 2 threads), gradient semantics, and shape validation.
#include <climits>
#include <cstring>

#include "check.h"
#include "conv3d.h"
#include "conv3d_ref.h"
#include "conv_cases.h"

using namespace vxtest;

static const ConvOps kConv3d = {"conv3d", conv3d_case, vx::conv3d_forward, vx::conv3d_backward,
                                vx::conv3d_forward_ref<double>, vx::conv3d_backward_ref<double>};

TEST(conv3d_ref_backward_matches_finite_differences) { check_ref_gradients(kConv3d); }

TEST(conv3d_optimized_matches_reference_on_all_cases) { check_optimized_vs_reference(kConv3d); }

TEST(conv3d_gradient_semantics) { check_gradient_semantics(kConv3d); }

TEST(conv3d_forward_epilogue_matches_reference) { check_epilogue(kConv3d); }

TEST(conv3d_forward_reuses_packed_weights_until_they_change) { check_pack_cache(kConv3d); }

TEST(conv3d_bit_identical_for_any_thread_count_and_staging) { check_thread_invariance(kConv3d); }

TEST(conv3d_shape_computes_output_size) {
  vx::Conv3dShape s;
  s.n = 2, s.cin = 3, s.cout = 4;
  s.id = 9, s.ih = 8, s.iw = 7;
  s.kd = 3, s.kh = 2, s.kw = 1;
  s.sd = 2, s.sh = 3, s.sw = 1;
  s.pd = 1, s.ph = 0, s.pw = 2;
  CHECK(vx::conv3d_shape(s) == vx::Status::Ok);
  CHECK(s.od == (9 + 2 - 3) / 2 + 1 && s.oh == (8 - 2) / 3 + 1 && s.ow == 7 + 4 - 1 + 1);
}

TEST(conv3d_invalid_shapes_fail_with_a_message) {
  auto ok = [] {
    vx::Conv3dShape s;
    s.n = 1, s.cin = 2, s.cout = 3, s.id = 4, s.ih = 4, s.iw = 4, s.kd = 3, s.kh = 3, s.kw = 3;
    return s;
  };
  struct Bad {
    void (*edit)(vx::Conv3dShape&);
    const char* needle;
  };
  const Bad bad[] = {
      {[](vx::Conv3dShape& s) { s.n = 0; }, "n=0"},
      {[](vx::Conv3dShape& s) { s.cin = -1; }, "cin=-1"},
      {[](vx::Conv3dShape& s) { s.cout = 0; }, "cout=0"},
      {[](vx::Conv3dShape& s) { s.ih = 0; }, "ih=0"},
      {[](vx::Conv3dShape& s) { s.kw = 0; }, "kw=0"},
      {[](vx::Conv3dShape& s) { s.sd = 0; }, "stride sd=0 must be >= 1"},
      {[](vx::Conv3dShape& s) { s.ph = -1; }, "ph=-1"},
      {[](vx::Conv3dShape& s) { s.kd = 7; }, "kd=7"},          // larger than the padded input
      {[](vx::Conv3dShape& s) { s.opw = 1; }, "opw=1"},        // output_padding is conv_transpose3d's
      {[](vx::Conv3dShape& s) { s.pd = INT_MAX; }, "od="},     // output size beyond int
      {[](vx::Conv3dShape& s) { s.n = s.cin = 1 << 12, s.id = s.ih = s.iw = 1 << 10; }, "2^36"},
      {[](vx::Conv3dShape& s) { s.cout = s.cin = 1 << 16, s.kd = 4; s.id = 4; }, "2^36"},
  };
  for (const Bad& b : bad) {
    vx::Conv3dShape s = ok();
    b.edit(s);
    vx::clear_error();
    check_invalid(vx::conv3d_shape(s), b.needle);
    // The kernels re-validate (here with a stale output size) and fail the same way, touching nothing.
    s.od = s.oh = s.ow = 2;
    float dummy[4] = {0, 0, 0, 0};
    check_invalid(vx::conv3d_forward(dummy, dummy, dummy, nullptr, s), b.needle);
    check_invalid(vx::conv3d_backward(dummy, dummy, dummy, dummy, dummy, dummy, s), b.needle);
    double dd[4] = {0, 0, 0, 0};
    check_invalid(vx::conv3d_forward_ref(dd, dd, dd, static_cast<const double*>(nullptr), s), b.needle);
    check_invalid(vx::conv3d_backward_ref(dd, dd, dd, dd, dd, dd, s), b.needle);
  }
  // A valid shape whose od/oh/ow were never filled in (or are stale) is rejected by the kernels.
  vx::Conv3dShape s = ok();
  float dummy[4] = {0, 0, 0, 0};
  check_invalid(vx::conv3d_forward(dummy, dummy, dummy, nullptr, s), "conv3d_shape");
  CHECK(vx::conv3d_shape(s) == vx::Status::Ok);
  s.iw = 5;
  check_invalid(vx::conv3d_forward(dummy, dummy, dummy, nullptr, s), "conv3d_shape");
  // Null outputs and inputs.
  CHECK(vx::conv3d_shape(s) == vx::Status::Ok);
  check_invalid(vx::conv3d_forward(nullptr, dummy, dummy, nullptr, s), "y is null");
  check_invalid(vx::conv3d_forward(dummy, dummy, nullptr, nullptr, s), "w is null");
  check_invalid(vx::conv3d_backward(dummy, nullptr, nullptr, nullptr, dummy, dummy, s), "dy is null");
}

VX_TEST_MAIN()
