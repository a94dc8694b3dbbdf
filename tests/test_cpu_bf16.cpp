// genlm::cpu_bf16 - the CPU backend's bf16 precision policy (AMX tiles, genlm/backend/cpu_amx.hpp):
// bfloat16 rounding, products against a double reference of the rounded inputs (every transpose,
// ragged edges, strides, alpha/beta, batches), the AMX and the fallback path against each other,
// NaN propagation, identical results on 1 and 2 threads, and the gLM model on the bf16 policy
// against the float32 one. Where the CPU has no AMX the AMX-only checks are skipped with a warning
// and the fallback path is what runs.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/core/random.hpp>
#include <genlm/genlm.hpp>
#include <genlm/model/glm.hpp>

#include "gemm_operands.hpp"

using namespace genlm;

namespace {
std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct product_case {
  bool ta, tb;
  index_t m, n, k;
  float alpha, beta;
};

// Stored operands with padded row strides (ld = cols + 3), values ~N(0,1).
struct operands : test::operands<float> {
  operands(const product_case& c, std::uint64_t seed) : test::operands<float>(c, seed, 3) {}
};

// max over C of |C - ref| / (sum_k |a b| + |beta C0|) with ref in double from the rounded inputs
template <class F>
double worst_error(const product_case& c, const operands& o, const std::vector<float>& C, F round) {
  double worst = 0;
  for (index_t i = 0; i < c.m; ++i)
    for (index_t j = 0; j < c.n; ++j) {
      double ref = 0, scale = 0;
      for (index_t kk = 0; kk < c.k; ++kk) {
        const double p = double(round(o.a(i, kk))) * double(round(o.b(kk, j)));
        ref += p;
        scale += std::abs(p);
      }
      ref = c.alpha * ref + (c.beta != 0 ? c.beta * double(o.C0[i * o.ldc + j]) : 0.0);
      scale = std::abs(c.alpha) * scale + std::abs(c.beta * double(o.C0[i * o.ldc + j])) + 1e-30;
      worst = std::max(worst, std::abs(double(C[i * o.ldc + j]) - ref) / scale);
    }
  return worst;
}

std::vector<product_case> cases() {
  std::vector<product_case> v;
  // the last: k = 2048 puts 8 row panels (256 rows) in an L2 block, so 300 rows make two blocks
  const index_t sizes[][3] = {{1, 1, 1}, {5, 7, 3}, {16, 16, 32}, {17, 33, 31}, {40, 70, 65}, {33, 15, 100}, {300, 40, 2048}};
  int i = 0;
  for (auto s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const float alpha = i % 3 == 0 ? 1.f : 0.75f, beta = i % 2 == 0 ? 0.f : (i % 4 == 1 ? 1.f : -0.5f);
        v.push_back({ta, tb, s[0], s[1], s[2], alpha, beta});
        ++i;
      }
  return v;
}

std::vector<float> run(const product_case& c, const operands& o, bool use_amx) {
  std::vector<float> C = o.C0;
  if (use_amx)
    cpu_bf16::amx_gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, c.beta, C.data(),
                       o.ldc);
  else
    cpu_bf16::rounded_gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, c.beta,
                           C.data(), o.ldc);
  return C;
}
}  // namespace

