// Activations: reference backward passes against finite differences (double), optimized float kernels
// against the references over a table of shapes with 1, 2 and 3 threads (results bit-identical across
// thread counts), and edge cases.
#include <cmath>
#include <cstring>
#include <vector>

#include "activation.h"
#include "activation_ref.h"
#include "check.h"
#include "parallel.h"

namespace {

using vxtest::cast_vec;
using vxtest::random_vec;
using V = std::vector<double>;
using F = std::vector<float>;

double dot(const V& a, const V& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Random values kept at least `gap` away from 0, so that finite differences never straddle a kink.
V away_from_zero(size_t n, unsigned seed, double gap = 0.05) {
  V v = random_vec(n, seed);
  for (double& x : v) x = x >= 0 ? gap + x : -gap + x;
  return v;
}

struct Shape {
  int n, c;
  int64_t spatial;
};
// Shared table: odd sizes, channel counts that are not multiples of 8/16, one case large enough to be
// split over threads and several reduction blocks; spatial sizes that are multiples of the vector width
// (8) and not (tails of 1 to 7 lanes), and one that leaves a short last reduction block and softmax tile.
const Shape kShapes[] = {{1, 1, 1}, {1, 3, 105}, {2, 5, 7}, {3, 17, 33}, {1, 9, 1}, {2, 3, 40001}, {2, 4, 16},
                         {1, 2, 8195}, {3, 2, 300}};

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

const double kTol = 1e-5;  // optimized float vs double reference
// Finite differences with h = 1e-5: truncation ~h^2 and rounding ~1e-16 * |L| / h both stay near 1e-10,
// far below kFdTol even for entries whose gradient is under the 1e-3 floor of CHECK_REL.
const double kFdTol = 1e-6;
V finite_diff(const V& x, const std::function<double(const V&)>& f) { return vxtest::finite_diff(x, f, 1e-5); }

}  // namespace

TEST(relu_leaky_sigmoid_fd) {
  const size_t n = 2 * 3 * 105;
  const V x = away_from_zero(n, 1), r = random_vec(n, 2);
  V dx(n);
  // relu
  auto relu_l = [&](const V& xv) {
    V y(n);
    vx::relu_forward_ref(y.data(), xv.data(), int64_t(n));
    return dot(y, r);
  };
  CHECK(vx::relu_backward_ref(dx.data(), r.data(), x.data(), int64_t(n)) == vx::Status::Ok);
  V fd = finite_diff(x, relu_l);
  CHECK_REL(dx.data(), fd.data(), n, kFdTol);
  // leaky relu
  auto leaky_l = [&](const V& xv) {
    V y(n);
    vx::leaky_relu_forward_ref(y.data(), xv.data(), int64_t(n), 0.07f);
    return dot(y, r);
  };
  CHECK(vx::leaky_relu_backward_ref(dx.data(), r.data(), x.data(), int64_t(n), 0.07f) == vx::Status::Ok);
  fd = finite_diff(x, leaky_l);
  CHECK_REL(dx.data(), fd.data(), n, kFdTol);
  // sigmoid (backward from the output)
  const V xs = random_vec(n, 3, -4, 4);
  auto sig_l = [&](const V& xv) {
    V y(n);
    vx::sigmoid_forward_ref(y.data(), xv.data(), int64_t(n));
    return dot(y, r);
  };
  V y(n);
  vx::sigmoid_forward_ref(y.data(), xs.data(), int64_t(n));
  CHECK(vx::sigmoid_backward_ref(dx.data(), r.data(), y.data(), int64_t(n)) == vx::Status::Ok);
  fd = finite_diff(xs, sig_l);
  CHECK_REL(dx.data(), fd.data(), n, kFdTol);
}

TEST(prelu_fd_shared_and_per_channel_slopes) {
  const int n = 2, c = 3;
  const int64_t sp = 5 * 3 * 7, count = n * c * sp;
  const V x = away_from_zero(size_t(count), 4), r = random_vec(size_t(count), 5);
  for (int num_a : {1, c}) {
    const V a = random_vec(size_t(num_a), 6, 0.05, 0.5);
    auto loss = [&](const V& xv, const V& av) {
      V y(count);
      vx::prelu_forward_ref(y.data(), xv.data(), av.data(), n, c, sp, num_a);
      return dot(y, r);
    };
    auto loss_x = [&](const V& xv) { return loss(xv, a); };
    auto loss_a = [&](const V& av) { return loss(x, av); };
    V dx(count), da(size_t(num_a), 0.25);  // da accumulates onto 0.25
    CHECK(vx::prelu_backward_ref(dx.data(), da.data(), r.data(), x.data(), a.data(), n, c, sp, num_a) ==
          vx::Status::Ok);
    V fdx = finite_diff(x, loss_x), fda = finite_diff(a, loss_a);
    for (double& v : fda) v += 0.25;
    CHECK_REL(dx.data(), fdx.data(), size_t(count), kFdTol);
    CHECK_REL(da.data(), fda.data(), size_t(num_a), kFdTol);
  }
}

TEST(softmax_fd) {
  const int n = 2, c = 3;
  const int64_t sp = 5 * 3 * 7, count = n * c * sp;
  const V x = random_vec(size_t(count), 7, -3, 3), r = random_vec(size_t(count), 8);
  auto loss = [&](const V& xv) {
    V y(count);
    vx::softmax_forward_ref(y.data(), xv.data(), n, c, sp);
    return dot(y, r);
  };
  V y(count), dx(count);
  vx::softmax_forward_ref(y.data(), x.data(), n, c, sp);
  CHECK(vx::softmax_backward_ref(dx.data(), r.data(), y.data(), n, c, sp) == vx::Status::Ok);
  V fd = finite_diff(x, loss);
  CHECK_REL(dx.data(), fd.data(), size_t(count), kFdTol);
  // Sums to one over channels.
  for (int64_t s = 0; s < sp; ++s) CHECK(std::fabs(y[s] + y[sp + s] + y[2 * sp + s] - 1.0) < 1e-12);
}

TEST(dropout_fd) {
  const int64_t count = 3 * 3 * 105;
  const V x = random_vec(size_t(count), 9), r = random_vec(size_t(count), 10);
  auto loss = [&](const V& xv) {
    V y(count);
    vx::dropout_forward_ref(y.data(), static_cast<double*>(nullptr), xv.data(), count, 0.3f, 5, 6);
    return dot(y, r);
  };
  V y(count), mask(count), dx(count);
  vx::dropout_forward_ref(y.data(), mask.data(), x.data(), count, 0.3f, 5, 6);
  CHECK(vx::dropout_backward_ref(dx.data(), r.data(), mask.data(), count) == vx::Status::Ok);
  V fd = finite_diff(x, loss);
  CHECK_REL(dx.data(), fd.data(), size_t(count), kFdTol);
}

TEST(elementwise_optimized_vs_ref) {
  for (const Shape& sh : kShapes) {
    const int64_t count = sh.n * sh.c * sh.spatial;
    const F xf = cast_vec<float>(random_vec(size_t(count), 11, -6, 6));
    const F gf = cast_vec<float>(random_vec(size_t(count), 12));
    const F bf = cast_vec<float>(random_vec(size_t(count), 13));
    const V x(xf.begin(), xf.end()), g(gf.begin(), gf.end()), b(bf.begin(), bf.end());
    V yr(count), dr(count);
    F y1, d1, s1;
    with_threads([&](int t) {
      F y(count), d(count);
      vx::relu_forward_ref(yr.data(), x.data(), count);
      CHECK(vx::relu_forward(y.data(), xf.data(), count) == vx::Status::Ok);
      CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
      vx::relu_backward_ref(dr.data(), g.data(), x.data(), count);
      CHECK(vx::relu_backward(d.data(), gf.data(), xf.data(), count) == vx::Status::Ok);
      CHECK_REL(d.data(), dr.data(), size_t(count), kTol);

      vx::leaky_relu_forward_ref(yr.data(), x.data(), count, 0.01f);
      CHECK(vx::leaky_relu_forward(y.data(), xf.data(), count, 0.01f) == vx::Status::Ok);
      CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
      vx::leaky_relu_backward_ref(dr.data(), g.data(), x.data(), count, 0.01f);
      CHECK(vx::leaky_relu_backward(d.data(), gf.data(), xf.data(), count, 0.01f) == vx::Status::Ok);
      CHECK_REL(d.data(), dr.data(), size_t(count), kTol);

      vx::sigmoid_forward_ref(yr.data(), x.data(), count);
      CHECK(vx::sigmoid_forward(y.data(), xf.data(), count) == vx::Status::Ok);
      CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
      if (t == 1) s1 = y;
      else CHECK(same_bits(y, s1));
      const V yv(y.begin(), y.end());
      vx::sigmoid_backward_ref(dr.data(), g.data(), yv.data(), count);
      CHECK(vx::sigmoid_backward(d.data(), gf.data(), y.data(), count) == vx::Status::Ok);
      CHECK_REL(d.data(), dr.data(), size_t(count), kTol);

      vx::add_forward_ref(yr.data(), x.data(), b.data(), count);
      CHECK(vx::add_forward(y.data(), xf.data(), bf.data(), count) == vx::Status::Ok);
      CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
      if (t == 1) {
        y1 = y;
      } else {
        CHECK(same_bits(y, y1));
      }
    });
  }
}

TEST(prelu_optimized_vs_ref) {
  for (const Shape& sh : kShapes) {
    const int64_t count = sh.n * sh.c * sh.spatial;
    const F xf = cast_vec<float>(random_vec(size_t(count), 14));
    const F gf = cast_vec<float>(random_vec(size_t(count), 15));
    const V x(xf.begin(), xf.end()), g(gf.begin(), gf.end());
    for (int num_a : {1, sh.c}) {
      const F af = cast_vec<float>(random_vec(size_t(num_a), 16, 0.0, 0.5));
      const V a(af.begin(), af.end());
      V yr(count), dr(count), dar(size_t(num_a), 0.5);
      vx::prelu_forward_ref(yr.data(), x.data(), a.data(), sh.n, sh.c, sh.spatial, num_a);
      vx::prelu_backward_ref(dr.data(), dar.data(), g.data(), x.data(), a.data(), sh.n, sh.c, sh.spatial, num_a);
      F da1, y1, d1;
      with_threads([&](int t) {
        F y(count), d(count), da(size_t(num_a), 0.5f);
        CHECK(vx::prelu_forward(y.data(), xf.data(), af.data(), sh.n, sh.c, sh.spatial, num_a) == vx::Status::Ok);
        CHECK(vx::prelu_backward(d.data(), da.data(), gf.data(), xf.data(), af.data(), sh.n, sh.c, sh.spatial, num_a) ==
              vx::Status::Ok);
        CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
        CHECK_REL(d.data(), dr.data(), size_t(count), kTol);
        CHECK_REL(da.data(), dar.data(), size_t(num_a), kTol);
        if (t == 1) {
          da1 = da;
          y1 = y;
          d1 = d;
        } else {  // the thread count and the vector ISA change nothing
          CHECK(same_bits(da, da1) && same_bits(y, y1) && same_bits(d, d1));
        }
        // dx only / da only.
        F da2(size_t(num_a), 0.5f);
        CHECK(vx::prelu_backward(nullptr, da2.data(), gf.data(), xf.data(), af.data(), sh.n, sh.c, sh.spatial, num_a) ==
              vx::Status::Ok);
        CHECK(same_bits(da2, da));
        CHECK(vx::prelu_backward(d.data(), nullptr, gf.data(), xf.data(), af.data(), sh.n, sh.c, sh.spatial, num_a) ==
              vx::Status::Ok);
        CHECK_REL(d.data(), dr.data(), size_t(count), kTol);
      });
    }
  }
}

TEST(softmax_optimized_vs_ref) {
  for (const Shape& sh : kShapes) {
    const int64_t count = sh.n * sh.c * sh.spatial;
    const F xf = cast_vec<float>(random_vec(size_t(count), 17, -8, 8));
    const F gf = cast_vec<float>(random_vec(size_t(count), 18));
    const V x(xf.begin(), xf.end()), g(gf.begin(), gf.end());
    V yr(count), dr(count);
    vx::softmax_forward_ref(yr.data(), x.data(), sh.n, sh.c, sh.spatial);
    F y1, d1;
    with_threads([&](int t) {
      F y(count), d(count);
      CHECK(vx::softmax_forward(y.data(), xf.data(), sh.n, sh.c, sh.spatial) == vx::Status::Ok);
      CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
      const V yv(y.begin(), y.end());  // backward from the float forward's output, as in training
      vx::softmax_backward_ref(dr.data(), g.data(), yv.data(), sh.n, sh.c, sh.spatial);
      CHECK(vx::softmax_backward(d.data(), gf.data(), y.data(), sh.n, sh.c, sh.spatial) == vx::Status::Ok);
      CHECK_REL(d.data(), dr.data(), size_t(count), kTol);
      if (t == 1) {
        y1 = y;
        d1 = d;
      } else {
        CHECK(same_bits(y, y1) && same_bits(d, d1));
      }
    });
  }
}

// The output activation (what decode returns): each kind against its reference, in place and not, with 1-3
// threads, bit-identical across thread counts and to the kernel it names.
TEST(output_activation_optimized_vs_ref) {
  using A = vx::OutputActivation;
  for (A a : {A::None, A::Sigmoid, A::Softmax}) {
    vx::OutputActivation parsed = A::None;
    CHECK(vx::parse_output_activation(vx::output_activation_name(a), &parsed) && parsed == a);
    for (const Shape& sh : kShapes) {
      const int64_t count = sh.n * sh.c * sh.spatial;
      const F xf = cast_vec<float>(random_vec(size_t(count), 23, -8, 8));
      const V x(xf.begin(), xf.end());
      V yr(count);
      CHECK(vx::output_activation_forward_ref(yr.data(), x.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
      F direct(count);
      if (a == A::Sigmoid) vx::sigmoid_forward(direct.data(), xf.data(), count);
      if (a == A::Softmax) vx::softmax_forward(direct.data(), xf.data(), sh.n, sh.c, sh.spatial);
      if (a == A::None) direct = xf;
      F y1;
      with_threads([&](int t) {
        F y(count), inplace = xf;
        CHECK(vx::output_activation_forward(y.data(), xf.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
        CHECK(vx::output_activation_forward(inplace.data(), inplace.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
        CHECK_REL(y.data(), yr.data(), size_t(count), kTol);
        CHECK(same_bits(y, inplace) && same_bits(y, direct));
        if (t == 1) y1 = y;
        else CHECK(same_bits(y, y1));
      });
    }
  }
  vx::OutputActivation parsed;
  CHECK(!vx::parse_output_activation("relu", &parsed) && !vx::parse_output_activation(nullptr, &parsed));
  float v = 0;
  CHECK(vx::output_activation_forward(&v, &v, A::Softmax, 1, 0, 1) == vx::Status::InvalidArgument);
  CHECK(vx::output_activation_forward(&v, &v, static_cast<A>(7), 1, 1, 1) == vx::Status::InvalidArgument);
}

// The output activation's backward (Rivera's discriminator sees the decoder's probabilities): each kind
// against its reference in double from the float forward's output, with 1-3 threads, bit-identical across
// thread counts; aliasing dx with dy or y is refused.
TEST(output_activation_backward_optimized_vs_ref) {
  using A = vx::OutputActivation;
  for (A a : {A::None, A::Sigmoid, A::Softmax}) {
    for (const Shape& sh : kShapes) {
      const int64_t count = sh.n * sh.c * sh.spatial;
      const F xf = cast_vec<float>(random_vec(size_t(count), 29, -6, 6));
      const F gf = cast_vec<float>(random_vec(size_t(count), 31, -1, 1));
      F y(count);
      CHECK(vx::output_activation_forward(y.data(), xf.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
      const V yv(y.begin(), y.end()), g(gf.begin(), gf.end());
      V dr(count);
      CHECK(vx::output_activation_backward_ref(dr.data(), g.data(), yv.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
      F d1;
      with_threads([&](int t) {
        F d(count);
        CHECK(vx::output_activation_backward(d.data(), gf.data(), y.data(), a, sh.n, sh.c, sh.spatial) == vx::Status::Ok);
        CHECK_REL(d.data(), dr.data(), size_t(count), kTol);
        if (t == 1) d1 = d;
        else CHECK(same_bits(d, d1));
      });
    }
  }
  float v = 1, w = 1;
  CHECK(vx::output_activation_backward(&v, &v, &w, A::Softmax, 1, 1, 1) == vx::Status::InvalidArgument);
  CHECK(vx::output_activation_backward(&v, &w, &w, static_cast<A>(7), 1, 1, 1) == vx::Status::InvalidArgument);
}

TEST(activation_edge_cases) {
  // relu and prelu at exactly 0: relu passes no gradient, prelu passes a * dy and adds nothing to da.
  const float zero = 0.0f, one = 1.0f, slope = 0.25f;
  float d = 7, da = 0;
  vx::relu_backward(&d, &one, &zero, 1);
  CHECK(d == 0.0f);
  vx::prelu_backward(&d, &da, &one, &zero, &slope, 1, 1, 1, 1);
  CHECK(d == 0.25f && da == 0.0f);
  // Sigmoid saturates without NaN or overflow; softmax is stable for huge logits.
  const F big = {-1000.0f, -100.0f, 0.0f, 100.0f, 1000.0f};
  F y(5);
  vx::sigmoid_forward(y.data(), big.data(), 5);
  CHECK(y[0] == 0.0f && y[2] == 0.5f && y[4] == 1.0f && std::isfinite(y[1]) && y[1] > 0.0f);
  const F logits = {1000.0f, 999.0f};  // n=1, c=2, spatial=1
  F p(2);
  vx::softmax_forward(p.data(), logits.data(), 1, 2, 1);
  CHECK(std::fabs(p[0] - 1.0 / (1.0 + std::exp(-1.0))) < 1e-6 && std::fabs(p[0] + p[1] - 1.0f) < 1e-6);
  // Invalid arguments.
  CHECK(vx::prelu_forward(y.data(), big.data(), &slope, 1, 5, 1, 2) == vx::Status::InvalidArgument);
  CHECK(vx::softmax_forward(p.data(), logits.data(), 1, 0, 2) == vx::Status::InvalidArgument);
  CHECK(vx::relu_forward(nullptr, big.data(), 5) == vx::Status::InvalidArgument);
  CHECK(vx::relu_forward(y.data(), big.data(), -1) == vx::Status::InvalidArgument);
  CHECK(vx::relu_forward(nullptr, nullptr, 0) == vx::Status::Ok);
}

TEST(dropout_rate_consistency_determinism) {
  const int64_t count = 400003;
  const float p = 0.3f;
  const F x = cast_vec<float>(random_vec(size_t(count), 19, 0.5, 1.5));  // never 0: y == 0 iff dropped
  const F g = cast_vec<float>(random_vec(size_t(count), 20));
  F y1, m1;
  with_threads([&](int t) {
    F y(count), mask(count), dx(count);
    CHECK(vx::dropout_forward(y.data(), mask.data(), x.data(), count, p, 123, 4) == vx::Status::Ok);
    CHECK(vx::dropout_backward(dx.data(), g.data(), mask.data(), count) == vx::Status::Ok);
    int64_t dropped = 0;
    const float keep = static_cast<float>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < count; ++i) {
      CHECK(mask[i] == 0.0f || mask[i] == keep);
      CHECK((mask[i] == 0.0f) == (vx::philox_uniform(123, 4, uint64_t(i)) < p));
      CHECK(y[i] == x[i] * mask[i] && dx[i] == g[i] * mask[i]);
      dropped += mask[i] == 0.0f;
    }
    const double rate = double(dropped) / double(count);
    CHECK(std::fabs(rate - p) < 5.0 * std::sqrt(p * (1 - p) / double(count)));
    if (t == 1) {
      y1 = y;
      m1 = mask;
    } else {
      CHECK(same_bits(y, y1) && same_bits(mask, m1));
    }
  });
  // Same (seed, step): same mask, also without a mask buffer; another step or seed: another mask.
  F y(count), mask(count);
  vx::dropout_forward(y.data(), nullptr, x.data(), count, p, 123, 4);
  CHECK(same_bits(y, y1));
  vx::dropout_forward(y.data(), mask.data(), x.data(), count, p, 123, 5);
  CHECK(!same_bits(mask, m1));
  vx::dropout_forward(y.data(), mask.data(), x.data(), count, p, 124, 4);
  CHECK(!same_bits(mask, m1));
  // The boundary: mask[i] = u_i >= p, so an element whose u equals p exactly is kept.
  const float p_eq = vx::philox_uniform(77, 2, 5);
  F xs(8, 1.0f), ys(8), ms(8);
  vx::dropout_forward(ys.data(), ms.data(), xs.data(), 8, p_eq, 77, 2);
  CHECK(ms[5] != 0.0f);
  // p = 0 is the identity; p outside [0, 1) is rejected.
  vx::dropout_forward(y.data(), mask.data(), x.data(), count, 0.0f, 1, 1);
  CHECK(same_bits(y, x));
  CHECK(vx::dropout_forward(y.data(), mask.data(), x.data(), count, 1.0f, 1, 1) == vx::Status::InvalidArgument);
  CHECK(vx::dropout_forward(y.data(), mask.data(), x.data(), count, -0.1f, 1, 1) == vx::Status::InvalidArgument);
}

VX_TEST_MAIN()
