// genlm::cpu's products (float32 and float64): against a double-precision reference for every
// transpose, sizes below and above the size from which float32 products go to oneDNN (when the
// build has it) and split over the backend's threads, ragged splits along both sides, padded
// strides, alpha/beta, beta == 0 with garbage in C, NaN propagation, 1 vs 2 threads, batches.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/core/random.hpp>
#if defined(GENLM_USE_DNNL)
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "gemm_operands.hpp"

using namespace genlm;

namespace {
struct product_case {
  bool ta, tb;
  index_t m, n, k;
  double alpha, beta;
};

// Stored operands with padded row strides (ld = cols + 5), values ~N(0,1), and the product.
template <class T>
struct operands : test::operands<T> {
  operands(const product_case& c, std::uint64_t seed) : test::operands<T>(c, seed, 5) {}
  std::vector<T> run(const product_case& c) const {
    std::vector<T> C = this->C0;
    cpu::gemm<T>(c.ta, c.tb, c.m, c.n, c.k, T(c.alpha), this->A.data(), this->lda, this->B.data(), this->ldb,
                 T(c.beta), C.data(), this->ldc);
    return C;
  }
};

// max over C of |C - ref| / (|alpha| sum_k |a b| + |beta C0|), ref in double (long double for T = double)
template <class T>
double worst_error(const product_case& c, const operands<T>& o, const std::vector<T>& C) {
  double worst = 0;
  for (index_t i = 0; i < c.m; ++i)
    for (index_t j = 0; j < c.n; ++j) {
      long double ref = 0, scale = 0;
      for (index_t kk = 0; kk < c.k; ++kk) {
        const long double p = static_cast<long double>(o.a(i, kk)) * static_cast<long double>(o.b(kk, j));
        ref += p;
        scale += std::abs(p);
      }
      const long double c0 = c.beta != 0 ? static_cast<long double>(o.C0[i * o.ldc + j]) : 0.0L;
      ref = c.alpha * ref + c.beta * c0;
      scale = std::abs(c.alpha) * scale + std::abs(c.beta * c0) + 1e-30L;
      worst = std::max(worst, double(std::abs(static_cast<long double>(C[i * o.ldc + j]) - ref) / scale));
    }
  return worst;
}

// Sizes below the oneDNN/threading size, and above it split by rows (m > n) and by columns
// (n >= m), neither side a multiple of the 64-wide split blocks.
std::vector<product_case> cases() {
  const index_t sizes[][3] = {{1, 1, 1}, {17, 33, 31}, {40, 70, 65}, {250, 130, 97}, {60, 710, 70}, {9, 1000, 40}};
  std::vector<product_case> v;
  int i = 0;
  for (auto s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const double alpha = i % 3 == 0 ? 1.0 : 0.75, beta = i % 2 == 0 ? 0.0 : (i % 4 == 1 ? 1.0 : -0.5);
        v.push_back({ta, tb, s[0], s[1], s[2], alpha, beta});
        ++i;
      }
  return v;
}

struct threads_guard {
  int saved = cpu::num_threads();
  ~threads_guard() { cpu::set_num_threads(saved); }
};
}  // namespace

TEMPLATE_TEST_CASE("cpu products equal a high-precision reference within accumulation error", "[gemm]", float,
                   double) {
  threads_guard guard;
  const double eps = std::numeric_limits<TestType>::epsilon() / 2;  // unit roundoff
  std::uint64_t seed = 11;
  bool some_large = false;
  for (const auto& c : cases()) {
    some_large = some_large || c.m * c.n * c.k >= (index_t(1) << 18);
    for (int threads : {1, 2}) {
      CAPTURE(c.ta, c.tb, c.m, c.n, c.k, c.alpha, c.beta, threads);
      cpu::set_num_threads(threads);
      const operands<TestType> o(c, seed);
      const auto C = o.run(c);
      // k + 2 roundings (products, sums, alpha/beta) of at most the unit roundoff each
      CHECK(worst_error(c, o, C) <= eps * double(c.k + 2));
      for (index_t i = 0; i < c.m; ++i)  // the stride padding of C is never written
        for (index_t j = c.n; j < o.ldc; ++j) REQUIRE(C[i * o.ldc + j] == o.C0[i * o.ldc + j]);
    }
    ++seed;
  }
  CHECK(some_large);
}

