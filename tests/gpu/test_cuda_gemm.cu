// GEMM parity of the CUDA backend with genlm::cpu: gemm and gemm_strided_batched in float (1e-5)
// and double (1e-12) for every transpose combination, alpha/beta, k = 0, padded leading dimensions
// and shared (stride 0) batch operands; then the reduced-precision policies (tf32, bf16, fp16)
// against the exact float32 CPU product with thresholds derived from their unit roundoff.
//
// Measure: max|gpu - cpu| / max|cpu| over the whole C buffer (padding columns included: they must
// stay untouched; they hold NaN when beta == 0, which must also stay NaN and must not leak into C).
#include "parity.hpp"

using namespace gpu_parity;
using genlm::cpu;
// genlm::cuda under a short name: CUDA 13's libcu++ declares a global namespace ::cuda, so a
// using-declaration of genlm::cuda at namespace scope does not compile.
using cuda32 = genlm::cuda;

namespace {

struct gemm_case {
  index_t m, n, k, pad;  // pad: extra elements per stored row (lda/ldb/ldc larger than needed)
};

/// Runs C = alpha op(A) op(B) + beta C on cpu and on Gpu with the same data; returns the diff.
template <class Gpu, class T>
diff run_gemm(const gemm_case& g, bool ta, bool tb, double alpha, double beta, std::uint64_t seed, bool c_nan) {
  const index_t m = g.m, n = g.n, k = g.k;
  const index_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const index_t lda = std::max<index_t>(1, a_cols + g.pad), ldb = std::max<index_t>(1, b_cols + g.pad),
                ldc = n + g.pad;
  dual<T> A(randn<T>(std::size_t(std::max<index_t>(1, a_rows * lda)), seed));
  dual<T> B(randn<T>(std::size_t(std::max<index_t>(1, b_rows * ldb)), seed + 1));
  dual<T> C(c_nan ? nans<T>(std::size_t(m * ldc)) : randn<T>(std::size_t(m * ldc), seed + 2));
  on_both<Gpu>([&](auto t) {
    using Bk = typename decltype(t)::type;
    Bk::gemm(ta, tb, m, n, k, T(alpha), P<Bk>(A), lda, P<Bk>(B), ldb, T(beta), P<Bk>(C), ldc);
  });
  return compare(C.got(), C.ref());
}

template <class Gpu, class T>
diff run_batched(const gemm_case& g, index_t batch, bool ta, bool tb, bool share_a, bool share_b, double alpha,
                 double beta, std::uint64_t seed, bool c_nan) {
  const index_t m = g.m, n = g.n, k = g.k;
  const index_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const index_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = n + g.pad;
  const index_t gap = g.pad ? 5 : 0;  // unused elements between the matrices of a batch
  const index_t sa = share_a ? 0 : a_rows * lda + gap, sb = share_b ? 0 : b_rows * ldb + gap,
                sc = m * ldc + gap;
  dual<T> A(randn<T>(std::size_t(sa * (batch - 1) + a_rows * lda), seed));
  dual<T> B(randn<T>(std::size_t(sb * (batch - 1) + b_rows * ldb), seed + 1));
  const auto nc = std::size_t(sc * (batch - 1) + m * ldc);
  dual<T> C(c_nan ? nans<T>(nc) : randn<T>(nc, seed + 2));
  on_both<Gpu>([&](auto t) {
    using Bk = typename decltype(t)::type;
    Bk::gemm_strided_batched(ta, tb, m, n, k, T(alpha), P<Bk>(A), lda, sa, P<Bk>(B), ldb, sb, T(beta), P<Bk>(C), ldc,
                             sc, batch);
  });
  return compare(C.got(), C.ref());
}

#define CHECK_DIFF(what, d, tolerance)                                                                        \
  do {                                                                                                        \
    const ::gpu_parity::diff cd_ = (d);                                                                       \
    if (::gpu_parity::report_enabled())                                                                       \
      std::printf("[parity] %-60s rel %.3g (max abs %.3g, scale %.3g) tol %.1g\n", std::string(what).c_str(), \
                  cd_.rel, cd_.max_abs, cd_.scale, double(tolerance));                                        \
    INFO((what) << ": scale-relative error " << cd_.rel << " (max abs " << cd_.max_abs << ", scale " << cd_.scale \
                << "), tolerance " << (tolerance) << ", non-finite mismatches " << cd_.nonfinite);            \
    REQUIRE(cd_.size_ok);                                                                                     \
    CHECK(cd_.nonfinite == 0);                                                                                \
    CHECK(cd_.rel <= (tolerance));                                                                            \
  } while (0)

const std::vector<gemm_case> gemm_cases = {
    {1, 1, 1, 0},      {1, 37, 5, 3},     {33, 1, 65, 0},      {17, 31, 45, 3},
    {129, 67, 1280, 0}, {65, 300, 3072, 3}, {300, 1280, 33, 0}, {30, 8, 30, 2}};

struct ab {
  double alpha, beta;
  bool c_nan;
};
const std::vector<ab> alpha_beta = {{1.0, 0.0, true}, {0.75, 1.0, false}, {-1.3, 0.5, false}};

}  // namespace

