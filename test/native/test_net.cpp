// vx::Net: spec parsing and validation, and the graph wiring of forward/backward (residual adds,
// several consumers of one node, flatten/reshape, two outputs) against finite differences of the
// network itself. The ops' own maths is checked in double by the per-op tests; here the network runs
// in float, so the finite differences use a larger step and a looser tolerance.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "check.h"
#include "net.h"
#include "parallel.h"

using vx::Net;
using vx::Status;

namespace {

const char* kSpec =
    "input c=2 d=5 h=4 w=3\n"
    "conv3d in=0 cout=3 k=3 s=1 p=1 bias=1\n"           // 1
    "instance_norm3d in=1 eps=1e-5 affine=1\n"          // 2
    "prelu in=2 n=3\n"                                  // 3
    "conv3d in=3 cout=3 k=3,1,3 s=1 p=1,0,1 bias=1\n"   // 4
    "add in=4,3\n"                                      // 5 residual: node 3 has two consumers
    "leaky_relu in=5 slope=0.1\n"                       // 6
    "conv3d in=6 cout=2 k=2 s=2 p=1 bias=0\n"           // 7
    "sigmoid in=7\n"                                    // 8
    "flatten in=8\n"                                    // 9
    "linear in=9 out=4 bias=1\n"                        // 10
    "linear in=9 out=3 bias=1\n"                        // 11
    "reshape in=10 c=1 d=2 h=2 w=1\n"                   // 12
    "output 12 11\n";

double objective(Net& net, const vx::BufferPtr& x, int batch, const std::vector<std::vector<float>>& r, bool train = true) {
  CHECK(net.forward(x, batch, train) == Status::Ok);
  double L = 0;
  for (size_t k = 0; k < r.size(); ++k) {
    const float* y = net.output(int(k))->data();
    for (size_t i = 0; i < r[k].size(); ++i) L += double(y[i]) * r[k][i];
  }
  return L;
}

// Gradient slots: a node that is both consumed and an output, y = a + a, and a node listed twice as an
// output (smooth ops only, so that finite differences of size 1e-2 cross no kink).
const char* kSpecSlots =
    "input c=2 d=6 h=5 w=4\n"
    "conv3d in=0 cout=4 k=3 s=1 p=1 bias=1\n"           // 1
    "sigmoid in=1\n"                                    // 2
    "prelu in=2 n=1\n"                                  // 3: consumed by 4 and an output
    "conv3d in=3 cout=4 k=3 s=1 p=1 bias=0\n"           // 4
    "batch_norm3d in=4 eps=1e-5 momentum=0.1 affine=1\n"  // 5
    "sigmoid in=5\n"                                    // 6
    "add in=6,6\n"                                      // 7: y = a + a
    "output 7 3 7\n";                                   // node 7 twice: its gradients add

void check_gradients_by_finite_differences(const char* spec) {
  for (int threads : {1, 2}) {
    vx::set_num_threads(threads);
    std::unique_ptr<Net> net;
    CHECK(Net::create(spec, &net) == Status::Ok);
    if (!net) return;
    net->init_params(3);
    const int batch = 2;
    auto xv = vxtest::random_vec(size_t(batch) * net->input_shape().numel(), 11);
    auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
    std::vector<std::vector<float>> r;
    for (size_t k = 0; k < net->outputs().size(); ++k)
      r.push_back(vxtest::cast_vec<float>(vxtest::random_vec(size_t(batch) * net->output_shape(int(k)).numel(), 20 + unsigned(k))));
    objective(*net, x, batch, r);
    net->zero_grad();
    std::vector<const float*> d;
    for (const auto& rk : r) d.push_back(rk.data());
    CHECK(net->backward(d, true) == Status::Ok);
    std::vector<float> gx(net->input_grad()->begin(), net->input_grad()->end());
    std::vector<float> gp(net->grads(), net->grads() + net->num_params());

    const double h = 1e-2;
    auto fd = [&](float* p) {
      float v = *p;
      *p = float(v + h);
      double a = objective(*net, x, batch, r);
      *p = float(v - h);
      double b = objective(*net, x, batch, r);
      *p = v;
      return (a - b) / (2 * h);
    };
    double worst = 0, scale = 0;
    for (float g : gp) scale = std::fmax(scale, std::fabs(g));
    for (int64_t i = 0; i < net->num_params(); i += 3) worst = std::fmax(worst, std::fabs(fd(net->params() + i) - gp[size_t(i)]));
    for (size_t i = 0; i < gx.size(); i += 5) worst = std::fmax(worst, std::fabs(fd(x->data() + i) - gx[i]));
    if (!(worst <= 2e-2 * scale)) std::fprintf(stderr, "threads %d: worst abs diff %g, gradient scale %g\n", threads, worst, scale);
    CHECK(worst <= 2e-2 * scale);
  }
  vx::set_num_threads(0);
}

// A MONAI-style decoder (linear, ReLU, reshape, transposed convs with BatchNorm + PReLU, a last conv)
// in eval mode: the latent gradient latent fitting uses. Eval mode runs the folded conv+BN+PReLU kernels
// forward, and backward recomputes the unfolded activations and uses the running statistics.
const char* kDecoderSpec =
    "input c=3 d=1 h=1 w=1\n"
    "flatten in=0\n"                                              // 1
    "linear in=1 out=16 bias=1\n"                                 // 2
    "relu in=2\n"                                                 // 3 (kinks: checked away from them)
    "reshape in=3 c=4 d=2 h=2 w=1\n"                              // 4
    "conv_transpose3d in=4 cout=3 k=3 s=2 p=1 op=1 bias=1\n"      // 5
    "batch_norm3d in=5 eps=1e-5 momentum=0.1 affine=1\n"          // 6
    "prelu in=6 n=1\n"                                            // 7
    "conv_transpose3d in=7 cout=2 k=3 s=2 p=1 op=1 bias=1\n"      // 8
    "output 8\n";

void check_eval_input_gradient() {
  for (int threads : {1, 2}) {
    vx::set_num_threads(threads);
    std::unique_ptr<Net> net;
    CHECK(Net::create(kDecoderSpec, &net) == Status::Ok);
    if (!net) return;
    net->init_params(5);
    // Running statistics away from the initial (0, 1), so that eval mode differs from a plain affine.
    auto rb = vxtest::random_vec(size_t(net->num_buffers()), 7);
    for (int64_t i = 0; i < net->num_buffers(); ++i) net->buffers()[i] = float(0.5 + std::fabs(rb[size_t(i)]));  // means and variances > 0
    const int batch = 2;
    auto xv = vxtest::random_vec(size_t(batch) * net->input_shape().numel(), 13);
    auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
    std::vector<std::vector<float>> r{vxtest::cast_vec<float>(vxtest::random_vec(size_t(batch) * net->output_shape(0).numel(), 31))};
    const double L0 = objective(*net, x, batch, r, false);
    CHECK(net->backward({r[0].data()}, true) == Status::Ok);
    std::vector<float> gx(net->input_grad()->begin(), net->input_grad()->end());
    // The eval forward after a backward gives the same output (backward changes nothing it reads).
    { const double L1 = objective(*net, x, batch, r, false); if (L1 != L0) std::fprintf(stderr, "L0 %.9g L1 %.9g\n", L0, L1); CHECK(L1 == L0); }
    const double h = 1e-3;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < gx.size(); ++i) {
      float v = (*x)[i];
      (*x)[i] = float(v + h);
      const double a = objective(*net, x, batch, r, false);
      (*x)[i] = float(v - h);
      const double b = objective(*net, x, batch, r, false);
      (*x)[i] = v;
      worst = std::fmax(worst, std::fabs((a - b) / (2 * h) - gx[i]));
      scale = std::fmax(scale, std::fabs(gx[i]));
    }
    if (!(worst <= 1e-2 * scale)) std::fprintf(stderr, "eval input gradient, threads %d: worst abs diff %g, scale %g\n", threads, worst, scale);
    CHECK(scale > 0);
    CHECK(worst <= 1e-2 * scale);
  }
  vx::set_num_threads(0);
}

}  // namespace