TEST_CASE("cpu products with beta == 0 never read C, and NaN propagates", "[gemm]") {
  threads_guard guard;
  for (const product_case c : {product_case{false, true, 20, 30, 40, 1, 0}, product_case{false, false, 240, 300, 64, 1, 0},
                               product_case{true, false, 70, 400, 33, 1, 0}}) {
    for (int threads : {1, 2}) {
      CAPTURE(c.ta, c.tb, c.m, c.n, c.k, threads);
      cpu::set_num_threads(threads);
      operands<float> o(c, 5);
      std::fill(o.C0.begin(), o.C0.end(), std::numeric_limits<float>::quiet_NaN());
      auto C = o.run(c);
      for (index_t i = 0; i < c.m; ++i)
        for (index_t j = 0; j < c.n; ++j) REQUIRE(std::isfinite(C[i * o.ldc + j]));
      // a NaN in row 3 of op(A) makes row 3 of C NaN and no other
      const index_t kk = c.k / 2;
      (c.ta ? o.A[kk * o.lda + 3] : o.A[3 * o.lda + kk]) = std::numeric_limits<float>::quiet_NaN();
      C = o.run(c);
      for (index_t i = 0; i < c.m; ++i)
        for (index_t j = 0; j < c.n; ++j) REQUIRE(std::isnan(C[i * o.ldc + j]) == (i == 3));
    }
  }
}

TEST_CASE("cpu float32 products agree on 1 and 2 threads, batched or not", "[gemm][threads]") {
  threads_guard guard;
  // paper-like shapes: the forward's x W^T, the backward's dy W and dy^T x
  for (const product_case c : {product_case{false, true, 240, 1280, 128, 1, 0}, product_case{false, false, 240, 700, 200, 1, 1},
                               product_case{true, false, 640, 320, 240, 1, 0}}) {
    CAPTURE(c.ta, c.tb, c.m, c.n, c.k);
    const operands<float> o(c, 21);
    cpu::set_num_threads(1);
    const auto C1 = o.run(c);
    cpu::set_num_threads(2);
    const auto C2 = o.run(c);
    double diff = 0;
    for (std::size_t i = 0; i < C1.size(); ++i) diff = std::max(diff, double(std::abs(C1[i] - C2[i])));
    CAPTURE(diff);
    CHECK(worst_error(c, o, C2) <= 6e-8 * double(c.k + 2));
    CHECK(diff <= 1e-6 * std::sqrt(double(c.k)) * 4);  // the same kernels, at most a different blocking
    // the threads take the product's pieces in whatever order they get to them, but the pieces are
    // fixed: every run gives the same bits, whether the pool's threads spin or block
    const int spin_before = cpu_detail::pool_spin_us();
    for (const int spin : {0, 300, 0, 300}) {
      cpu_detail::set_pool_spin_us(spin);
      CHECK(o.run(c) == C2);
    }
    cpu_detail::set_pool_spin_us(spin_before);
  }
  // a batch of products of either size class equals the products one by one
  for (const index_t L : {30, 120}) {
    const index_t batch = 6, D = 64;
    std::vector<float> Q(batch * L * D), K(batch * L * D), S(batch * L * L, 7.f), S1(batch * L * L, 7.f);
    rng g(9);
    for (auto& v : Q) v = float(g.normal());
    for (auto& v : K) v = float(g.normal());
    cpu::set_num_threads(2);
    cpu::gemm_strided_batched(false, true, L, L, D, 1.f, Q.data(), D, L * D, K.data(), D, L * D, 0.f, S.data(), L,
                              L * L, batch);
    for (index_t b = 0; b < batch; ++b)
      cpu::gemm(false, true, L, L, D, 1.f, Q.data() + b * L * D, D, K.data() + b * L * D, D, 0.f,
                S1.data() + b * L * L, L);
    CHECK(S == S1);
  }
}

