// tests/gemm_operands.hpp - operands of one row-major product C(m,n) = alpha op(A) op(B) + beta C
// for the product tests (test_cpu_gemm.cpp, test_cpu_bf16.cpp): stored matrices with padded row
// strides (ld = cols + pad), values ~N(0, 1) from a seed, and op(A)/op(B) element access.
#pragma once
#include <cstdint>
#include <vector>

#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::test {

template <class T>
struct operands {
  bool ta, tb;
  index_t lda, ldb, ldc;
  std::vector<T> A, B, C0;
  /// Case: anything with ta, tb, m, n, k.
  template <class Case>
  operands(const Case& c, std::uint64_t seed, index_t pad) : ta(c.ta), tb(c.tb) {
    const index_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k, br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
    lda = ac + pad, ldb = bc + pad, ldc = c.n + pad;
    rng g(seed);
    A.resize(std::size_t(ar * lda));
    B.resize(std::size_t(br * ldb));
    C0.resize(std::size_t(c.m * ldc));
    for (auto& v : A) v = T(g.normal());
    for (auto& v : B) v = T(g.normal());
    for (auto& v : C0) v = T(g.normal());
  }
  /// op(A)(i, kk) and op(B)(kk, j)
  T a(index_t i, index_t kk) const { return ta ? A[kk * lda + i] : A[i * lda + kk]; }
  T b(index_t kk, index_t j) const { return tb ? B[j * ldb + kk] : B[kk * ldb + j]; }
};

}  // namespace genlm::test