TEST(eval_mode_input_gradient_matches_finite_differences) {
  check_eval_input_gradient();
}

TEST(net_gradients_match_finite_differences) {
  check_gradients_by_finite_differences(kSpec);
  check_gradients_by_finite_differences(kSpecSlots);
}

// A chain needs two gradient slots of its largest node, allocated by the first backward and reused
// (same bits) by the next ones.
TEST(gradient_slots_are_shared_and_reused) {
  std::unique_ptr<Net> net;
  CHECK(Net::create("input c=2 d=6 h=5 w=4\n"
                    "conv3d in=0 cout=4 k=3 s=1 p=1 bias=1\n"
                    "batch_norm3d in=1 eps=1e-5 momentum=0.1 affine=1\n"
                    "prelu in=2 n=1\n"
                    "conv3d in=3 cout=4 k=3 s=1 p=1 bias=0\n"
                    "batch_norm3d in=4 eps=1e-5 momentum=0.1 affine=1\n"
                    "prelu in=5 n=4\n"
                    "output 6\n",
                    &net) == Status::Ok);
  if (!net) return;
  const int batch = 3;
  auto xv = vxtest::random_vec(size_t(batch) * net->input_shape().numel(), 7);
  auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
  const auto dy = vxtest::cast_vec<float>(vxtest::random_vec(size_t(batch) * net->output_shape(0).numel(), 8));
  std::vector<float> g1, x1;
  for (int step = 0; step < 3; ++step) {
    CHECK(net->forward(x, batch, true) == Status::Ok);
    net->zero_grad();
    CHECK(net->backward({dy.data()}, true) == Status::Ok);
    CHECK(net->grad_slot_floats() == 2 * int64_t(batch) * 4 * 6 * 5 * 4);
    std::vector<float> g(net->grads(), net->grads() + net->num_params());
    std::vector<float> gx(*net->input_grad());
    if (step == 0) {
      g1 = g;
      x1 = gx;
    } else {
      CHECK(std::memcmp(g.data(), g1.data(), g.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(gx.data(), x1.data(), gx.size() * sizeof(float)) == 0);
    }
  }
}

// A norm whose only consumer is a PReLU runs fused into it; listing the norm as an output too (with no
// gradient) keeps the pair apart. Both give the same outputs (bit for bit) and gradients (up to float
// rounding), in training and eval mode.
TEST(norm_fused_into_prelu_matches_the_unfused_pair) {
  const std::string body =
      "input c=2 d=6 h=5 w=4\n"
      "conv3d in=0 cout=4 k=3 s=1 p=1 bias=1\n"             // 1
      "batch_norm3d in=1 eps=1e-5 momentum=0.1 affine=1\n"  // 2
      "prelu in=2 n=4\n"                                    // 3
      "conv3d in=3 cout=3 k=3 s=1 p=1 bias=1\n"             // 4
      "instance_norm3d in=4 eps=1e-5 affine=1\n"            // 5
      "prelu in=5 n=1\n";                                   // 6
  std::unique_ptr<Net> fused, apart;
  CHECK(Net::create(body + "output 6\n", &fused) == Status::Ok);
  CHECK(Net::create(body + "output 6 2 5\n", &apart) == Status::Ok);
  if (!fused || !apart) return;
  const int batch = 2;
  auto xv = vxtest::random_vec(size_t(batch) * fused->input_shape().numel(), 13);
  auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
  const auto dy = vxtest::cast_vec<float>(vxtest::random_vec(size_t(batch) * fused->output_shape(0).numel(), 14));
  for (bool train : {true, false}) {
    for (Net* net : {fused.get(), apart.get()}) {
      net->init_params(5);
      for (int64_t i = 0; i < net->num_params(); ++i) net->params()[i] += 0.01f * float(i % 7);  // slopes, betas != defaults
      CHECK(net->forward(x, batch, train) == Status::Ok);
      net->zero_grad();
    }
    CHECK(*fused->output(0) == *apart->output(0));
    CHECK(fused->backward({dy.data()}, true) == Status::Ok);
    CHECK(apart->backward({dy.data(), nullptr, nullptr}, true) == Status::Ok);
    // Relative to each gradient's largest value: the conv biases before a norm have a true gradient of 0
    // (theirs is rounding noise), and the fused PReLU's dy * slope is exact where the pair rounds it.
    auto close = [](const float* a, const float* b, size_t n) {
      double worst = 0, scale = 0;
      for (size_t i = 0; i < n; ++i) {
        worst = std::fmax(worst, std::fabs(double(a[i]) - double(b[i])));
        scale = std::fmax(scale, std::fabs(double(b[i])));
      }
      return worst <= 1e-5 * scale;
    };
    CHECK(close(fused->grads(), apart->grads(), size_t(fused->num_params())));
    CHECK(close(fused->input_grad()->data(), apart->input_grad()->data(), fused->input_grad()->size()));
    CHECK(std::vector<float>(fused->buffers(), fused->buffers() + fused->num_buffers()) ==
          std::vector<float>(apart->buffers(), apart->buffers() + apart->num_buffers()));
  }
}

// In eval mode a conv whose only consumer is a batch norm runs with the norm (and the PReLU fused into
// it) folded in as its epilogue. The folded output equals the unfused one to float rounding; a backward
// after a folded forward re-runs the forward unfused, so its gradients are those of the unfused net.
TEST(eval_forward_folds_batch_norm_and_prelu_into_the_conv) {
  const std::string spec =
      "input c=2 d=6 h=5 w=4\n"
      "conv3d in=0 cout=5 k=3 s=2 p=1 bias=1\n"                          // 1
      "batch_norm3d in=1 eps=1e-5 momentum=0.1 affine=1\n"               // 2
      "prelu in=2 n=5\n"                                                 // 3
      "conv_transpose3d in=3 cout=3 k=3 s=2 p=1 op=1 bias=1\n"           // 4
      "batch_norm3d in=4 eps=1e-3 momentum=0.1 affine=1\n"               // 5
      "conv3d in=5 cout=2 k=3 s=1 p=1 bias=1\n"                          // 6
      "output 6\n";
  std::unique_ptr<Net> net;
  CHECK(Net::create(spec, &net) == Status::Ok);
  if (!net) return;
  const int batch = 2;
  auto xv = vxtest::random_vec(size_t(batch) * net->input_shape().numel(), 23);
  auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
  net->init_params(7);
  for (int64_t i = 0; i < net->num_params(); ++i) net->params()[i] += 0.02f * float(i % 5);
  // Non-trivial running statistics: a few training forwards.
  for (int k = 0; k < 3; ++k) CHECK(net->forward(x, batch, true) == Status::Ok);
  CHECK(net->forward(x, batch, false) == Status::Ok);
  const std::vector<float> folded = *net->output(0);
  const auto dy = vxtest::cast_vec<float>(vxtest::random_vec(folded.size(), 24));
  net->zero_grad();
  CHECK(net->backward({dy.data()}, true) == Status::Ok);  // re-runs the forward unfused first
  const std::vector<float> unfolded = *net->output(0);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < folded.size(); ++i) {
    worst = std::fmax(worst, std::fabs(double(folded[i]) - double(unfolded[i])));
    scale = std::fmax(scale, std::fabs(double(unfolded[i])));
  }
  CHECK(scale > 0 && worst <= 1e-5 * scale);
  CHECK(folded != unfolded || worst == 0);  // (informative: folding changes rounding, not values)
  // The gradients equal those of a net that cannot fold (its convs are outputs too, so the norms are not
  // their only consumers), and so does its output.
  std::string apart_spec = spec;
  apart_spec.replace(apart_spec.find("output 6"), 8, "output 6 1 4");
  std::unique_ptr<Net> plain;
  CHECK(Net::create(apart_spec, &plain) == Status::Ok);
  if (!plain) return;
  plain->init_params(7);
  std::copy(net->params(), net->params() + net->num_params(), plain->params());
  std::copy(net->buffers(), net->buffers() + net->num_buffers(), plain->buffers());
  CHECK(plain->forward(x, batch, false) == Status::Ok);
  CHECK(*plain->output(0) == unfolded);
  plain->zero_grad();
  CHECK(plain->backward({dy.data(), nullptr, nullptr}, true) == Status::Ok);
  CHECK(std::vector<float>(net->grads(), net->grads() + net->num_params()) ==
        std::vector<float>(plain->grads(), plain->grads() + plain->num_params()));
}

