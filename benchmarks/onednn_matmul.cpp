// benchmarks/onednn_matmul.cpp - oneDNN's sgemm (what genlm::cpu calls) against oneDNN's matmul
// primitive (brgemm kernels) on the paper config's products, interleaved as genlm_sgemm_libs:
// each repetition runs dnnl_sgemm, the primitive on the plain row-major operands, and (forward NT
// products only) the primitive on weights reordered once into its own blocked layout - what an
// inference-only weight cache would give. Best of the repetitions each. OMP_NUM_THREADS sets
// oneDNN's threads. docs/PERFORMANCE.md (fifth session) has its output.
// A second table (eleventh session) times the forward's x W^T products in column pieces, as
// cpu::dnnl_gemm splits them over threads (C's row stride wider than the piece): dnnl_sgemm, the
// primitive writing the strided piece directly (oneDNN then picks "gemm:jit", the sgemm kernel),
// and genlm's path (cpu_detail::onednn_matmul_nt: the primitive on a dense scratch block, copied
// out). One thread; why genlm sends x W^T to the primitive.
//   OMP_NUM_THREADS=1 genlm_onednn_matmul [repetitions (default 30)]
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <genlm/backend/cpu_onednn.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  using namespace dnnl;
  using dt = memory::data_type;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 30;
  struct shape {
    const char* name;
    bool ta, tb;
    long m, n, k;
    float beta;
  };
  // row-major C(m, n) = op(A) op(B) + beta C, as genlm::cpu calls them in a training step
  const shape shapes[] = {{"fwd q/k/v/o 240x1280x1280 NT", false, true, 240, 1280, 1280, 0},
                          {"fwd FFN in 240x3072x1280 NT", false, true, 240, 3072, 1280, 0},
                          {"fwd FFN out 240x1280x3072 NT", false, true, 240, 1280, 3072, 0},
                          {"dx q/k/v/o 240x1280x1280 NN +C", false, false, 240, 1280, 1280, 1},
                          {"dx FFN in 240x1280x3072 NN +C", false, false, 240, 1280, 3072, 1},
                          {"dx FFN out 240x3072x1280 NN +C", false, false, 240, 3072, 1280, 1},
                          {"dW q/k/v/o 1280x1280x240 TN", true, false, 1280, 1280, 240, 0},
                          {"dW FFN in 3072x1280x240 TN", true, false, 3072, 1280, 240, 0},
                          {"attention Q E^T 2400x59x128 NT", false, true, 2400, 59, 128, 0}};
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf("%-32s %9s %9s %9s %7s %7s %10s\n", "product (GFLOP/s, best of each)", "sgemm", "matmul", "packed",
              "mm/sg", "pk/sg", "max diff");
  for (const auto& s : shapes) {
    const long lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n, ldc = s.n;
    std::vector<float> A(std::size_t(s.m * s.k)), B(std::size_t(s.k * s.n)), C0(std::size_t(s.m * s.n)), C1, C2;
    std::mt19937 gen(1);
    std::normal_distribution<float> nd;
    for (auto& x : A) x = nd(gen);
    for (auto& x : B) x = 0.05f * nd(gen);
    for (auto& x : C0) x = nd(gen);
    std::vector<float> Cs = C0, Cm = C0, Cp = C0;
    const memory::desc ad({s.m, s.k}, dt::f32, s.ta ? memory::dims{1, lda} : memory::dims{lda, 1});
    const memory::desc bd({s.k, s.n}, dt::f32, s.tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    const memory::desc cd({s.m, s.n}, dt::f32, memory::dims{ldc, 1});
    primitive_attr attr;
    if (s.beta != 0) {
      post_ops po;
      po.append_sum(s.beta);
      attr.set_post_ops(po);
    }
    const matmul::primitive_desc pd(matmul::desc(ad, bd, cd), attr, eng);
    const matmul prim(pd);
    memory am(ad, eng, A.data()), bm(bd, eng, B.data()), cm(cd, eng, Cm.data()), cp(cd, eng, Cp.data());
    const bool packed = !s.ta && s.tb && s.beta == 0;
    const memory::desc bany({s.k, s.n}, dt::f32, memory::format_tag::any);
    matmul::primitive_desc ppd;
    matmul pprim;
    memory bpk;
    if (packed) {
      ppd = matmul::primitive_desc(matmul::desc(ad, bany, cd), attr, eng);
      pprim = matmul(ppd);
      bpk = memory(ppd.weights_desc(), eng);
      reorder(bm, bpk).execute(strm, bm, bpk);
      strm.wait();
    }
    double best[3] = {1e30, 1e30, 1e30};
    for (int r = 0; r < reps; ++r) {
      auto t0 = now();
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb, s.beta,
                 Cs.data(), ldc);
      best[0] = std::min(best[0], sec(t0, now()));
      t0 = now();
      prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      strm.wait();
      best[1] = std::min(best[1], sec(t0, now()));
      if (packed) {
        t0 = now();
        pprim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bpk}, {DNNL_ARG_DST, cp}});
        strm.wait();
        best[2] = std::min(best[2], sec(t0, now()));
      }
    }
    // One more call of each from the same C: the three results agree to float32 summation order.
    Cs = C0, Cm = C0;
    dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb, s.beta,
               Cs.data(), ldc);
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    strm.wait();
    float diff = 0;
    for (std::size_t i = 0; i < Cs.size(); ++i) diff = std::max(diff, std::abs(Cs[i] - Cm[i]));
    const double gf = 2.0 * double(s.m) * double(s.n) * double(s.k) / 1e9;
    if (packed)
      std::printf("%-32s %9.1f %9.1f %9.1f %6.2fx %6.2fx %10.1e\n", s.name, gf / best[0], gf / best[1], gf / best[2],
                  best[0] / best[1], best[0] / best[2], double(diff));
    else
      std::printf("%-32s %9.1f %9.1f %9s %6.2fx %7s %10.1e\n", s.name, gf / best[0], gf / best[1], "-",
                  best[0] / best[1], "-", double(diff));
  }
  // x W^T in column pieces of C (ldc = n), one thread, interleaved, best of each.
  std::printf("\n%-32s %6s %9s %9s %9s %7s\n", "x W^T in pieces (GFLOP/s)", "piece", "sgemm", "strided", "genlm",
              "gl/sg");
  struct piece_shape {
    const char* name;
    long m, n, k;
  };
  const piece_shape ps[] = {{"fwd q/k/v/o 240x1280x1280", 240, 1280, 1280},
                            {"fwd FFN in 240x3072x1280", 240, 3072, 1280},
                            {"fwd FFN out 240x1280x3072", 240, 1280, 3072}};
  for (const auto& s : ps)
    for (const long piece : {s.n, s.n / 2, 512L, 128L}) {
      std::vector<float> A(std::size_t(s.m * s.k)), B(std::size_t(s.n * s.k)), C(std::size_t(s.m * s.n));
      std::mt19937 gen(2);
      std::normal_distribution<float> nd;
      for (auto& x : A) x = nd(gen);
      for (auto& x : B) x = 0.05f * nd(gen);
      // the primitive on a strided piece (dst row stride n), built once per piece width
      std::vector<matmul> prims;
      std::vector<long> widths;
      for (long j0 = 0; j0 < s.n; j0 += piece) {
        const long w = std::min(piece, s.n - j0);
        if (std::find(widths.begin(), widths.end(), w) != widths.end()) continue;
        const memory::desc ad({s.m, s.k}, dt::f32, memory::dims{s.k, 1});
        const memory::desc bd({s.k, w}, dt::f32, memory::dims{1, s.k});
        const memory::desc cd({s.m, w}, dt::f32, memory::dims{s.n, 1});
        prims.emplace_back(matmul::primitive_desc(matmul::desc(ad, bd, cd), eng));
        widths.push_back(w);
      }
      double best[3] = {1e30, 1e30, 1e30};
      for (int r = 0; r < reps; ++r)
        for (int v = 0; v < 3; ++v) {
          const auto t0 = now();
          for (long j0 = 0; j0 < s.n; j0 += piece) {
            const long w = std::min(piece, s.n - j0);
            const float* Bp = B.data() + j0 * s.k;
            float* Cp = C.data() + j0;
            if (v == 0) {
              dnnl_sgemm('N', 'T', s.m, w, s.k, 1.0f, A.data(), s.k, Bp, s.k, 0.0f, Cp, s.n);
            } else if (v == 1) {
              const auto i = std::size_t(std::find(widths.begin(), widths.end(), w) - widths.begin());
              const memory::desc ad({s.m, s.k}, dt::f32, memory::dims{s.k, 1});
              const memory::desc bd({s.k, w}, dt::f32, memory::dims{1, s.k});
              const memory::desc cd({s.m, w}, dt::f32, memory::dims{s.n, 1});
              memory am(ad, eng, A.data()), bm(bd, eng, const_cast<float*>(Bp)), cm(cd, eng, Cp);
              prims[i].execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
              strm.wait();
            } else {
              genlm::cpu_detail::onednn_matmul_nt(s.m, w, s.k, 1.0f, A.data(), s.k, Bp, s.k, 0.0f, Cp, s.n);
            }
          }
          best[v] = std::min(best[v], sec(t0, now()));
        }
      const double gf = 2.0 * double(s.m) * double(s.n) * double(s.k) / 1e9;
      std::printf("%-32s %6ld %9.1f %9.1f %9.1f %6.2fx\n", s.name, piece, gf / best[0], gf / best[1], gf / best[2],
                  best[0] / best[2]);
    }
  return 0;
}
