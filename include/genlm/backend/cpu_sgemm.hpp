// genlm/backend/cpu_sgemm.hpp - genlm's own float32 GEMM for x86-64 CPUs with AVX-512.
//
// EXPERIMENT, not used by the library: it matched OpenBLAS within the machine's noise on the paper
// shapes and lost on small ones (benchmarks/experiments/own_sgemm.cpp, docs/PERFORMANCE.md), so it
// was removed in the next commit and is kept in the history only.
//
// Why: the model's products are tall-skinny (M = contigs x genes = 240 rows for a batch of 8, against
// 1280/3072-wide weights, or k = 240 for the weight gradients). On these shapes OpenBLAS 0.3 runs at
// 55-75% of the machine's FMA peak (docs/PERFORMANCE.md); this kernel is blocked for them.
//
// Structure (Goto/BLIS): C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C, row-major.
//   for n-block (nc cols) -> for k-block (kc) -> pack op(B) block into NR-wide micro-panels
//     for m-block (mc rows) -> pack op(A) block into MR-tall micro-panels
//       for each MR-tall panel (kept in L1) -> for each NR-wide panel (streamed from L2)
//         micro-kernel: MR x NR tile of C in 24 AVX-512 registers, kc rank-1 updates.
// Threads split the columns (or, when there are too few column panels, the rows); each thread packs
// its own panels, so there is no barrier. Sizes are run-time values; one kernel instantiation.
//
// Compiled with __attribute__((target("avx512f"))) so the library needs no -march flag; callers
// check available() first (cpu::gemm falls back to OpenBLAS/Eigen). Summation order differs from
// OpenBLAS/Eigen within float rounding; tests/test_cpu_sgemm.cpp compares it against a double
// reference on every transpose combination and ragged edge.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include <genlm/core/tensor.hpp>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GENLM_HAVE_OWN_SGEMM 1
#define GENLM_TARGET_AVX512 __attribute__((target("avx512f")))
#else
#define GENLM_HAVE_OWN_SGEMM 0
#endif