TEMPLATE_TEST_CASE("gemm: all transposes, alpha/beta, padded leading dimensions", "[ops][gemm]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  std::uint64_t seed = 1;
  for (const auto& g : gemm_cases)
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const auto& s : alpha_beta) {
          CAPTURE(g.m, g.n, g.k, g.pad, ta, tb, s.alpha, s.beta);
          CHECK_DIFF("gemm", (run_gemm<cuda32, T>(g, ta, tb, s.alpha, s.beta, seed += 3, s.c_nan)), tol);
        }
}

TEMPLATE_TEST_CASE("gemm with k = 0 scales C by beta (and ignores C when beta = 0)", "[ops][gemm]", float, double) {
  using T = TestType;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      CAPTURE(ta, tb);
      CHECK_DIFF("gemm k=0 beta 0", (run_gemm<cuda32, T>({5, 7, 0, 2}, ta, tb, 1.0, 0.0, 400, true)), 0.0);
      CHECK_DIFF("gemm k=0 beta 0.5", (run_gemm<cuda32, T>({5, 7, 0, 2}, ta, tb, 1.0, 0.5, 401, false)), op_tol<T>());
    }
}

TEMPLATE_TEST_CASE("gemm_strided_batched, including shared (stride 0) operands", "[ops][gemm]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  struct b_case {
    gemm_case g;
    index_t batch;
  };
  const std::vector<b_case> cases = {{{1, 1, 1, 0}, 1},   {{30, 30, 8, 0}, 12}, {{30, 8, 30, 3}, 12},
                                     {{7, 5, 3, 1}, 33},  {{64, 64, 32, 0}, 4}, {{5, 130, 17, 2}, 3},
                                     {{1, 33, 129, 0}, 40}};
  std::uint64_t seed = 500;
  for (const auto& c : cases)
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const int share : {0, 1, 2})  // none, A shared, B shared
          for (const auto& s : {ab{1.0, 0.0, true}, ab{0.5, 1.0, false}}) {
            CAPTURE(c.g.m, c.g.n, c.g.k, c.g.pad, c.batch, ta, tb, share, s.alpha, s.beta);
            CHECK_DIFF("gemm_strided_batched",
                       (run_batched<cuda32, T>(c.g, c.batch, ta, tb, share == 1, share == 2, s.alpha, s.beta, seed += 3,
                                             s.c_nan)),
                       tol);
          }
}

// ---- reduced precision -----------------------------------------------------------------------
//
// tf32 / bf16 / fp16 round each GEMM input to a 10 / 7 / 10-bit mantissa (unit roundoff
// u = 2^-11 / 2^-8 / 2^-11; truncation instead of rounding doubles it) and accumulate in float32.
// Each product a_i b_i then carries a relative error of at most ~2u (both inputs rounded), so
//   |C_gpu - C_exact| <~ 2u sum_i |a_i b_i| (worst case, all errors of one sign)
// and for random N(0,1) inputs the errors are independent: their sum has a standard deviation of
// ~0.8 u sqrt(k), while the outputs have a standard deviation of sqrt(k). Relative to the output
// scale max|C| the error is therefore ~u, independent of k (both grow as sqrt(k)); a systematic
// truncation bias adds up to 2u. The threshold is 10 u of the output scale:
//   tf32 4.9e-3, bf16 3.9e-2, fp16 4.9e-3.
// Double GEMMs ignore the policy and stay at 1e-12; non-GEMM ops are unaffected.
namespace {
template <class Prec>
constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<Prec, genlm::precision::bf16>)
    return 1.0 / 256.0;  // 2^-8
  else if constexpr (std::is_same_v<Prec, genlm::precision::tf32> || std::is_same_v<Prec, genlm::precision::fp16>)
    return 1.0 / 2048.0;  // 2^-11
  else
    return 0.0;
}
}  // namespace