// Eval-mode forwards keep each conv's packed weights between calls. Whatever changes in between — the
// weights written through params(), running statistics updated by a training forward or written through
// buffers(), another batch size — the output equals that of a fresh net with the same parameters and
// buffers, bit for bit.
TEST(eval_forward_reuses_packed_weights_only_while_they_are_current) {
  const std::string spec =
      "input c=2 d=6 h=5 w=4\n"
      "conv3d in=0 cout=5 k=3 s=2 p=1 bias=1\n"
      "batch_norm3d in=1 eps=1e-5 momentum=0.1 affine=1\n"
      "prelu in=2 n=5\n"
      "conv_transpose3d in=3 cout=3 k=3 s=2 p=1 op=1 bias=1\n"
      "conv3d in=4 cout=2 k=3 s=1 p=1 bias=1\n"
      "output 5\n";
  std::unique_ptr<Net> net;
  CHECK(Net::create(spec, &net) == Status::Ok);
  if (!net) return;
  auto xv = vxtest::random_vec(size_t(2) * net->input_shape().numel(), 31);
  auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
  net->init_params(3);
  auto x1 = std::make_shared<vx::Buffer>(xv.begin(), xv.begin() + xv.size() / 2);
  auto fresh_output = [&](int batch) {
    const auto& in = batch == 2 ? x : x1;
    std::unique_ptr<Net> f;
    CHECK(Net::create(spec, &f) == Status::Ok);
    std::copy(net->params(), net->params() + net->num_params(), f->params());
    std::copy(net->buffers(), net->buffers() + net->num_buffers(), f->buffers());
    CHECK(f->forward(in, batch, false) == Status::Ok);
    return *f->output(0);
  };
  auto eval = [&](int batch) {
    CHECK(net->forward(batch == 2 ? x : x1, batch, false) == Status::Ok);
    return *net->output(0);
  };
  const auto y0 = eval(2);
  CHECK(eval(2) == y0);
  CHECK(y0 == fresh_output(2));
  float* p = net->params();
  for (int64_t i = 0; i < net->num_params(); ++i) p[i] = 0.9f * p[i] + 0.01f * float(i % 7);
  const auto y1 = eval(2);
  CHECK(y1 != y0);
  CHECK(y1 == fresh_output(2));
  for (int k = 0; k < 2; ++k) CHECK(net->forward(x, 2, true) == Status::Ok);  // new running statistics
  const auto y2 = eval(2);
  CHECK(y2 != y1);
  CHECK(y2 == fresh_output(2));
  float* bufs = net->buffers();
  for (int64_t i = 0; i < net->num_buffers(); ++i) bufs[i] = 1.5f * bufs[i] + 0.5f;  // variances stay > 0
  const auto y3 = eval(2);
  CHECK(y3 != y2);
  CHECK(y3 == fresh_output(2));
  CHECK(eval(1) == fresh_output(1));
}