namespace genlm::cpu_detail::sgemm {

#if GENLM_HAVE_OWN_SGEMM

inline constexpr index_t MR = 12;       // rows of the register tile
inline constexpr index_t NR = 32;       // columns of the register tile (2 x 16 floats)
inline constexpr index_t KC = 256;      // k-block: an NR panel (KC x NR x 4 B = 32 KB) fits L1
inline constexpr index_t MC = 480;      // m-block: MC x KC x 4 B = 480 KB of packed A in L2
inline constexpr index_t NC = 1024;     // n-block: KC x NC x 4 B = 1 MB of packed B in L2

inline bool available() {
  static const bool v = __builtin_cpu_supports("avx512f");
  return v;
}

/// 64-byte aligned scratch per thread, grown on demand and kept (no per-call allocation).
struct scratch {
  struct free_deleter {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, free_deleter> buf;
  std::size_t cap = 0;
  float* get(std::size_t n) {
    if (n > cap) {
      const std::size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      buf.reset(p);
      cap = bytes / sizeof(float);
    }
    return buf.get();
  }
};
inline scratch& a_scratch() {
  thread_local scratch s;
  return s;
}
inline scratch& b_scratch() {
  thread_local scratch s;
  return s;
}

/// Packs op(A)(i0:i0+mc, p0:p0+kc) into ceil(mc/MR) panels of kc x MR (zero rows past mc).
/// op(A)(i, p) = trans ? A[p*lda + i] : A[i*lda + p].
inline void pack_a(bool trans, const float* A, index_t lda, index_t i0, index_t mc, index_t p0, index_t kc,
                   float* out) {
  for (index_t s = 0; s < mc; s += MR) {
    const index_t rows = std::min(MR, mc - s);
    float* dst = out + s * kc;  // panel s/MR starts at (s/MR) * kc * MR = s * kc
    if (trans) {
      for (index_t p = 0; p < kc; ++p) {
        const float* src = A + (p0 + p) * lda + i0 + s;
        float* d = dst + p * MR;
        for (index_t r = 0; r < rows; ++r) d[r] = src[r];
        for (index_t r = rows; r < MR; ++r) d[r] = 0.0f;
      }
    } else {
      for (index_t r = 0; r < rows; ++r) {
        const float* src = A + (i0 + s + r) * lda + p0;
        for (index_t p = 0; p < kc; ++p) dst[p * MR + r] = src[p];
      }
      for (index_t r = rows; r < MR; ++r)
        for (index_t p = 0; p < kc; ++p) dst[p * MR + r] = 0.0f;
    }
  }
}

/// 16 x 16 transpose of floats: rows of src (stride lds) become columns of dst (stride ldd).
GENLM_TARGET_AVX512 inline void transpose16x16(const float* src, index_t lds, float* dst, index_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  // stage 1: interleave 32-bit lanes of row pairs
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // stage 2: 64-bit lanes of quads
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // stage 3: 128-bit blocks across groups of 4 rows (0-3 with 4-7, 8-11 with 12-15)
  for (int g = 0; g < 16; g += 8)
    for (int j = 0; j < 4; ++j) {
      t[g + j] = _mm512_shuffle_f32x4(r[g + j], r[g + 4 + j], 0x88);
      t[g + 4 + j] = _mm512_shuffle_f32x4(r[g + j], r[g + 4 + j], 0xdd);
    }
  // stage 4: 128-bit blocks across the two halves of 8 rows
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
  }
  // r[i] now holds column i of the source block
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

/// Packs op(B)(p0:p0+kc, j0:j0+nc) into ceil(nc/NR) panels of kc x NR (zero columns past nc).
/// op(B)(p, j) = trans ? B[j*ldb + p] : B[p*ldb + j].
GENLM_TARGET_AVX512 inline void pack_b(bool trans, const float* B, index_t ldb, index_t p0, index_t kc, index_t j0,
                                       index_t nc, float* out) {
  for (index_t t = 0; t < nc; t += NR) {
    const index_t cols = std::min(NR, nc - t);
    float* dst = out + t * kc;  // panel t/NR starts at (t/NR) * kc * NR = t * kc
    if (!trans) {
      for (index_t p = 0; p < kc; ++p) {
        const float* src = B + (p0 + p) * ldb + j0 + t;
        float* d = dst + p * NR;
        if (cols == NR) {
          _mm512_store_ps(d, _mm512_loadu_ps(src));
          _mm512_store_ps(d + 16, _mm512_loadu_ps(src + 16));
        } else {
          for (index_t c = 0; c < cols; ++c) d[c] = src[c];
          for (index_t c = cols; c < NR; ++c) d[c] = 0.0f;
        }
      }
    } else {
      // B stored (n, k): column j of op(B) is row j of B, contiguous in p.
      index_t p = 0;
      if (cols == NR)
        for (; p + 16 <= kc; p += 16)
          for (index_t h = 0; h < NR; h += 16)
            transpose16x16(B + (j0 + t + h) * ldb + p0 + p, ldb, dst + p * NR + h, NR);
      for (index_t c = 0; c < cols; ++c) {
        const float* src = B + (j0 + t + c) * ldb + p0;
        for (index_t q = p; q < kc; ++q) dst[q * NR + c] = src[q];
      }
      for (index_t c = cols; c < NR; ++c)
        for (index_t q = p; q < kc; ++q) dst[q * NR + c] = 0.0f;
    }
  }
}

/// C tile (MR x NR at C, row stride ldc) = alpha * Ap Bp + beta * C (beta == 0: C not read).
/// Ap: kc x MR panel, Bp: kc x NR panel (64-byte aligned).
GENLM_TARGET_AVX512 inline void kernel_full(index_t kc, const float* __restrict Ap, const float* __restrict Bp,
                                            float* C, index_t ldc, float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(),
         c11 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(),
         c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c40 = _mm512_setzero_ps(),
         c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(),
         c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(),
         c71 = _mm512_setzero_ps(), c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(),
         c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps(), ca0 = _mm512_setzero_ps(),
         ca1 = _mm512_setzero_ps(), cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
  for (index_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
    __m512 a;
#define GENLM_SGEMM_ROW(r, x0, x1)        \
  a = _mm512_set1_ps(Ap[r]);              \
  x0 = _mm512_fmadd_ps(a, b0, x0);        \
  x1 = _mm512_fmadd_ps(a, b1, x1);
    GENLM_SGEMM_ROW(0, c00, c01)
    GENLM_SGEMM_ROW(1, c10, c11)
    GENLM_SGEMM_ROW(2, c20, c21)
    GENLM_SGEMM_ROW(3, c30, c31)
    GENLM_SGEMM_ROW(4, c40, c41)
    GENLM_SGEMM_ROW(5, c50, c51)
    GENLM_SGEMM_ROW(6, c60, c61)
    GENLM_SGEMM_ROW(7, c70, c71)
    GENLM_SGEMM_ROW(8, c80, c81)
    GENLM_SGEMM_ROW(9, c90, c91)
    GENLM_SGEMM_ROW(10, ca0, ca1)
    GENLM_SGEMM_ROW(11, cb0, cb1)
#undef GENLM_SGEMM_ROW
    Ap += MR;
    Bp += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  // (a macro, not a lambda: a lambda would not inherit the avx512f target)
#define GENLM_SGEMM_STORE(r, x0, x1)                                  \
  {                                                                   \
    float* c = C + (r) * ldc;                                         \
    __m512 y0 = _mm512_mul_ps(va, x0), y1 = _mm512_mul_ps(va, x1);    \
    if (beta != 0.0f) {                                               \
      y0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), y0);               \
      y1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16), y1);          \
    }                                                                 \
    _mm512_storeu_ps(c, y0);                                          \
    _mm512_storeu_ps(c + 16, y1);                                     \
  }
  GENLM_SGEMM_STORE(0, c00, c01)
  GENLM_SGEMM_STORE(1, c10, c11)
  GENLM_SGEMM_STORE(2, c20, c21)
  GENLM_SGEMM_STORE(3, c30, c31)
  GENLM_SGEMM_STORE(4, c40, c41)
  GENLM_SGEMM_STORE(5, c50, c51)
  GENLM_SGEMM_STORE(6, c60, c61)
  GENLM_SGEMM_STORE(7, c70, c71)
  GENLM_SGEMM_STORE(8, c80, c81)
  GENLM_SGEMM_STORE(9, c90, c91)
  GENLM_SGEMM_STORE(10, ca0, ca1)
  GENLM_SGEMM_STORE(11, cb0, cb1)