TEST_CASE("bfloat16 rounding is round-to-nearest-even and keeps NaN and infinities", "[bf16]") {
  CHECK(amx::to_bf16(1.0f) == 0x3f80);
  CHECK(amx::to_bf16(-2.0f) == 0xc000);
  CHECK(amx::to_bf16(from_bits(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(amx::to_bf16(from_bits(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(amx::to_bf16(from_bits(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(amx::to_bf16(from_bits(0x3f807fffu)) == 0x3f80);  // below the tie
  CHECK(amx::to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(amx::to_bf16(from_bits(0x7f7fffffu)) == 0x7f80);  // float max rounds to +inf, as in IEEE
  CHECK(std::isnan(amx::round_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(amx::round_bf16(from_bits(0x7f800001u))));  // a NaN whose top bits look like inf
  CHECK(amx::round_bf16(3.14159265f) == 3.140625f);
  CHECK(bits(amx::round_bf16(1.0f / 3.0f)) == 0x3eab0000u);
}

TEST_CASE("cpu_bf16 products equal float32 sums of the bf16-rounded inputs", "[bf16][gemm]") {
  const auto round = [](float x) { return amx::round_bf16(x); };
  const auto keep = [](float x) { return x; };
  std::uint64_t seed = 1;
  for (const auto& c : cases()) {
    CAPTURE(c.ta, c.tb, c.m, c.n, c.k, c.alpha, c.beta);
    const operands o(c, seed++);
    std::vector<float> C = o.C0;
    cpu_bf16::gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, c.beta, C.data(),
                   o.ldc);
    // float32 accumulation of exactly representable products: k roundings of at most 2^-24
    const double tol = 2e-7 * double(c.k + 2);
    CHECK(worst_error(c, o, C, round) <= tol);
    // and the rounding is really there: against the unrounded inputs the error is bf16-sized (for
    // small k; it averages out as 1/sqrt(k) while the float32 bound grows with k)
    if (c.k >= 16 && c.k <= 128) CHECK(worst_error(c, o, C, keep) > 20 * tol);
    // the stride padding of C is never written
    for (index_t i = 0; i < c.m; ++i)
      for (index_t j = c.n; j < o.ldc; ++j) CHECK(C[i * o.ldc + j] == o.C0[i * o.ldc + j]);
  }
}

TEST_CASE("cpu_bf16 AMX path and fallback path agree", "[bf16][gemm][amx]") {
  if (!amx::available()) {
    WARN("no AMX on this CPU (or GENLM_DISABLE_AMX is set): only the fallback path runs here");
    return;
  }
  std::uint64_t seed = 100;
  for (const auto& c : cases()) {
    CAPTURE(c.ta, c.tb, c.m, c.n, c.k, c.alpha, c.beta);
    const operands o(c, seed++);
    const auto amx_c = run(c, o, true), ref_c = run(c, o, false);
    const auto round = [](float x) { return amx::round_bf16(x); };
    const double tol = 2e-7 * double(c.k + 2);
    CHECK(worst_error(c, o, amx_c, round) <= tol);
    CHECK(worst_error(c, o, ref_c, round) <= tol);
  }
}

TEST_CASE("cpu_bf16 products propagate NaN and infinity", "[bf16][gemm]") {
  const index_t m = 20, n = 18, k = 40;
  std::vector<float> A(m * k, 0.5f), B(k * n, 0.25f), C(m * n, 0.f);
  A[3 * k + 7] = std::numeric_limits<float>::quiet_NaN();
  B[5 * n + 11] = std::numeric_limits<float>::infinity();
  cpu_bf16::gemm(false, false, m, n, k, 1.f, A.data(), k, B.data(), n, 0.f, C.data(), n);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      CAPTURE(i, j);
      if (i == 3)
        CHECK(std::isnan(C[i * n + j]));
      else if (j == 11)
        CHECK(C[i * n + j] == std::numeric_limits<float>::infinity());
      else
        CHECK(C[i * n + j] == Approx(0.5 * 0.25 * k));
    }
}

TEST_CASE("cpu_bf16 products are identical on 1 and 2 threads, batched or not", "[bf16][gemm][threads]") {
  const int saved = cpu::num_threads();
  const product_case c{false, true, 130, 260, 130, 1.f, 0.f};  // above amx_thread_min: threads itself
  REQUIRE(c.m * c.n * c.k >= cpu_bf16::amx_thread_min);
  const operands o(c, 7);
  std::vector<float> C1 = o.C0, C2 = o.C0;
  cpu::set_num_threads(1);
  cpu_bf16::gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, c.beta, C1.data(), o.ldc);
  cpu::set_num_threads(2);
  cpu_bf16::gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, c.beta, C2.data(), o.ldc);
  CHECK(C1 == C2);
  CHECK(worst_error(c, o, C1, [](float x) { return amx::round_bf16(x); }) <= 2e-7 * (c.k + 2));

  // a batch of attention-sized products (split over threads) equals the products one by one
  const index_t batch = 24, L = 30, D = 32;
  std::vector<float> Q(batch * L * D), K(batch * L * D), S(batch * L * L), S1(batch * L * L);
  rng g(9);
  for (auto& v : Q) v = float(g.normal());
  for (auto& v : K) v = float(g.normal());
  cpu_bf16::gemm_strided_batched(false, true, L, L, D, 1.f, Q.data(), D, L * D, K.data(), D, L * D, 0.f, S.data(), L,
                                 L * L, batch);
  cpu::set_num_threads(1);
  for (index_t b = 0; b < batch; ++b)
    cpu_bf16::gemm(false, true, L, L, D, 1.f, Q.data() + b * L * D, D, K.data() + b * L * D, D, 0.f,
                   S1.data() + b * L * L, L);
  cpu::set_num_threads(saved);
  CHECK(S == S1);
}

TEST_CASE("gLM on the cpu_bf16 policy stays close to float32", "[bf16][model]") {
  static_assert(std::is_same_v<backend_precision_t<cpu_bf16>, precision::bf16>);
  static_assert(std::is_same_v<backend_precision_t<cpu>, precision::fp32>);
  GLM<configs::tiny, cpu> m32;
  GLM<configs::tiny, cpu_bf16> m16;
  m16.parameters().values().from_host(m16.parameters().values().shape(), m32.parameters().values().to_host());
  const index_t B = 3, L = 9, F = configs::tiny.input_dim();
  std::vector<float> xs(std::size_t(B * L * F)), ms(std::size_t(B * L), 1.f);
  rng g(4);
  for (auto& v : xs) v = float(g.normal());
  ms[2 * L + 8] = 0.f;
  tensor<float, cpu> x32({B, L, F}), mask32({B, L});
  tensor<float, cpu_bf16> x16({B, L, F}), mask16({B, L});
  x32.from_host(x32.shape(), xs), x16.from_host(x16.shape(), xs);
  mask32.from_host(mask32.shape(), ms), mask16.from_host(mask16.shape(), ms);
  const auto h32 = m32.forward({}, x32, mask32).hidden.to_host();
  const auto h16 = m16.forward({}, x16, mask16).hidden.to_host();
  REQUIRE(h32.size() == h16.size());
  double diff = 0, scale = 0, same = 0;
  for (std::size_t i = 0; i < h32.size(); ++i) {
    diff = std::max(diff, double(std::abs(h32[i] - h16[i])));
    scale = std::max(scale, double(std::abs(h32[i])));
    same += h32[i] == h16[i];
  }
  CAPTURE(diff, scale);
  CHECK(std::isfinite(diff));
  CHECK(diff <= 1e-1 * scale);           // bf16 products: ~2^-9 relative per product, through 2 layers
  CHECK(same < 0.5 * double(h32.size()));  // and not secretly the float32 path
}

TEST_CASE("products_description names the products of each CPU backend", "[bf16]") {
  const std::string f = products_description<cpu>(), d = products_description<cpu, double>();
  CHECK(f.rfind("float32 (", 0) == 0);
  CHECK(d.rfind("float64 (", 0) == 0);
#if defined(GENLM_USE_DNNL)
  CHECK(f.find("oneDNN") != std::string::npos);
  CHECK((f.find("matmul primitive for x W^T") != std::string::npos) == cpu_detail::onednn_matmul_enabled());
#endif
  CHECK(d.find("oneDNN") == std::string::npos);  // oneDNN has no float64 product
#if defined(GENLM_USE_CBLAS)
  CHECK(d.find("OpenBLAS") != std::string::npos);
#else
  CHECK(d.find("Eigen") != std::string::npos);
#endif
  const std::string bf = products_description<cpu_bf16>();
  CHECK(bf.rfind("bf16 inputs, float32 accumulation (", 0) == 0);
  CHECK((bf.find("Intel AMX tiles") != std::string::npos) == amx::available());
}
