// vmath.h: vm::exp_neg against std::exp in double (ulps over a sweep of [-104, 0], consecutive floats
// near 0 and the subnormal range, special values), and the same bits from the AVX2 and baseline builds.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "vmath.h"

namespace {

using F = std::vector<float>;

VXM_INLINE void exp_all_impl(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += vx::vm::kLanes)
    vx::vm::store_n(y + i, vx::vm::exp_neg(vx::vm::load_n(x + i, n - i)), n - i);
}
VXM_DISPATCH(exp_all, (float* y, const float* x, int64_t n), (y, x, n))

// |got - want| in units of the last place of want rounded to float (subnormal spacing below 2^-126).
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  double ulp = std::nextafter(std::fabs(w), INFINITY) - std::fabs(w);
  if (std::fabs(w) < std::numeric_limits<float>::min()) ulp = std::numeric_limits<float>::denorm_min();
  return std::fabs(double(got) - want) / ulp;
}

F sweep() {
  F x;
  for (int i = 0; i <= (1 << 20); ++i) x.push_back(-104.0f * float(i) / float(1 << 20));
  float v = -0.0f;  // consecutive floats from -0 down
  for (int i = 0; i < (1 << 18); ++i) x.push_back(v = std::nextafter(v, -INFINITY));
  v = -1.0f;
  for (int i = 0; i < (1 << 18); ++i) x.push_back(v = std::nextafter(v, -INFINITY));
  for (float s = -87.0f; s > -104.5f; s -= 0.001f) x.push_back(s);  // subnormal results and underflow
  x.push_back(-0.5f * 0.693147182f);  // |r| at its largest
  return x;
}

}  // namespace

TEST(exp_neg_accuracy) {
  const F x = sweep();
  F y(x.size());
  exp_all(y.data(), x.data(), int64_t(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::fmax(worst, ulps(y[i], std::exp(double(x[i]))));
  std::printf("exp_neg: max error %.3f ulp over %zu values\n", worst, x.size());
  CHECK(worst <= 1.5);
}

TEST(exp_neg_special_values) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const F x = {0.0f, -0.0f, nan, -inf, -104.0f, -110.0f, -1e30f, -103.0f, -87.5f};
  F y(x.size());
  exp_all(y.data(), x.data(), int64_t(x.size()));
  CHECK(y[0] == 1.0f && y[1] == 1.0f);  // exp(0) is exactly 1: softmax's largest term
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 0.0f && y[4] == 0.0f && y[5] == 0.0f && y[6] == 0.0f);
  CHECK(y[7] > 0.0f && y[7] < std::numeric_limits<float>::min());  // subnormal, not flushed
  CHECK(ulps(y[8], std::exp(-87.5)) <= 1.0);
}

TEST(exp_neg_same_bits_for_every_isa) {
  const F x = sweep();
  F first;
  vxtest::with_isas([&](bool is_first) {
    F y(x.size());
    exp_all(y.data(), x.data(), int64_t(x.size()));
    if (is_first) first = y;
    else CHECK(std::memcmp(y.data(), first.data(), y.size() * sizeof(float)) == 0);
  });
}

VX_TEST_MAIN()
