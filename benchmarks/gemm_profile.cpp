// benchmarks/gemm_profile.cpp - libgenlm_gemm_profile.so, an LD_PRELOAD wrapper that times every
// product genlm hands to oneDNN (dnnl_sgemm) and OpenBLAS (cblas_sgemm / cblas_dgemm) in a real
// run, grouped by library, transposes, shape and beta, and prints the table to stderr at exit:
// where a step's product time goes and at what rate each shape runs in place (operands as the
// model leaves them in cache, not a benchmark's warm loop).
//   LD_PRELOAD=build-perf/benchmarks/libgenlm_gemm_profile.so build-perf/benchmarks/genlm_train_phases 3 1
//   scripts/bench.sh profile 3 1        (the same)
// With several threads each thread's block of a split product is its own call (its own shape).
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <cblas.h>
#if defined(GENLM_USE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#endif

namespace {

using key_t = std::tuple<std::string, char, char, long, long, long, double>;  // lib, ta, tb, m, n, k, beta
struct totals {
  double seconds = 0;
  long calls = 0;
};

struct profile {
  std::mutex mu;
  std::map<key_t, totals> rows;
  void add(key_t k, double s) {
    std::lock_guard<std::mutex> lock(mu);
    auto& t = rows[k];
    t.seconds += s;
    ++t.calls;
  }
  ~profile() {
    std::vector<std::pair<key_t, totals>> v(rows.begin(), rows.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
    double all = 0;
    for (auto& r : v) all += r.second.seconds;
    std::fprintf(stderr, "gemm profile (%.3f s in products):\n%-8s %-2s %21s %6s %7s %9s %6s %8s\n", all, "library",
                 "op", "m x n x k", "beta", "calls", "seconds", "share", "GFLOP/s");
    for (auto& [k, t] : v) {
      const auto& [lib, ta, tb, m, n, kk, beta] = k;
      const double flop = 2.0 * double(m) * double(n) * double(kk) * double(t.calls);
      std::fprintf(stderr, "%-8s %c%c %6ld x %5ld x %5ld %6g %7ld %9.3f %5.1f%% %8.1f\n", lib.c_str(), ta, tb, m, n, kk,
                   beta, t.calls, t.seconds, 100.0 * t.seconds / (all > 0 ? all : 1), flop / t.seconds / 1e9);
    }
  }
};
profile& prof() {
  static profile p;  // prints its table when destroyed at exit
  return p;
}

template <class F>
F next(const char* name) {
  auto f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
  if (!f) {
    std::fprintf(stderr, "libgenlm_gemm_profile: %s not found after this library (%s)\n", name, dlerror());
    std::abort();
  }
  return f;
}
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
char tr(CBLAS_TRANSPOSE t) { return t == CblasNoTrans ? 'N' : 'T'; }
/// Calls the library's own function and books its time under `k` (void or not).
template <class F, class... A>
auto timed(const key_t& k, F real, A... a) {
  struct booking {
    const key_t& k;
    double t0 = now();
    ~booking() { prof().add(k, now() - t0); }
  } b{k};
  return real(a...);
}

}  // namespace

extern "C" {

void cblas_sgemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
                 const float* A, blasint lda, const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  static auto real = next<decltype(&cblas_sgemm)>("cblas_sgemm");
  timed({"openblas", tr(ta), tr(tb), m, n, k, beta}, real, o, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void cblas_dgemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
                 const double* A, blasint lda, const double* B, blasint ldb, double beta, double* C, blasint ldc) {
  static auto real = next<decltype(&cblas_dgemm)>("cblas_dgemm");
  timed({"openblas", tr(ta), tr(tb), m, n, k, beta}, real, o, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
#if defined(GENLM_USE_DNNL)
dnnl_status_t dnnl_sgemm(char ta, char tb, dnnl_dim_t m, dnnl_dim_t n, dnnl_dim_t k, float alpha, const float* A,
                         dnnl_dim_t lda, const float* B, dnnl_dim_t ldb, float beta, float* C, dnnl_dim_t ldc) {
  static auto real = next<decltype(&dnnl_sgemm)>("dnnl_sgemm");
  return timed({"onednn", ta, tb, long(m), long(n), long(k), beta}, real, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta,
               C, ldc);
}
#endif
}
