// genlm/backend/cpu_amx.hpp - bfloat16 matrix products on Intel AMX tiles (the CPU backend's bf16
// precision policy, genlm::cpu_bf16).
//
// Semantics are those of the bf16 policy (genlm/backend/precision.hpp) and of cuBLAS with bf16
// inputs: both operands are rounded to bfloat16 (round to nearest even), products are accumulated
// in float32 (TDPBF16PS), C = alpha * acc + beta * C in float32. Denormals (below 2^-126) become
// zero in the conversion and in the tile multiply (DAZ/FTZ); the fallback path without AMX keeps
// them (as do float32 products).
//
// Layout: op(A) (m,k) is packed into 16-row x 32-column bf16 tiles, op(B) (k,n) into 16 x 16
// "VNNI" tiles (row r holds the pairs k = 2r, 2r+1 of 16 columns); tiles are contiguous 1 KiB
// blocks, edges zero-padded to 32 rows / 32 columns / a multiple of 32 in k. The kernel keeps a
// 32 x 32 block of C in four accumulator tiles, reads two A and two B tiles per 32-wide k step.
//
// Availability: x86-64 Linux with AMX-TILE + AMX-BF16 (CPUID 7.0 EDX bits 24, 22), AVX512-BF16
// for the conversions, and the kernel's permission for tile data (arch_prctl
// ARCH_REQ_XCOMP_PERM). amx::available() checks all of them once; the backend falls back to
// float32 products of bf16-rounded inputs (same rounding, another summation order) without it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <genlm/core/tensor.hpp>

#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#define GENLM_HAVE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define GENLM_TARGET_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define GENLM_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define GENLM_HAVE_AMX 0
#endif

namespace genlm::amx {

/// float -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet).
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}
inline float from_bf16(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/// float rounded to the nearest bfloat16 value (as a float).
inline float round_bf16(float f) { return from_bf16(to_bf16(f)); }

#if GENLM_HAVE_AMX
namespace detail {
inline bool cpu_has_amx_bf16() {
  unsigned r[4];  // eax, ebx, ecx, edx (an array: nvcc warns about unread scalar outputs)
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, r[0], r[1], r[2], r[3]);
  const bool amx_bf16 = (r[3] >> 22) & 1u, amx_tile = (r[3] >> 24) & 1u;
  __cpuid_count(7, 1, r[0], r[1], r[2], r[3]);
  const bool avx512_bf16 = (r[0] >> 5) & 1u;
  return amx_bf16 && amx_tile && avx512_bf16 && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}
inline bool request_tile_permission() {
  constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
  return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
}
}  // namespace detail
#endif

/// True when this process can run AMX bf16 tiles (checked once; $GENLM_DISABLE_AMX=1 forces false,
/// which the tests use to exercise the fallback).
inline bool available() {
#if GENLM_HAVE_AMX
  static const bool v = [] {
    if (const char* e = std::getenv("GENLM_DISABLE_AMX"); e && *e && *e != '0') return false;
    return detail::cpu_has_amx_bf16() && detail::request_tile_permission();
  }();
  return v;
#else
  return false;
#endif
}

/// A 64-byte aligned buffer of bf16 bits that grows on demand (no per-call allocation).
class tile_buffer {
 public:
  tile_buffer() = default;
  tile_buffer(const tile_buffer&) = delete;
  tile_buffer& operator=(const tile_buffer&) = delete;
  ~tile_buffer() { release(); }
  std::uint16_t* get(index_t n) {
    if (n > size_) {
      release();
      p_ = static_cast<std::uint16_t*>(::operator new[](std::size_t(n) * 2, std::align_val_t{64}));
      size_ = n;
    }
    return p_;
  }

 private:
  void release() {
    if (p_) ::operator delete[](p_, std::align_val_t{64});
    p_ = nullptr;
    size_ = 0;
  }
  std::uint16_t* p_ = nullptr;
  index_t size_ = 0;
};
/// Packed operands of the products a thread runs.
struct workspace {
  tile_buffer a, b;
};
inline workspace& thread_workspace() {
  static thread_local workspace w;
  return w;
}

constexpr index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

// Packed A: for each 32-row panel p and 32-wide k step s, two tiles (rows 0-15, 16-31) of
// 16 x 32 bf16: offset ((p * ks + s) * 2 + t) * 512.
// Packed B: for each 32-column panel q and k step s, two tiles (columns 0-15, 16-31) of 16 rows x
// 16 pairs: element (k, j) at ((q * ks + s) * 2 + t) * 512 + ((k % 32) / 2) * 32 + (j % 16) * 2 + k % 2.

