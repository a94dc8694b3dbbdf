// benchmarks/experiments/own_sgemm.cpp - an experiment kept only in the history (see
// docs/PERFORMANCE.md): genlm's own AVX-512 sgemm (cpu_sgemm.hpp, 12x32 register tile, Goto/BLIS
// blocking) against OpenBLAS and Eigen (compiled like the library: no -march, i.e. SSE2) on the
// products of configs::paper and configs::small, 1 thread, best of 5 rounds. Checks the kernel
// against a double reference first. Build and run (from the repository root at the commit that
// has this file):
//   clang++ -std=c++20 -O3 -Iinclude -I/usr/include/eigen3 -I/usr/include/x86_64-linux-gnu/openblas-pthread \
//     benchmarks/experiments/own_sgemm.cpp -o /tmp/own_sgemm -lopenblas && OPENBLAS_NUM_THREADS=1 /tmp/own_sgemm
#include <cblas.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <vector>

#include <genlm/backend/cpu_sgemm.hpp>

using namespace genlm;
using Mat = Eigen::Matrix<float, -1, -1, Eigen::RowMajor>;

namespace {
const auto serial = [](index_t, int, index_t, auto&&) {};  // threads = 1: never called

int check() {
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  int bad = 0;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (auto [m, n, k] : {std::tuple{1, 1, 1}, {13, 33, 17}, {24, 64, 300}, {37, 70, 513}, {240, 1280, 1281}, {7, 100, 33}})
        for (float beta : {0.0f, 0.5f}) {
          const index_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
          std::vector<float> A(std::size_t((ta ? k : m) * lda)), B(std::size_t((tb ? n : k) * ldb)), C(std::size_t(m * ldc));
          for (auto* v : {&A, &B, &C})
            for (auto& x : *v) x = nd(g);
          const auto C0 = C;
          cpu_detail::sgemm::gemm(ta, tb, m, n, k, 0.7f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc, 1, serial);
          double err = 0;
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j) {
              double s = 0, sa = 0;
              for (int p = 0; p < k; ++p) {
                const double a = ta ? A[p * lda + i] : A[i * lda + p], b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
                sa += std::abs(a * b);
              }
              err = std::max(err, std::abs(0.7 * s + beta * C0[i * ldc + j] - C[i * ldc + j]) / (sa + 1));
            }
          if (err > 1e-5) ++bad;
        }
  return bad;
}
}  // namespace

int main() {
  std::printf("own sgemm vs double reference: %d wrong of 96 cases\n", check());
  struct S {
    const char* name;
    bool ta, tb;
    int m, n, k;
  };
  const S shapes[] = {{"paper fwd qkvo", 0, 1, 240, 1280, 1280}, {"paper fwd ffn_in", 0, 1, 240, 3072, 1280},
                      {"paper fwd ffn_out", 0, 1, 240, 1280, 3072}, {"paper dW qkvo", 1, 0, 1280, 1280, 240},
                      {"paper dW ffn_in", 1, 0, 3072, 1280, 240}, {"paper dx qkvo", 0, 0, 240, 1280, 1280},
                      {"paper dx ffn_in", 0, 0, 240, 1280, 3072}, {"small fwd 128x128", 0, 1, 240, 128, 128},
                      {"small fwd 128->512", 0, 1, 240, 512, 128}, {"small dx 512->128", 0, 0, 240, 512, 128},
                      {"attn QK^T 30x30x32", 0, 1, 30, 30, 32}, {"attn AV 30x32x30", 0, 0, 30, 32, 30},
                      {"attn QE^T 960x59x32", 0, 1, 960, 59, 32}, {"tiny 4x4x4", 0, 0, 4, 4, 4},
                      {"tiny 16x16x16", 0, 0, 16, 16, 16}};
  for (const auto& s : shapes) {
    std::vector<float> A(std::size_t(s.m) * s.k, 0.01f), B(std::size_t(s.k) * s.n, 0.01f), C(std::size_t(s.m) * s.n);
    const index_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    const int reps = 20000000 / (s.m * s.n * s.k) + 3;
    double best[3] = {1e9, 1e9, 1e9};
    for (int round = 0; round < 5; ++round) {
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r)
        cpu_detail::sgemm::gemm(s.ta, s.tb, s.m, s.n, s.k, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), s.n, 1, serial);
      auto t1 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r)
        cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.f,
                    A.data(), int(lda), B.data(), int(ldb), 0.f, C.data(), s.n);
      auto t2 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) {
        Eigen::Map<Mat> Cm(C.data(), s.m, s.n);
        Eigen::Map<const Mat> Am(A.data(), s.ta ? s.k : s.m, s.ta ? s.m : s.k), Bm(B.data(), s.tb ? s.n : s.k, s.tb ? s.k : s.n);
        if (s.tb)
          Cm.noalias() = Am * Bm.transpose();
        else if (s.ta)
          Cm.noalias() = Am.transpose() * Bm;
        else
          Cm.noalias() = Am * Bm;
      }
      auto t3 = std::chrono::steady_clock::now();
      const double d[3] = {std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count(),
                           std::chrono::duration<double>(t3 - t2).count()};
      for (int i = 0; i < 3; ++i) best[i] = std::min(best[i], d[i] / reps);
    }
    const double f = 2.0 * s.m * s.n * s.k / 1e9;
    std::printf("%-20s own %6.1f  OpenBLAS %6.1f  Eigen %6.1f GFLOP/s\n", s.name, f / best[0], f / best[1], f / best[2]);
  }
}
