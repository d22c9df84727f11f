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

double objective(Net& net, const vx::BufferPtr& x, int batch, const std::vector<std::vector<float>>& r) {
  CHECK(net.forward(x, batch, true) == Status::Ok);
  double L = 0;
  for (size_t k = 0; k < r.size(); ++k) {
    const float* y = net.output(int(k))->data();
    for (size_t i = 0; i < r[k].size(); ++i) L += double(y[i]) * r[k][i];
  }
  return L;
}

}  // namespace

TEST(net_gradients_match_finite_differences) {
  for (int threads : {1, 2}) {
    vx::set_num_threads(threads);
    std::unique_ptr<Net> net;
    CHECK(Net::create(kSpec, &net) == Status::Ok);
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
    std::vector<const float*> d = {r[0].data(), r[1].data()};
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