#if GENLM_HAVE_AMX
namespace detail {
struct alignas(64) tile_config {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

/// Mask of the first n of 16 lanes (n clamped to 0..16): the valid part of a ragged edge.
inline __mmask16 first_lanes(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

/// In-register transpose of a 16 x 16 block of 32-bit words.
GENLM_TARGET_AVX512BF16 inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

/// Packs rows [p0*32, p1*32) of the (rows, k) matrix X into bf16 tiles (layout above; role A:
/// tile row = one matrix row, 16 k-pairs; role B: tile row = one k-pair of 16 matrix rows).
/// Element (i, kk) is X[i*ld + kk] when k_contiguous, else X[kk*ld + i]. Zero beyond the edges.
GENLM_TARGET_AVX512BF16 inline void pack_panels(bool role_b, bool k_contiguous, index_t rows, index_t k,
                                                const float* X, index_t ld, std::uint16_t* out, index_t p0,
                                                index_t p1) {
  const index_t ks = round_up(k, 32) / 32;
  alignas(64) static constexpr std::uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                               21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                               11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(interleave);
  __m512i v[16];
  // walk the source along its contiguous dimension: panels outer when k is contiguous, k steps
  // outer otherwise (a column walk with a row stride defeats the prefetchers: 4x slower)
  const index_t np = p1 - p0, nblocks = np * ks * 2;
  for (index_t b = 0; b < nblocks; ++b) {
    const index_t t = b % 2, p = p0 + (k_contiguous ? b / 2 / ks : (b / 2) % np),
                  s = k_contiguous ? (b / 2) % ks : b / 2 / np;
    const index_t i0 = p * 32 + t * 16, k0 = s * 32;
    std::uint16_t* tile = out + ((p * ks + s) * 2 + t) * 512;
    if (k_contiguous) {  // v[r] = matrix row i0+r: 32 k values = 16 pairs
      const index_t nk = std::min<index_t>(32, k - k0);
      const __mmask16 mlo = first_lanes(nk), mhi = first_lanes(nk - 16);
      for (index_t r = 0; r < 16; ++r) {
        if (i0 + r >= rows) {
          v[r] = _mm512_setzero_si512();
          continue;
        }
        const float* x = X + (i0 + r) * ld + k0;
        const __m512 lo = _mm512_maskz_loadu_ps(mlo, x), hi = _mm512_maskz_loadu_ps(mhi, x + 16);
        v[r] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      }
      if (role_b) transpose16(v);
    } else {  // v[r] = k pair (k0+2r, k0+2r+1) of 16 matrix rows, interleaved
      const __mmask16 m = first_lanes(rows - i0);
      for (index_t r = 0; r < 16; ++r) {
        const index_t ke = k0 + 2 * r;
        const __m512 e = ke < k ? _mm512_maskz_loadu_ps(m, X + ke * ld + i0) : _mm512_setzero_ps();
        const __m512 o = ke + 1 < k ? _mm512_maskz_loadu_ps(m, X + (ke + 1) * ld + i0) : _mm512_setzero_ps();
        v[r] = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(o, e));
      }
      if (!role_b) transpose16(v);
    }
    for (index_t r = 0; r < 16; ++r) _mm512_store_si512(tile + r * 32, v[r]);
  }
}

/// C blocks (all 32-row panels) x (32-column panels [q0, q1)) from packed operands:
/// C = alpha * acc + beta * C (beta == 0 never reads C).
GENLM_TARGET_AMX inline void kernel(index_t m, index_t n, index_t ks, const std::uint16_t* pa, const std::uint16_t* pb,
                                    index_t q0, index_t q1, float alpha, float beta, float* C, index_t ldc) {
  tile_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) float acc[32 * 32];
  const index_t mpanels = round_up(m, 32) / 32;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  // rows in blocks of ~1 MiB of packed A (one A panel = ks * 2 KiB), which stay in L2 while every
  // column panel of this thread passes over them; without the blocking a 2048^3 product re-read
  // all of A from L3 for each column panel (measured 194-203 -> 225-248 GFLOP/s of CPU time, one
  // thread, alternating runs; the model's products have one block and are unchanged)
  const index_t block = std::max<index_t>(1, (index_t(1) << 20) / (ks * 2048));
  for (index_t p_lo = 0; p_lo < mpanels; p_lo += block) {
    const index_t p_hi = std::min(mpanels, p_lo + block);
    for (index_t q = q0; q < q1; ++q) {
      const std::uint16_t* bq = pb + q * ks * 1024;
      const index_t j0 = q * 32, je = std::min<index_t>(32, n - j0);
      const __mmask16 mlo = first_lanes(je), mhi = first_lanes(je - 16);
      for (index_t p = p_lo; p < p_hi; ++p) {
        const std::uint16_t* ap = pa + p * ks * 1024;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (index_t s = 0; s < ks; ++s) {
          _tile_loadd(4, ap + s * 1024, 64);
          _tile_loadd(6, bq + s * 1024, 64);
          _tile_loadd(5, ap + s * 1024 + 512, 64);
          _tile_loadd(7, bq + s * 1024 + 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, acc, 128);
        _tile_stored(1, acc + 16, 128);
        _tile_stored(2, acc + 512, 128);
        _tile_stored(3, acc + 512 + 16, 128);
        const index_t i0 = p * 32, ie = std::min<index_t>(32, m - i0);
        for (index_t i = 0; i < ie; ++i) {
          float* c = C + (i0 + i) * ldc + j0;
          __m512 lo = _mm512_mul_ps(va, _mm512_load_ps(acc + i * 32));
          __m512 hi = _mm512_mul_ps(va, _mm512_load_ps(acc + i * 32 + 16));
          if (beta != 0.f) {
            lo = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mlo, c), lo);
            hi = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mhi, c + 16), hi);
          }
          _mm512_mask_storeu_ps(c, mlo, lo);
          _mm512_mask_storeu_ps(c + 16, mhi, hi);
        }
      }
    }
  }
  _tile_release();
}
}  // namespace detail
#endif

}  // namespace genlm::amx

