// benchmarks/sgemm_libs.cpp - OpenBLAS's cblas_sgemm and oneDNN's dnnl_sgemm on the paper config's
// products (B = 8 contigs x 30 genes: 240 rows), interleaved: each repetition runs one product of
// each library in turn and each keeps its fastest, so both see the same machine state (this
// machine's speed drifts by +-30% within minutes). Both libraries' own threading, as a caller
// would get it: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS. Built when genlm finds both libraries.
//   OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 genlm_sgemm_libs [repetitions (default 30)]
// docs/PERFORMANCE.md (fourth session) has its output; it is why genlm::cpu uses oneDNN.
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 30;
  struct shape {
    const char* name;
    bool ta, tb;
    int m, n, k;
  };
  // row-major C(m, n) = op(A) op(B): the forward's x W^T, the backward's dy W (dx) and dy^T x (dW)
  const shape shapes[] = {{"fwd q/k/v/o 240x1280x1280 NT", false, true, 240, 1280, 1280},
                          {"fwd FFN in 240x3072x1280 NT", false, true, 240, 3072, 1280},
                          {"fwd FFN out 240x1280x3072 NT", false, true, 240, 1280, 3072},
                          {"dx q/k/v/o 240x1280x1280 NN", false, false, 240, 1280, 1280},
                          {"dx FFN in 240x1280x3072 NN", false, false, 240, 1280, 3072},
                          {"dx FFN out 240x3072x1280 NN", false, false, 240, 3072, 1280},
                          {"dW q/k/v/o 1280x1280x240 TN", true, false, 1280, 1280, 240},
                          {"dW FFN in 3072x1280x240 TN", true, false, 3072, 1280, 240},
                          {"attention Q E^T 2400x59x128 NT", false, true, 2400, 59, 128},
                          {"small config 240x512x128 NT", false, true, 240, 512, 128},
                          {"attention Q K^T 30x30x128 NT", false, true, 30, 30, 128},
                          {"attention A V 30x128x30 NN", false, false, 30, 128, 30},
                          {"square 2048^3 NN", false, false, 2048, 2048, 2048}};
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  using clock = std::chrono::steady_clock;
  std::printf("%-32s %10s %10s %8s %10s\n", "product (GFLOP/s, best of each)", "OpenBLAS", "oneDNN", "ratio",
              "max |diff|");
  for (const auto& s : shapes) {
    const int ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
    std::vector<float> A(std::size_t(ar) * ac), B(std::size_t(br) * bc), C1(std::size_t(s.m) * s.n),
        C2(C1.size());
    for (auto& x : A) x = normal(gen);
    for (auto& x : B) x = normal(gen);
    const double flop = 2.0 * s.m * s.n * s.k;
    const int r = std::max(3, flop > 1e10 ? reps / 5 : (flop < 1e6 ? reps * 20 : reps));
    double t_blas = 1e30, t_dnnl = 1e30;
    for (int i = 0; i < r; ++i) {
      auto t0 = clock::now();
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                  1.f, A.data(), ac, B.data(), bc, 0.f, C1.data(), s.n);
      t_blas = std::min(t_blas, std::chrono::duration<double>(clock::now() - t0).count());
      t0 = clock::now();
      if (dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.f, A.data(), ac, B.data(), bc, 0.f,
                     C2.data(), s.n) != dnnl_success) {
        std::fprintf(stderr, "dnnl_sgemm failed for %s\n", s.name);
        return 1;
      }
      t_dnnl = std::min(t_dnnl, std::chrono::duration<double>(clock::now() - t0).count());
    }
    double diff = 0;
    for (std::size_t i = 0; i < C1.size(); ++i) diff = std::max(diff, double(std::abs(C1[i] - C2[i])));
    std::printf("%-32s %10.1f %10.1f %7.2fx %10.1e\n", s.name, flop / t_blas * 1e-9, flop / t_dnnl * 1e-9,
                t_blas / t_dnnl, diff);
  }
  return 0;
}
