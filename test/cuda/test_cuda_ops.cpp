// GPU tests: every CUDA op of native/cuda against the CPU engine of native/core, forward and backward,
// on one case table (convolutions: every row of test/conv_cases.json, the table the native and WASM tests
// run, as a conv3d and as a conv_transpose3d); relative error = max|gpu - cpu| / max(|cpu|, 1e-6) over
// the tensor must stay under 1e-5 (fp32: direct kernels, cuDNN with TF32 off) or 1e-3 (cuDNN with TF32).
// Ends with a whole network forward/backward/Adam step from the same weights and batch. Without a usable
// device it prints why and exits 77 (ctest: skipped, not passed).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "activation.h"
#include "allocator.h"
#include "context.h"
#include "conv_case_table.h"  // test/native: the one conv case table (test/conv_cases.json)
#include "conv_transpose3d.h"
#include "cudnn_conv.h"
#include "kernels.h"
#include "linear.h"
#include "loss.h"
#include "net.h"
#include "net_cuda.h"
#include "norm.h"
#include "optim.h"
#include "rng.h"

using namespace vx;
namespace vc = vx::cuda;

static int g_fail = 0, g_checks = 0;
static cudaStream_t S;
static vc::Context* C;

struct Dev {  // a device copy of a host vector
  vc::DeviceBufferPtr b;
  explicit Dev(const std::vector<float>& h) {
    vc::make_buffer(int64_t(h.size()), &b, S);
    // On S, not the legacy stream: S is non-blocking (no implicit ordering with cudaMemcpy), and a
    // pageable cudaMemcpy may return before its DMA lands. Async from pageable memory stages h first.
    cudaMemcpyAsync(b->ptr, h.data(), h.size() * 4, cudaMemcpyHostToDevice, S);
  }
  explicit Dev(size_t n, float fill = 0.f) : Dev(std::vector<float>(n, fill)) {}
  float* p() { return b->ptr; }
  std::vector<float> host() const {
    cudaStreamSynchronize(S);
    std::vector<float> h(size_t(b->count));
    cudaMemcpy(h.data(), b->ptr, h.size() * 4, cudaMemcpyDeviceToHost);
    return h;
  }
};

static std::vector<float> rnd(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

static void expect(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu, double tol) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    md = std::max(md, std::fabs(double(gpu[i]) - double(cpu[i])));
    mr = std::max(mr, std::fabs(double(cpu[i])));
  }
  const double rel = md / std::max(mr, 1e-6);
  ++g_checks;
  const bool ok = gpu.size() == cpu.size() && rel <= tol && std::isfinite(rel);
  if (!ok) ++g_fail;
  std::printf("%-4s %-48s rel %.3e (tol %.0e)\n", ok ? "ok" : "FAIL", what, rel, tol);
}
static void expect_scalar(const char* what, double gpu, double cpu, double tol) {
  expect(what, {float(gpu)}, {float(cpu)}, tol);
}
static double dev_double(const double* d) {
  double v;
  cudaStreamSynchronize(S);
  cudaMemcpy(&v, d, 8, cudaMemcpyDeviceToHost);
  return v;
}

// A row of the one conv case table (test/conv_cases.json, via conv_case_table.h) as a conv3d or, with its
// output_padding, as a conv_transpose3d.
struct ConvCase { std::string name; Conv3dShape s; bool transposed; };

static ConvCase table_case(const vxtest::ConvCase& c, bool transposed) {
  Conv3dShape s;
  s.n = c.n; s.cin = c.cin; s.cout = c.cout; s.id = c.id; s.ih = c.ih; s.iw = c.iw;
  s.kd = c.kd; s.kh = c.kh; s.kw = c.kw; s.sd = c.sd; s.sh = c.sh; s.sw = c.sw; s.pd = c.pd; s.ph = c.ph; s.pw = c.pw;
  if (transposed) { s.opd = c.opd; s.oph = c.oph; s.opw = c.opw; }
  return {std::string(transposed ? "conv_transpose3d " : "conv3d ") + c.name, s, transposed};
}