#if defined(GENLM_USE_DNNL)
TEST_CASE("float32 products from dnnl_min multiply-adds are oneDNN's, split over the threads", "[gemm]") {
  threads_guard guard;
  cpu::set_num_threads(1);  // one call, no split: bit-equal to calling oneDNN directly on any CPU
  SECTION("x W^T: oneDNN's matmul primitive") {
    // padded strides (oneDNN then picks its gemm:jit kernel), and dense operands with a long k
    // (brgemm, whose sums differ from dnnl_sgemm's: so the GENLM_ONEDNN_MATMUL=0 run of this test,
    // tests/CMakeLists.txt, fails if the switch is ignored)
    for (const auto& [c, pad] : {std::pair{product_case{false, true, 64, 100, 41, 1, 0}, index_t(5)},
                                 std::pair{product_case{false, true, 64, 100, 1280, 1, 0}, index_t(0)}}) {
      CAPTURE(c.k, pad);
      REQUIRE(c.m * c.n * c.k >= cpu::dnnl_min);
      const test::operands<float> o(c, 3, pad);
      std::vector<float> C = o.C0;
      cpu::gemm<float>(false, true, c.m, c.n, c.k, 1.f, o.A.data(), o.lda, o.B.data(), o.ldb, 0.f, C.data(), o.ldc);
      // the primitive built here through oneDNN's C++ API, on a dense destination
      using namespace dnnl;
      using dt = memory::data_type;
      const engine eng(engine::kind::cpu, 0);
      stream strm(eng);
      const memory::desc ad({c.m, c.k}, dt::f32, memory::dims{o.lda, 1});
      const memory::desc bd({c.k, c.n}, dt::f32, memory::dims{1, o.ldb});
      const memory::desc cd({c.m, c.n}, dt::f32, memory::dims{c.n, 1});
      const matmul prim(matmul::primitive_desc(matmul::desc(ad, bd, cd), eng));
      std::vector<float> D(std::size_t(c.m * c.n));
      memory am(ad, eng, const_cast<float*>(o.A.data())), bm(bd, eng, const_cast<float*>(o.B.data())),
          cm(cd, eng, D.data());
      prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      strm.wait();
      // GENLM_ONEDNN_MATMUL=0 (read here, apart from the library): dnnl_sgemm's bits
      const char* env = std::getenv("GENLM_ONEDNN_MATMUL");
      const bool sgemm_only = env && std::string(env) == "0";
      CHECK(cpu_detail::onednn_matmul_enabled() == !sgemm_only);
      if (sgemm_only) {
        REQUIRE(dnnl_sgemm('N', 'T', c.m, c.n, c.k, 1.f, o.A.data(), o.lda, o.B.data(), o.ldb, 0.f, D.data(), c.n) ==
                dnnl_success);
      }
      for (index_t i = 0; i < c.m; ++i)
        for (index_t j = 0; j < c.n; ++j) REQUIRE(C[i * o.ldc + j] == D[i * c.n + j]);
    }
  }
  SECTION("x W and x^T W: dnnl_sgemm") {
    for (const product_case c : {product_case{false, false, 64, 100, 41, 1, 0}, product_case{true, false, 64, 100, 41, 1, 0}}) {
      CAPTURE(c.ta);
      const operands<float> o(c, 3);
      const auto C = o.run(c);
      std::vector<float> D = o.C0;
      REQUIRE(dnnl_sgemm(c.ta ? 'T' : 'N', 'N', c.m, c.n, c.k, 1.f, o.A.data(), o.lda, o.B.data(), o.ldb, 0.f,
                         D.data(), o.ldc) == dnnl_success);
      CHECK(C == D);
    }
  }
  SECTION("a failing call names its sizes") {  // a leading dimension smaller than the row is refused
    std::vector<float> X(64 * 100);
    try {
      cpu::dnnl_gemm(false, false, 64, 100, 64, 1.f, X.data(), 64, X.data(), 10, 0.f, X.data(), 100);
      FAIL("no error");
    } catch (const error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find("dnnl_sgemm") != std::string::npos);
      CHECK(msg.find("ldb=10") != std::string::npos);
    }
  }
}