#undef GENLM_SGEMM_STORE
}

/// Partial tile (rows <= MR, cols <= NR): the full kernel into a local tile, then merged.
GENLM_TARGET_AVX512 inline void kernel_edge(index_t kc, const float* Ap, const float* Bp, float* C, index_t ldc,
                                            float alpha, float beta, index_t rows, index_t cols) {
  alignas(64) float tile[MR * NR];
  kernel_full(kc, Ap, Bp, tile, NR, 1.0f, 0.0f);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      float& dst = C[r * ldc + c];
      dst = beta == 0.0f ? alpha * tile[r * NR + c] : alpha * tile[r * NR + c] + beta * dst;
    }
}

/// One thread's share: rows [i_lo, i_hi) and columns [j_lo, j_hi) of C.
GENLM_TARGET_AVX512 inline void gemm_block(bool trans_a, bool trans_b, index_t i_lo, index_t i_hi, index_t j_lo,
                                           index_t j_hi, index_t k, float alpha, const float* A, index_t lda,
                                           const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  const index_t m = i_hi - i_lo;
  float* Ap = a_scratch().get(std::size_t(std::min(MC, (m + MR - 1) / MR * MR) * std::min(KC, k)));
  float* Bp = b_scratch().get(std::size_t(std::min(NC, (j_hi - j_lo + NR - 1) / NR * NR) * std::min(KC, k)));
  for (index_t jc = j_lo; jc < j_hi; jc += NC) {
    const index_t nc = std::min(NC, j_hi - jc);
    for (index_t pc = 0; pc < k; pc += KC) {
      const index_t kc = std::min(KC, k - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;  // later k-blocks accumulate
      pack_b(trans_b, B, ldb, pc, kc, jc, nc, Bp);
      for (index_t ic = i_lo; ic < i_hi; ic += MC) {
        const index_t mc = std::min(MC, i_hi - ic);
        pack_a(trans_a, A, lda, ic, mc, pc, kc, Ap);
        for (index_t ir = 0; ir < mc; ir += MR) {
          const index_t rows = std::min(MR, mc - ir);
          for (index_t jr = 0; jr < nc; jr += NR) {
            const index_t cols = std::min(NR, nc - jr);
            const float* bp = Bp + jr * kc;
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (rows == MR && cols == NR)
              kernel_full(kc, Ap + ir * kc, bp, c, ldc, alpha, beta_k);
            else
              kernel_edge(kc, Ap + ir * kc, bp, c, ldc, alpha, beta_k, rows, cols);
          }
        }
      }
    }
  }
}

/// C(m,n) = alpha op(A) op(B) + beta C on `threads` threads (split by `parallel_for(n, t, min, f)`,
/// passed in so that this header does not depend on the backend's thread pool). k > 0.
template <class ParallelFor>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, float alpha, const float* A, index_t lda,
          const float* B, index_t ldb, float beta, float* C, index_t ldc, int threads, ParallelFor&& parallel_for) {
  // work below ~2^22 multiply-adds per thread is not worth a thread start
  const double work = double(m) * double(n) * double(k);
  const int t = int(std::max<double>(1.0, std::min<double>(threads, work / double(1 << 22))));
  const index_t n_panels = (n + NR - 1) / NR, m_panels = (m + MR - 1) / MR;
  if (t <= 1) return gemm_block(trans_a, trans_b, 0, m, 0, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  if (n_panels >= 2 * t)
    parallel_for(n_panels, t, index_t(1), [&](index_t lo, index_t hi) {
      gemm_block(trans_a, trans_b, 0, m, lo * NR, std::min(n, hi * NR), k, alpha, A, lda, B, ldb, beta, C, ldc);
    });
  else
    parallel_for(m_panels, t, index_t(1), [&](index_t lo, index_t hi) {
      gemm_block(trans_a, trans_b, lo * MR, std::min(m, hi * MR), 0, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    });
}

#else
inline bool available() { return false; }
#endif

}  // namespace genlm::cpu_detail::sgemm