static void conv_case(const ConvCase& cc, bool cudnn, bool tf32) {
  Conv3dShape s = cc.s;
  if ((cc.transposed ? conv_transpose3d_shape(s) : conv3d_shape(s)) != Status::Ok) {
    std::printf("FAIL %s: bad shape: %s\n", cc.name.c_str(), last_error());
    ++g_fail;
    return;
  }
  const size_t xn = size_t(s.n) * s.cin * s.id * s.ih * s.iw, yn = size_t(s.n) * s.cout * s.od * s.oh * s.ow;
  const size_t wn = size_t(s.cout) * s.cin * s.kd * s.kh * s.kw;
  auto x = rnd(xn, 1), w = rnd(wn, 2, -0.3f, 0.3f), b = rnd(size_t(s.cout), 3), dy = rnd(yn, 4);
  std::vector<float> y(yn), dx(xn), dw(wn, 0.f), db(size_t(s.cout), 0.f);
  if (cc.transposed) {
    conv_transpose3d_forward(y.data(), x.data(), w.data(), b.data(), s);
    conv_transpose3d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s);
  } else {
    conv3d_forward(y.data(), x.data(), w.data(), b.data(), s);
    conv3d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s);
  }
  C->options().tf32 = tf32;
  Dev X(x), W(w), B(b), DY(dy), Y(yn), DX(xn), DW(wn), DB(size_t(s.cout));
  Status st1, st2;
  if (cc.transposed) {
    st1 = vc::conv_transpose3d_forward(*C, Y.p(), X.p(), W.p(), B.p(), s, S, cudnn);
    st2 = vc::conv_transpose3d_backward(*C, DX.p(), DW.p(), DB.p(), DY.p(), X.p(), W.p(), s, S, cudnn);
  } else {
    st1 = vc::conv3d_forward(*C, Y.p(), X.p(), W.p(), B.p(), s, S, cudnn);
    st2 = vc::conv3d_backward(*C, DX.p(), DW.p(), DB.p(), DY.p(), X.p(), W.p(), s, S, cudnn);
  }
  if (st1 != Status::Ok || st2 != Status::Ok) {
    std::printf("FAIL %s: %s\n", cc.name.c_str(), last_error());
    ++g_fail;
    return;
  }
  const double tol = cudnn && tf32 ? 1e-3 : 1e-5;
  const std::string tag = cc.name + (cudnn ? (tf32 ? " [cudnn tf32]" : " [cudnn fp32]") : " [direct]");
  expect((tag + " y").c_str(), Y.host(), y, tol);
  expect((tag + " dx").c_str(), DX.host(), dx, tol);
  expect((tag + " dw").c_str(), DW.host(), dw, tol);
  expect((tag + " db").c_str(), DB.host(), db, 1e-5);
}

static Conv3dShape cs(int n, int ci, int co, int d, int h, int w, int k, int st, int p, int op = 0) {
  Conv3dShape s;
  s.n = n; s.cin = ci; s.cout = co; s.id = d; s.ih = h; s.iw = w;
  s.kd = s.kh = s.kw = k; s.sd = s.sh = s.sw = st; s.pd = s.ph = s.pw = p; s.opd = s.oph = s.opw = op;
  return s;
}