TEMPLATE_TEST_CASE("reduced-precision GEMMs stay within 10 unit roundoffs of the float32 product",
                   "[ops][gemm][reduced]", genlm::cuda_tf32, genlm::cuda_bf16, genlm::cuda_fp16) {
  using Gpu = TestType;
  using Prec = typename Gpu::precision;
  const double u = unit_roundoff<Prec>(), tol = 10 * u;
  REQUIRE(u > 0);
  double worst = 0;
  std::uint64_t seed = 900;
  const std::vector<gemm_case> cases = {{257, 131, 1280, 0}, {64, 3072, 1280, 3}, {3, 5, 3072, 0}, {31, 17, 33, 1},
                                        {120, 32, 33, 0}};
  for (const auto& g : cases)
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const auto& s : {ab{1.0, 0.0, true}, ab{0.5, 1.0, false}}) {
          CAPTURE(Prec::name, g.m, g.n, g.k, ta, tb, s.alpha, s.beta);
          const diff d = run_gemm<Gpu, float>(g, ta, tb, s.alpha, s.beta, seed += 3, s.c_nan);
          worst = std::max(worst, d.rel);
          CHECK_DIFF(std::string("gemm ") + Prec::name, d, tol);
        }
  {
    // Does the policy really round? cuBLAS's FAST_* compute types *allow* reduced-precision tensor
    // cores rather than force them, so this is reported, not asserted: a rounding policy gives
    // ~1e-3 (bf16) / ~1e-4 (tf32, fp16) here, a float32 product ~1e-7.
    const diff d = run_gemm<Gpu, float>({257, 131, 1280, 0}, false, true, 1.0, 0.0, 77, true);
    std::printf("[measured] %s (257 x 1280) x (1280 x 131) product: scale-relative error %.3g vs float32%s\n",
                Prec::name, d.rel, d.rel < 1e-5 ? " (NOTE: looks like an unrounded float32 product)" : "");
  }
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      CAPTURE(Prec::name, ta, tb);
      const diff d1 = run_batched<Gpu, float>({30, 30, 8, 0}, 12, ta, tb, false, false, 1.0, 0.0, seed += 3, true);
      const diff d2 = run_batched<Gpu, float>({30, 8, 30, 3}, 12, ta, tb, false, false, 0.5, 1.0, seed += 3, false);
      worst = std::max({worst, d1.rel, d2.rel});
      CHECK_DIFF(std::string("gemm_strided_batched ") + Prec::name, d1, tol);
      CHECK_DIFF(std::string("gemm_strided_batched ") + Prec::name, d2, tol);
      // double GEMMs are exact whatever the policy
      CHECK_DIFF(std::string("double gemm under ") + Prec::name,
                 (run_gemm<Gpu, double>({129, 67, 1280, 1}, ta, tb, 0.75, 1.0, seed += 3, false)), 1e-12);
      CHECK_DIFF(std::string("double gemm_strided_batched under ") + Prec::name,
                 (run_batched<Gpu, double>({30, 8, 30, 0}, 12, ta, tb, false, false, 1.0, 0.0, seed += 3, true)),
                 1e-12);
    }
  std::printf("[measured] %s GEMMs: worst scale-relative error vs float32 CPU %.3g (threshold %.3g = 10 x 2^%d)\n",
              Prec::name, worst, tol, int(std::lround(std::log2(u))));

  // non-GEMM ops ignore the policy: layer norm under this policy equals the fp32 backend's
  const index_t rows = 33, cols = 130;
  dual<float> x(randn<float>(std::size_t(rows * cols), 950)), gamma(randn<float>(std::size_t(cols), 951, 0.2, 1.0)),
      beta(randn<float>(std::size_t(cols), 952)), y1(nans<float>(std::size_t(rows * cols))),
      y2(nans<float>(std::size_t(rows * cols))), mean(nans<float>(std::size_t(rows))),
      rstd(nans<float>(std::size_t(rows)));
  cuda32::layer_norm_forward(P<cuda32>(x), P<cuda32>(gamma), P<cuda32>(beta), P<cuda32>(y1), P<cuda32>(mean),
                             P<cuda32>(rstd), rows, cols, 1e-5);
  Gpu::layer_norm_forward(P<Gpu>(x), P<Gpu>(gamma), P<Gpu>(beta), P<Gpu>(y2), P<Gpu>(mean), P<Gpu>(rstd), rows, cols,
                          1e-5);
  GPU_CHECK_CLOSE(std::string("layer_norm under ") + Prec::name + " vs fp32 backend", y2.got(), y1.got(), 1e-6);
}