TEST(backward_accumulates_parameter_gradients_and_skips_input_grad) {
  std::unique_ptr<Net> net;
  CHECK(Net::create(kSpec, &net) == Status::Ok);
  auto xv = vxtest::random_vec(size_t(net->input_shape().numel()), 5);
  auto x = std::make_shared<vx::Buffer>(xv.begin(), xv.end());
  CHECK(net->forward(x, 1, false) == Status::Ok);
  std::vector<float> d0(size_t(net->output_shape(0).numel()), 1.f), d1(size_t(net->output_shape(1).numel()), 1.f);
  net->zero_grad();
  CHECK(net->backward({d0.data(), d1.data()}, false) == Status::Ok);
  CHECK(!net->input_grad());
  std::vector<float> once(net->grads(), net->grads() + net->num_params());
  CHECK(net->backward({d0.data(), d1.data()}, false) == Status::Ok);
  bool doubled = true;
  for (int64_t i = 0; i < net->num_params(); ++i) doubled &= std::fabs(net->grads()[i] - 2 * once[size_t(i)]) <= 1e-6f * (1 + std::fabs(once[size_t(i)]));
  CHECK(doubled);
  // A null output gradient means "no gradient from that output".
  net->zero_grad();
  CHECK(net->backward({d0.data(), nullptr}, true) == Status::Ok);
}