int main() {
  const vc::ProbeResult pr = vc::probe();
  if (!pr.ok) {
    std::printf("SKIP: no usable CUDA device: %s\n", pr.reason.c_str());
    return 77;
  }
  std::printf("device %s (cc %d.%d), cuDNN %d\n", pr.device.c_str(), pr.cc_major, pr.cc_minor, pr.cudnn_version);
  if (vc::Context::get(&C) != Status::Ok) { std::printf("FAIL context: %s\n", last_error()); return 1; }
  S = C->stream();

  // Every row of the one conv case table, as a conv3d and as a conv_transpose3d.
  std::vector<ConvCase> convs;
  for (const vxtest::ConvCase& row : vxtest::conv_cases())
    for (bool transposed : {false, true}) convs.push_back(table_case(row, transposed));
  for (const auto& c : convs) {
    conv_case(c, false, false);
    if (vc::cudnn_built()) {
      conv_case(c, true, false);
      conv_case(c, true, true);
    }
  }
  C->options().tf32 = true;

  // linear
  for (auto sh : {std::vector<int>{3, 17, 5}, {2, 4096, 64}, {7, 33, 129}}) {
    const int n = sh[0], in = sh[1], out = sh[2];
    auto x = rnd(size_t(n) * in, 5), w = rnd(size_t(out) * in, 6, -0.1f, 0.1f), b = rnd(size_t(out), 7), dy = rnd(size_t(n) * out, 8);
    std::vector<float> y(size_t(n) * out), dx(size_t(n) * in), dw(w.size(), 0.f), db(size_t(out), 0.f);
    linear_forward(y.data(), x.data(), w.data(), b.data(), n, in, out);
    linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), n, in, out);
    Dev X(x), W(w), B(b), DY(dy), Y(y.size()), DX(dx.size()), DW(dw.size()), DB(db.size());
    vc::linear_forward(Y.p(), X.p(), W.p(), B.p(), n, in, out, S);
    vc::linear_backward(DX.p(), DW.p(), DB.p(), DY.p(), X.p(), W.p(), n, in, out, S);
    const std::string t = "linear " + std::to_string(n) + "x" + std::to_string(in) + "->" + std::to_string(out);
    expect((t + " y").c_str(), Y.host(), y, 1e-5);
    expect((t + " dx").c_str(), DX.host(), dx, 1e-5);
    expect((t + " dw").c_str(), DW.host(), dw, 1e-5);
    expect((t + " db").c_str(), DB.host(), db, 1e-5);
  }

  // norms
  for (auto sh : {std::vector<int>{2, 3, 37}, {4, 8, 512}, {1, 5, 1000}}) {
    NormShape ns;
    ns.n = sh[0]; ns.c = sh[1]; ns.spatial = sh[2];
    const size_t cnt = size_t(ns.n) * ns.c * size_t(ns.spatial);
    auto x = rnd(cnt, 9, -2, 3), g = rnd(size_t(ns.c), 10, 0.5f, 1.5f), b = rnd(size_t(ns.c), 11), dy = rnd(cnt, 12);
    std::vector<float> y(cnt), sm(size_t(ns.c)), si(size_t(ns.c)), rm(size_t(ns.c), 0.f), rv(size_t(ns.c), 1.f), dx(cnt), dg(size_t(ns.c), 0.f), db(size_t(ns.c), 0.f);
    batch_norm3d_forward_train(y.data(), sm.data(), si.data(), rm.data(), rv.data(), x.data(), g.data(), b.data(), ns);
    batch_norm3d_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), g.data(), sm.data(), si.data(), ns);
    Dev X(x), G(g), B(b), DY(dy), Y(cnt), SM(size_t(ns.c)), SI(size_t(ns.c)), RM(size_t(ns.c), 0.f), RV(size_t(ns.c), 1.f), DX(cnt), DG(size_t(ns.c)), DB(size_t(ns.c));
    vc::batch_norm3d_forward_train(Y.p(), SM.p(), SI.p(), RM.p(), RV.p(), X.p(), G.p(), B.p(), ns, S);
    vc::batch_norm3d_backward(DX.p(), DG.p(), DB.p(), DY.p(), X.p(), G.p(), SM.p(), SI.p(), ns, S);
    expect("batch_norm3d y", Y.host(), y, 1e-5);
    expect("batch_norm3d running_var", RV.host(), rv, 1e-5);
    expect("batch_norm3d dx", DX.host(), dx, 1e-5);
    expect("batch_norm3d dgamma", DG.host(), dg, 1e-5);
    std::vector<float> iy(cnt), ism(size_t(ns.n) * ns.c), isi(ism.size()), idx(cnt), idg(size_t(ns.c), 0.f), idb(size_t(ns.c), 0.f);
    instance_norm3d_forward(iy.data(), ism.data(), isi.data(), x.data(), g.data(), b.data(), ns);
    instance_norm3d_backward(idx.data(), idg.data(), idb.data(), dy.data(), x.data(), g.data(), ism.data(), isi.data(), ns);
    Dev IY(cnt), ISM(ism.size()), ISI(isi.size()), IDX(cnt), IDG(size_t(ns.c)), IDB(size_t(ns.c));
    vc::instance_norm3d_forward(IY.p(), ISM.p(), ISI.p(), X.p(), G.p(), B.p(), ns, S);
    vc::instance_norm3d_backward(IDX.p(), IDG.p(), IDB.p(), DY.p(), X.p(), G.p(), ISM.p(), ISI.p(), ns, S);
    expect("instance_norm3d y", IY.host(), iy, 1e-5);
    expect("instance_norm3d dx", IDX.host(), idx, 1e-5);
    expect("instance_norm3d dbeta", IDB.host(), idb, 1e-5);
  }

  // activations and softmax
  {
    const int n = 2, c = 4;
    const int64_t sp = 333, cnt = n * c * sp;
    const size_t NC = size_t(cnt), CC = size_t(c);
    auto x = rnd(NC, 13, -3, 3), dy = rnd(NC, 14), a = rnd(CC, 15, 0.1f, 0.4f);
    Dev X(x), DY(dy), A(a), Y(NC), DX(NC), DA(CC);
    std::vector<float> y(NC), dx(NC), da(CC, 0.f);
    relu_forward(y.data(), x.data(), cnt); vc::relu_forward(Y.p(), X.p(), cnt, S); expect("relu y", Y.host(), y, 0);
    relu_backward(dx.data(), dy.data(), x.data(), cnt); vc::relu_backward(DX.p(), DY.p(), X.p(), cnt, S); expect("relu dx", DX.host(), dx, 0);
    leaky_relu_forward(y.data(), x.data(), cnt, 0.02f); vc::leaky_relu_forward(Y.p(), X.p(), cnt, 0.02f, S); expect("leaky_relu y", Y.host(), y, 1e-6);
    prelu_forward(y.data(), x.data(), a.data(), n, c, sp, c); vc::prelu_forward(Y.p(), X.p(), A.p(), n, c, sp, c, S); expect("prelu y", Y.host(), y, 1e-6);
    prelu_backward(dx.data(), da.data(), dy.data(), x.data(), a.data(), n, c, sp, c);
    vc::prelu_backward(DX.p(), DA.p(), DY.p(), X.p(), A.p(), n, c, sp, c, S);
    expect("prelu dx", DX.host(), dx, 1e-6);
    expect("prelu da", DA.host(), da, 1e-5);
    sigmoid_forward(y.data(), x.data(), cnt); vc::sigmoid_forward(Y.p(), X.p(), cnt, S); expect("sigmoid y", Y.host(), y, 1e-6);
    softmax_forward(y.data(), x.data(), n, c, sp); vc::softmax_forward(Y.p(), X.p(), n, c, sp, S); expect("softmax y", Y.host(), y, 1e-6);
    softmax_backward(dx.data(), dy.data(), y.data(), n, c, sp); vc::softmax_backward(DX.p(), DY.p(), Y.p(), n, c, sp, S); expect("softmax dx", DX.host(), dx, 1e-5);
    // The output activation, in place on the device as decode runs it.
    for (vx::OutputActivation act : {vx::OutputActivation::None, vx::OutputActivation::Sigmoid, vx::OutputActivation::Softmax}) {
      Dev Z(x);
      output_activation_forward(y.data(), x.data(), act, n, c, sp);
      vc::output_activation_forward(Z.p(), Z.p(), act, n, c, sp, S);
      expect((std::string("output activation ") + vx::output_activation_name(act)).c_str(), Z.host(), y, 1e-6);
    }

    // losses: Dice, BCE, MSE, L1
    std::vector<float> lab(size_t(n) * sp);
    for (size_t i = 0; i < lab.size(); ++i) lab[i] = float((i * 7) % c);
    Dev L(lab), GR(static_cast<size_t>(cnt));
    vc::DeviceBufferPtr scal;
    vc::make_buffer(4, &scal, S);
    auto* dl = reinterpret_cast<double*>(scal->ptr);
    auto* bad = reinterpret_cast<int64_t*>(scal->ptr + 2);
    cudaMemsetAsync(bad, 0xff, 8, S);
    double loss = 0;
    std::vector<float> grad(static_cast<size_t>(cnt));
    dice_loss(&loss, grad.data(), x.data(), lab.data(), n, c, sp, {1e-5f, 1e-5f, Reduction::Sum, 80.f});
    vc::dice_loss(dl, GR.p(), X.p(), L.p(), n, c, sp, {1e-5f, 1e-5f, Reduction::Sum, 80.f}, bad, S);
    expect_scalar("dice loss", dev_double(dl), loss, 1e-5);
    expect("dice grad", GR.host(), grad, 1e-5);
    auto t = rnd(size_t(cnt), 16, 0, 1);
    Dev T(t);
    bce_with_logits_loss(&loss, grad.data(), x.data(), t.data(), cnt, Reduction::Mean, 1.f);
    vc::bce_with_logits_loss(dl, GR.p(), X.p(), T.p(), cnt, Reduction::Mean, 1.f, S);
    expect_scalar("bce loss", dev_double(dl), loss, 1e-5);
    expect("bce grad", GR.host(), grad, 1e-5);
    mse_loss(&loss, grad.data(), x.data(), t.data(), cnt, Reduction::Mean, 2.f);
    vc::mse_loss(dl, GR.p(), X.p(), T.p(), cnt, Reduction::Mean, 2.f, S);
    expect_scalar("mse loss", dev_double(dl), loss, 1e-5);
    expect("mse grad", GR.host(), grad, 1e-5);
    l1_loss(&loss, grad.data(), x.data(), t.data(), cnt, Reduction::Sum, 1.f);
    vc::l1_loss(dl, GR.p(), X.p(), T.p(), cnt, Reduction::Sum, 1.f, S);
    expect_scalar("l1 loss", dev_double(dl), loss, 1e-5);
    expect("l1 grad", GR.host(), grad, 0);
  }

  // KL, reparameterization (same Philox stream as the CPU), Adam
  {
    const int n = 5, l = 37;
    auto mu = rnd(size_t(n) * l, 17), lv = rnd(size_t(n) * l, 18, -2, 1), dz = rnd(size_t(n) * l, 19);
    std::vector<float> per(static_cast<size_t>(n)), dmu(size_t(n) * l, 0.f), dlv(size_t(n) * l, 0.f), z(size_t(n) * l), eps(size_t(n) * l);
    double loss = 0;
    kl_normal(&loss, per.data(), dmu.data(), dlv.data(), mu.data(), lv.data(), n, l, Reduction::Sum, 0.5f);
    Dev MU(mu), LV(lv), DZ(dz), PER(static_cast<size_t>(n)), DMU(dmu.size()), DLV(dlv.size()), Z(z.size()), EPS(eps.size());
    vc::DeviceBufferPtr scal;
    vc::make_buffer(2, &scal, S);
    vc::kl_normal(reinterpret_cast<double*>(scal->ptr), PER.p(), DMU.p(), DLV.p(), MU.p(), LV.p(), n, l, Reduction::Sum, 0.5f, S);
    expect_scalar("kl_normal loss", dev_double(reinterpret_cast<double*>(scal->ptr)), loss, 1e-5);
    expect("kl_normal dmu", DMU.host(), dmu, 1e-5);
    expect("kl_normal dlogvar", DLV.host(), dlv, 1e-5);
    reparameterize_forward(z.data(), eps.data(), mu.data(), lv.data(), n, l, LatentMode::Sample, 1234, 56);
    vc::reparameterize_forward(Z.p(), EPS.p(), MU.p(), LV.p(), n, l, LatentMode::Sample, 1234, 56, S);
    auto ge = EPS.host();
    int same = 0;
    for (size_t i = 0; i < eps.size(); ++i) same += std::memcmp(&ge[i], &eps[i], 4) == 0;
    std::printf("     reparameterize eps: %d / %zu bit-identical to the CPU stream\n", same, eps.size());
    expect("reparameterize eps (same Philox stream)", ge, eps, 1e-6);
    expect("reparameterize z", Z.host(), z, 1e-6);
    reparameterize_backward(dmu.data(), dlv.data(), dz.data(), eps.data(), lv.data(), n, l);
    vc::reparameterize_backward(DMU.p(), DLV.p(), DZ.p(), EPS.p(), LV.p(), n, l, S);
    expect("reparameterize dmu", DMU.host(), dmu, 1e-5);
    expect("reparameterize dlogvar", DLV.host(), dlv, 1e-5);

    const int64_t np = 10007;
    auto p = rnd(size_t(np), 20), g = rnd(size_t(np), 21);
    std::vector<float> m(size_t(np), 0.f), v(size_t(np), 0.f);
    Dev P(p), G(g), M(static_cast<size_t>(np)), V(static_cast<size_t>(np));
    AdamOptions a;
    a.lr = 1e-3f; a.weightDecay = 0.01f; a.kind = vx::AdamKind::AdamW;
    for (int step = 1; step <= 3; ++step) {
      adam_step(p.data(), m.data(), v.data(), g.data(), np, a, step);
      vc::adam_step(P.p(), M.p(), V.p(), G.p(), np, a, step, S);
    }
    expect("adamw 3 steps param", P.host(), p, 1e-6);
    expect("adamw 3 steps v", V.host(), v, 1e-5);
  }

  // Whole network: forward (train), backward, one Adam step, from the same weights and batch.
  {
    const char* spec =
        "input c=1 d=8 h=8 w=8\n"
        "conv3d in=0 cout=4 k=3 s=2 p=1 bias=1\n"
        "batch_norm3d in=1\n"
        "prelu in=2 n=1\n"
        "conv3d in=3 cout=8 k=3 s=2 p=1\n"
        "instance_norm3d in=4 affine=1\n"
        "leaky_relu in=5 slope=0.01\n"
        "flatten in=6\n"
        "linear in=7 out=16\n"
        "reshape in=8 c=2 d=2 h=2 w=2\n"
        "conv_transpose3d in=9 cout=3 k=3 s=2 p=1 op=1\n"
        "dropout in=10 rate=0.2\n"
        "add in=11,10\n"
        "output 12\n";
    std::unique_ptr<Net> cpu;
    std::unique_ptr<vc::NetCuda> gpu;
    if (Net::create(spec, &cpu) != Status::Ok || vc::NetCuda::create(spec, &gpu) != Status::Ok) {
      std::printf("FAIL net create: %s\n", last_error());
      return 1;
    }
    cpu->init_params(7);
    gpu->init_params(7);
    C->options().tf32 = false;
    const int batch = 3;
    auto x = rnd(size_t(batch) * 512, 22);
    auto xb = std::make_shared<Buffer>(x);
    Dev X(x);
    if (cpu->forward(xb, batch, true, 9, 4) != Status::Ok || gpu->forward(X.b, batch, true, 9, 4) != Status::Ok) {
      std::printf("FAIL net forward: %s\n", last_error());
      return 1;
    }
    std::vector<float> out_gpu(size_t(gpu->output(0)->count));
    gpu->sync("net forward");  // the network runs on a stream of its own
    cudaMemcpy(out_gpu.data(), gpu->output(0)->ptr, out_gpu.size() * 4, cudaMemcpyDeviceToHost);
    expect("net forward (fp32)", out_gpu, *cpu->output(0), 1e-5);
    auto dy = rnd(out_gpu.size(), 23);
    Dev DY(dy);
    cpu->backward({dy.data()}, true);
    gpu->backward({DY.p()}, true);
    gpu->download_grads();
    expect("net param grads (fp32)", std::vector<float>(gpu->host().grads(), gpu->host().grads() + gpu->num_params()),
           std::vector<float>(cpu->grads(), cpu->grads() + cpu->num_params()), 1e-5);
    std::vector<float> m(size_t(cpu->num_params()), 0.f), v = m;
    Dev M(m.size()), V(v.size());
    AdamOptions a;
    adam_step(cpu->params(), m.data(), v.data(), cpu->grads(), cpu->num_params(), a, 1);
    C->after_shared(gpu->stream(), "test: M, V zeroed on the shared stream");
    vc::adam_step(gpu->params(), M.p(), V.p(), gpu->grads(), gpu->num_params(), a, 1, gpu->stream());
    gpu->download_params();
    expect("net params after Adam (fp32)", std::vector<float>(gpu->host().params(), gpu->host().params() + gpu->num_params()),
           std::vector<float>(cpu->params(), cpu->params() + cpu->num_params()), 1e-5);
    // Deterministic mode: the same step twice gives bit-identical gradients.
    C->options().deterministic = true;
    std::vector<float> g1, g2;
    for (int rep = 0; rep < 2; ++rep) {
      gpu->zero_grad();
      gpu->forward(X.b, batch, true, 9, 4);
      gpu->backward({DY.p()}, false);
      gpu->download_grads();
      (rep ? g2 : g1).assign(gpu->host().grads(), gpu->host().grads() + gpu->num_params());
    }
    ++g_checks;
    const bool same = std::memcmp(g1.data(), g2.data(), g1.size() * 4) == 0;
    if (!same) ++g_fail;
    std::printf("%-4s deterministic mode: repeated step bit-identical\n", same ? "ok" : "FAIL");
    // Two networks on their own streams, driven from two host threads at once, give the same gradients
    // bit for bit as one after the other (still deterministic mode).
    {
      std::unique_ptr<vc::NetCuda> a1, a2;
      vc::NetCuda::create(spec, &a1);
      vc::NetCuda::create(spec, &a2);
      const bool distinct = a1 && a2 && a1->stream() != a2->stream() && a1->stream() != S;
      std::vector<float> seq1, seq2, par1, par2;
      auto step = [&](vc::NetCuda& n, uint64_t seed, std::vector<float>* out) {
        n.init_params(seed);
        n.zero_grad();
        n.forward(X.b, batch, true, 9, 4);
        n.backward({DY.p()}, false);
        n.download_grads();
        out->assign(n.host().grads(), n.host().grads() + n.num_params());
      };
      if (distinct) {
        step(*a1, 7, &seq1);
        step(*a2, 8, &seq2);
        std::thread t1([&] { step(*a1, 7, &par1); });
        std::thread t2([&] { step(*a2, 8, &par2); });
        t1.join();
        t2.join();
      }
      ++g_checks;
      const bool ok = distinct && par1 == seq1 && par2 == seq2 && seq1 != seq2;
      if (!ok) ++g_fail;
      std::printf("%-4s two networks on their own streams, concurrently: same gradients as one after the other\n", ok ? "ok" : "FAIL");
    }
    C->options().deterministic = false;
  }

  // Wrong shapes are rejected before any kernel runs; out of memory is a typed, recoverable error.
  {
    Conv3dShape bad = cs(1, 1, 1, 2, 2, 2, 5, 1, 0);
    bad.od = bad.oh = bad.ow = 1;
    ++g_checks;
    const bool rejected = vc::conv3d_forward(*C, nullptr, nullptr, nullptr, nullptr, bad, S) == Status::InvalidArgument;
    if (!rejected) ++g_fail;
    std::printf("%-4s bad conv shape rejected: %s\n", rejected ? "ok" : "FAIL", last_error());
    vc::DeviceBufferPtr huge;
    const Status s = vc::make_buffer(int64_t(1) << 40, &huge, S);  // 4 TiB
    vc::DeviceBufferPtr small;
    const Status s2 = vc::make_buffer(1 << 20, &small, S);
    ++g_checks;
    const bool oom_ok = s == Status::OutOfMemory && s2 == Status::Ok;
    if (!oom_ok) ++g_fail;
    std::printf("%-4s out of memory -> OutOfMemory, then a smaller allocation succeeds\n", oom_ok ? "ok" : "FAIL");
  }

  const auto st = vc::DeviceAllocator::get().stats();
  std::printf("\n%d checks, %d failed; allocator: %lld cudaMalloc for %lld requests, peak %.1f MiB, %d cuDNN plans\n", g_checks,
              g_fail, (long long)st.device_mallocs, (long long)st.requests, double(st.peak) / 1048576.0, vc::cudnn_plan_count());
  return g_fail ? 1 : 0;
}
