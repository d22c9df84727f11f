// Minimal test harness for the native ctest executables: TEST(name) { ... } blocks, CHECK macros,
// and helpers shared by the op tests (finite differences in double, relative-error comparison).
// Each test_*.cpp file is one executable; it ends with VX_TEST_MAIN().
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "vmath.h"

namespace vxtest {

struct Case {
  const char* name;
  void (*fn)();
};
inline std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* n, void (*f)()) { registry().push_back({n, f}); }
};

// Max over i of |a - b| / max(|b|, floor): the relative error used by every comparison.
template <class A, class B>
double max_rel_err(const A* a, const B* b, size_t n, double floor = 1e-3) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(b[i])) / std::fmax(std::fabs(double(b[i])), floor);
    if (std::isnan(d)) return INFINITY;  // NaN anywhere is a failure, whatever follows
    if (d > worst) worst = d;
  }
  return worst;
}

// Deterministic pseudo-random doubles in [lo, hi) (a fixed LCG: tests do not depend on libc rand).
inline std::vector<double> random_vec(size_t n, unsigned seed, double lo = -1, double hi = 1) {
  std::vector<double> v(n);
  unsigned long long s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * double(s >> 11) / double(1ULL << 53);
  }
  return v;
}

template <class T>
std::vector<T> cast_vec(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Runs fn(first) under each vmath.h vector ISA this CPU has (x86-64: "avx2", then the baseline "sse2";
// elsewhere the one portable build), first = true for the first, then restores the automatic choice.
// The ISA must never change a result: callers compare the bits of every run with the first's.
template <class Fn>
void with_isas(const Fn& fn) {
  bool first = true;
  for (const char* isa : {"avx2", "sse2"})
    if (vx::vm::select_isa(isa)) {
      fn(first);
      first = false;
    }
  vx::vm::select_isa(nullptr);
  if (first) fn(true);
}

// Central finite differences of a scalar function f(x) in double: returns df/dx_i for every i.
inline std::vector<double> finite_diff(std::vector<double> x, const std::function<double(const std::vector<double>&)>& f,
                                       double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double xi = x[i];
    x[i] = xi + h;
    double fp = f(x);
    x[i] = xi - h;
    double fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

}  // namespace vxtest

#define VX_CAT2(a, b) a##b
#define VX_CAT(a, b) VX_CAT2(a, b)
#define TEST(name)                                                   \
  static void name();                                                \
  static vxtest::Register VX_CAT(reg_, name)(#name, &name);          \
  static void name()

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
      ++vxtest::failures();                                                              \
    }                                                                                    \
  } while (0)

// CHECK_REL(actual, expected, n, tol): max relative error (floor 1e-3 on |expected|) <= tol.
#define CHECK_REL(a, b, n, tol)                                                                  \
  do {                                                                                           \
    double vx_e_ = vxtest::max_rel_err((a), (b), (n));                                           \
    if (!(vx_e_ <= (tol))) {                                                                     \
      std::fprintf(stderr, "%s:%d: CHECK_REL failed: %s vs %s: max rel err %.3g > %.3g\n",       \
                   __FILE__, __LINE__, #a, #b, vx_e_, double(tol));                              \
      ++vxtest::failures();                                                                      \
    }                                                                                            \
  } while (0)

#define VX_TEST_MAIN()                                                                   \
  int main() {                                                                           \
    int passed = 0, failed = 0;                                                          \
    for (auto& c : vxtest::registry()) {                                                 \
      int before = vxtest::failures();                                                   \
      c.fn();                                                                            \
      bool ok = vxtest::failures() == before;                                            \
      std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);                              \
      (ok ? passed : failed)++;                                                          \
    }                                                                                    \
    std::printf("%d passed, %d failed\n", passed, failed);                               \
    return failed == 0 ? 0 : 1;                                                          \
  }