TEST_CASE("x W^T through oneDNN's matmul primitive: pieces of a wider C, alpha and beta, the cache", "[gemm]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto call = [](const product_case& c, const operands<float>& o, std::vector<float>& C, index_t ldc) {
    cpu_detail::onednn_matmul_nt(c.m, c.n, c.k, float(c.alpha), o.A.data(), o.lda, o.B.data(), o.ldb,
                                 float(c.beta), C.data(), ldc);
  };
  std::uint64_t seed = 40;
  for (const product_case c : {product_case{false, true, 240, 130, 96, 1, 0}, product_case{false, true, 37, 64, 300, 0.75, -0.5},
                               product_case{false, true, 1, 70, 33, 1, 1}, product_case{false, true, 128, 9, 128, 2, 0}}) {
    CAPTURE(c.m, c.n, c.k, c.alpha, c.beta);
    operands<float> o(c, seed++);
    if (c.beta == 0) std::fill(o.C0.begin(), o.C0.end(), nan);  // beta == 0 never reads C
    // a piece: C's row stride is wider than n (the scratch path); the padding is never written
    std::vector<float> piece = o.C0;
    call(c, o, piece, o.ldc);
    CHECK(worst_error(c, o, piece) <= 6e-8 * double(c.k + 2));
    for (index_t i = 0; i < c.m; ++i)
      for (index_t j = c.n; j < o.ldc; ++j) REQUIRE(std::isnan(piece[i * o.ldc + j]) == std::isnan(o.C0[i * o.ldc + j]));
    // the same product on a dense C: the same bits
    std::vector<float> dense(std::size_t(c.m * c.n));
    for (index_t i = 0; i < c.m; ++i)
      for (index_t j = 0; j < c.n; ++j) dense[std::size_t(i * c.n + j)] = o.C0[i * o.ldc + j];
    call(c, o, dense, c.n);
    for (index_t i = 0; i < c.m; ++i)
      for (index_t j = 0; j < c.n; ++j) REQUIRE(dense[std::size_t(i * c.n + j)] == piece[i * o.ldc + j]);
  }
  // More shapes than a thread's cache holds: evicted primitives are rebuilt and give the same bits.
  const product_case first{false, true, 16, 50, 30, 1, 0};
  const operands<float> fo(first, 7);
  std::vector<float> C1(fo.C0.size(), 0.f), C2(fo.C0.size(), 0.f);
  call(first, fo, C1, fo.ldc);
  for (index_t m = 1; m <= index_t(cpu_detail::matmul_state::capacity) + 8; ++m) {
    const product_case c{false, true, m, 50, 30, 1, 0};
    const operands<float> o(c, 100 + std::uint64_t(m));
    std::vector<float> C = o.C0;
    call(c, o, C, o.ldc);
    REQUIRE(worst_error(c, o, C) <= 6e-8 * double(c.k + 2));
  }
  call(first, fo, C2, fo.ldc);
  CHECK(C1 == C2);
  // A thread that exits hands its state to the next new thread: two threads one after the other
  // add at most one state.
  const std::size_t before = cpu_detail::onednn_matmul_states();
  for (int t = 0; t < 2; ++t) {
    std::vector<float> C(fo.C0.size(), 0.f);
    std::thread th([&] { call(first, fo, C, fo.ldc); });
    th.join();
    CHECK(C == C1);
  }
  CHECK(cpu_detail::onednn_matmul_states() <= before + 1);
}
#endif