TEST(outputs_handed_out_are_not_overwritten) {
  std::unique_ptr<Net> net;
  CHECK(Net::create(kSpec, &net) == Status::Ok);
  auto x = std::make_shared<vx::Buffer>(size_t(net->input_shape().numel()), 0.5f);
  CHECK(net->forward(x, 1, false) == Status::Ok);
  vx::BufferPtr held = net->output(0);
  std::vector<float> copy(*held);
  auto x2 = std::make_shared<vx::Buffer>(size_t(net->input_shape().numel()), -0.5f);
  CHECK(net->forward(x2, 1, false) == Status::Ok);
  CHECK(*held == copy);                   // the caller's result is intact
  CHECK(net->output(0).get() != held.get());
}

TEST(spec_errors_name_the_line_and_never_crash) {
  const char* bad[] = {
      "",
      "conv3d in=0 cout=2\noutput 0",
      "input c=1 d=4 h=4 w=4\nconv3d in=0 cout=2 k=9 s=1 p=0\noutput 1",    // kernel larger than input
      "input c=1 d=4 h=4 w=4\nconv3d in=1 cout=2\noutput 1",                // forward reference
      "input c=1 d=4 h=4 w=4\nfoo in=0\noutput 1",
      "input c=1 d=4 h=4 w=4\nlinear in=0 out=3\noutput 1",                 // not flat
      "input c=2 d=4 h=4 w=4\nprelu in=0 n=3\noutput 1",
      "input c=1 d=4 h=4 w=4\nrelu in=0 bogus=1\noutput 1",
      "input c=1 d=4 h=4 w=4\nrelu in=0\n",                                  // no output line
      "input c=1 d=4 h=4 w=4\nrelu in=0\noutput 7",
      "input c=1 d=4 h=4 w=4\nconv3d in=0 cout=2 k=3 s=0\noutput 1",
      "input c=1 d=4 h=4 w=4\nconv_transpose3d in=0 cout=2 k=3 s=2 p=1 op=2\noutput 1",  // op >= stride
      "input c=1 d=4 h=4 w=4\nreshape in=0 c=3 d=1 h=1 w=1\noutput 1",
      "input c=1 d=4 h=4 w=4\nbatch_norm3d in=0 eps=-1\noutput 1",
      "input c=1 d=4 h=4 w=4\nadd in=0\noutput 1",
  };
  for (const char* s : bad) {
    std::unique_ptr<Net> net;
    vx::clear_error();
    Status st = Net::create(s, &net);
    CHECK(st != Status::Ok);
    CHECK(!net);
    CHECK(std::strlen(vx::last_error()) > 0);
  }
  std::unique_ptr<Net> net;
  CHECK(Net::create(kSpec, &net) == Status::Ok);
  auto wrong = std::make_shared<vx::Buffer>(7, 0.f);
  CHECK(net->forward(wrong, 1, true) == Status::ShapeMismatch);
  CHECK(net->forward(wrong, 0, true) == Status::InvalidArgument);
  std::unique_ptr<Net> fresh;
  CHECK(Net::create(kSpec, &fresh) == Status::Ok);
  CHECK(fresh->backward({nullptr, nullptr}, true) == Status::InvalidArgument);  // no forward yet
}

VX_TEST_MAIN()
