// genlm/core/random.hpp - counter-based random numbers shared by every backend.
//
// Dropout masks and masking decisions are a pure function of (seed, stream, counter) via
// Philox4x32-10 (Salmon et al., SC'11), so the CPU and CUDA backends draw identical masks and a
// resumed run draws exactly what the uninterrupted run would have drawn.
#pragma once
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__AVX2__)
#include <immintrin.h>  // rng::fill_normal's AVX2 / AVX-512 Philox (GENLM_RNG_DISPATCH below)
#endif

#if defined(__CUDACC__)
#define GENLM_HD __host__ __device__
#else
#define GENLM_HD
#endif

namespace genlm {

struct philox_result {
  std::uint32_t v[4];
};

/// Philox4x32-10's round multipliers and key increments (Salmon et al.), used by every version below.
inline constexpr std::uint32_t philox_m0 = 0xD2511F53u, philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u, philox_w1 = 0xBB67AE85u;

/// Philox4x32-10 block: counter (c0..c3) under key (k0, k1).
GENLM_HD inline philox_result philox4x32(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                         std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = philox_m0, M1 = philox_m1;
  constexpr std::uint32_t W0 = philox_w0, W1 = philox_w1;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

/// G independent Philox4x32-10 blocks at once, structure of arrays (c0[j]..c3[j] is block j's
/// counter on entry and its output on return): the same rounds as philox4x32, written so that the
/// compiler vectorises across blocks (32 x 32 -> 64-bit products per lane). Host only.
template <int G>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))  // inlined into the callers' vector-ISA versions (cpu.hpp dispatch)
#endif
inline void philox4x32_lanes(std::uint32_t (&c0)[G], std::uint32_t (&c1)[G], std::uint32_t (&c2)[G],
                             std::uint32_t (&c3)[G], std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = philox_m0, M1 = philox_m1;
  constexpr std::uint32_t W0 = philox_w0, W1 = philox_w1;
  for (int round = 0; round < 10; ++round) {
    for (int j = 0; j < G; ++j) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * c0[j];
      const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * c2[j];
      const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[j] ^ k0;
      const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[j] ^ k1;
      c0[j] = n0;
      c1[j] = static_cast<std::uint32_t>(p1);
      c2[j] = n2;
      c3[j] = static_cast<std::uint32_t>(p0);
    }
    k0 += W0;
    k1 += W1;
  }
}

/// Uniform float in [0, 1) from 24 random bits.
GENLM_HD inline float uniform01(std::uint32_t bits) { return (bits >> 8) * (1.0f / 16777216.0f); }

/// SplitMix64: derives independent 64-bit keys (e.g. one per dropout site) from a seed.
GENLM_HD inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// The Philox block of the stream (key, step) that holds values i & ~3 .. (i & ~3) + 3 (lane i & 3).
GENLM_HD inline philox_result stream_block(std::uint64_t key, std::uint64_t step, std::uint64_t i) {
  return philox4x32(static_cast<std::uint32_t>(i >> 2), static_cast<std::uint32_t>(i >> 34),
                    static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
                    static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32));
}

/// Uniform [0,1) value number `i` of the stream (key, step): element i of a dropout mask.
GENLM_HD inline float stream_uniform(std::uint64_t key, std::uint64_t step, std::uint64_t i) {
  return uniform01(stream_block(key, step, i).v[i & 3u]);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__AVX2__)
#define GENLM_RNG_DISPATCH 1  // rng::fill_normal has AVX2+FMA and AVX-512 versions chosen at run time
#else
#define GENLM_RNG_DISPATCH 0
#endif

/// Host-only helpers of rng::fill_normal: Box-Muller normals rounded to float, from a log and a cos
/// that the compiler vectorises, with the same floats as std::log / std::cos give, bit for bit.
///
/// Why the floats are the same: log_unit and cos_two_pi are accurate to a few units in the last
/// place of a double, and the Box-Muller value sqrt(-2 log u1) cos(x) built from them is within a
/// relative 2^-48 of the one built from std::log / std::cos (glibc's are below 1 ulp;
/// tests/test_model.cpp measures all three: 1.4, 1.0 and 2.8 ulps at most). Rounding to float is
/// monotonic: if v (1 - 2^-36) and v (1 + 2^-36) round to the same float, every double between
/// them does, the reference value included. Values for which they differ (about one in 2^11: v
/// within 2^-36 of a midpoint between two floats) and values whose cos is near zero (|cos x| <
/// 2^-20, where the relative error of the argument reduction grows) are flagged, and the caller
/// recomputes them with std::log / std::cos.
namespace random_detail {

inline constexpr double two_pi = 6.283185307179586476925;

#if defined(__GNUC__) || defined(__clang__)
#define GENLM_RNG_INLINE inline __attribute__((always_inline))
#else
#define GENLM_RNG_INLINE inline
#endif

inline bool has_avx512() {
#if GENLM_RNG_DISPATCH
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
                        __builtin_cpu_supports("fma");
  return v;
#else
  return false;
#endif
}

inline bool has_avx2_fma() {
#if GENLM_RNG_DISPATCH
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
#else
  return false;
#endif
}

/// Scales for which normals_to_float's bounds hold (finite, nonzero, |v| far from overflow).
inline bool fast_float_scale(double scale) {
  const double a = std::fabs(scale);
  return a > 0.0 && a < 1e30;
}

/// log(x) for a positive normal double x, branch-free: x = 2^e m with m in [sqrt(1/2), sqrt(2)),
/// log m = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...) with s = (m - 1) / (m + 1), |s| <= 0.1716
/// (terms up to s^24/25: the next is below 1e-19 of the sum).
GENLM_RNG_INLINE double log_unit(double x) {
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
  // the biased exponent as a double without an int64 -> double conversion: (2^52 + b) - 2^52
  double e = std::bit_cast<double>(0x4330000000000000ull | (bits >> 52)) - 4503599627371519.0;  // - 1023
  double m = std::bit_cast<double>((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = big ? e + 1.0 : e;
  const double f = m - 1.0;  // exact (Sterbenz)
  const double s = f / (2.0 + f), z = s * s;
  double p = 1.0 / 25;
  p = p * z + 1.0 / 23;
  p = p * z + 1.0 / 21;
  p = p * z + 1.0 / 19;
  p = p * z + 1.0 / 17;
  p = p * z + 1.0 / 15;
  p = p * z + 1.0 / 13;
  p = p * z + 1.0 / 11;
  p = p * z + 1.0 / 9;
  p = p * z + 1.0 / 7;
  p = p * z + 1.0 / 5;
  p = p * z + 1.0 / 3;
  const double log_m = 2.0 * s + 2.0 * s * (z * p);
  constexpr double ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45;  // ln 2 = hi + lo
  return e * ln2_hi + (log_m + e * ln2_lo);  // e * ln2_hi is exact (|e| < 2^11, hi has 42 bits)
}

/// cos(x) for 0 <= x <= 2 pi, branch-free: x = k pi/2 + r (Cody-Waite, pi/2 in two parts), then
/// the Taylor series of sin r or cos r (|r| <= pi/4; terms up to r^17 and r^18: the next ones are
/// below 1e-19). `unsure` is set where |cos x| < 2^-20, i.e. k is odd and |r| < ~2^-20 (cos x =
/// -+sin r near zero: there the absolute error of the reduction, ~1e-25, is no longer negligible
/// relative to the result).
GENLM_RNG_INLINE double cos_two_pi(double x, std::int64_t& unsure) {
  constexpr double shifter = 0x1.8p52, two_over_pi = 0x1.45f306dc9c883p-1;
  constexpr double pio2_hi = 0x1.921fb544p+0, pio2_lo = 0x1.0b4611a626331p-34;  // pi/2 = hi + lo (+3.5e-27)
  const double t = x * two_over_pi + shifter;
  const std::uint64_t q = std::bit_cast<std::uint64_t>(t) & 3u;  // k mod 4
  const double k = t - shifter;
  const double r = (x - k * pio2_hi) - k * pio2_lo;  // x - k*pio2_hi is exact (k <= 4, hi has 33 bits)
  const double z = r * r;
  double sp = -1.0 / 355687428096000.0;  // -1/17!
  sp = sp * z + 1.0 / 1307674368000.0;
  sp = sp * z - 1.0 / 6227020800.0;
  sp = sp * z + 1.0 / 39916800.0;
  sp = sp * z - 1.0 / 362880.0;
  sp = sp * z + 1.0 / 5040.0;
  sp = sp * z - 1.0 / 120.0;
  sp = sp * z + 1.0 / 6.0;
  const double sin_r = r - r * z * sp;  // r - r^3/3! + r^5/5! ...
  double cp = 1.0 / 6402373705728000.0;  // 1/18!
  cp = cp * z - 1.0 / 20922789888000.0;
  cp = cp * z + 1.0 / 87178291200.0;
  cp = cp * z - 1.0 / 479001600.0;
  cp = cp * z + 1.0 / 3628800.0;
  cp = cp * z - 1.0 / 40320.0;
  cp = cp * z + 1.0 / 720.0;
  cp = cp * z - 1.0 / 24.0;
  const double hz = 0.5 * z, w = 1.0 - hz;
  const double cos_r = w + (((1.0 - w) - hz) - z * z * cp);  // 1 - r^2/2! + r^4/4! ...
  const double v = (q & 1u) ? sin_r : cos_r;
  unsure = std::fabs(v) < 0x1p-20 ? 1 : 0;  // only -+sin r with r tiny (|cos r| > 0.7)
  return ((q + 1u) & 2u) ? -v : v;  // q = 0: cos r, 1: -sin r, 2: -cos r, 3: sin r
}

/// v[e] = sqrt(-2 log u[2e]) cos(2 pi u[2e+1]) for e < G (u[2e] in (0, 1), u[2e+1] in [0, 1)),
/// within a relative 2^-48 of the value that std::log and std::cos give (a few ulps: measured in
/// tests/test_model.cpp); near_zero[e] != 0 where cos_two_pi cannot promise that.
template <int G>
GENLM_RNG_INLINE void box_muller_lanes(const double (&u)[2 * G], double (&v)[G], std::int64_t (&near_zero)[G]) {
  double c[G];
  for (int e = 0; e < G; ++e) {  // vectorised
    v[e] = -2.0 * log_unit(u[2 * e]);
    c[e] = cos_two_pi(two_pi * u[2 * e + 1], near_zero[e]);
  }
  for (int e = 0; e < G; ++e) v[e] = std::sqrt(v[e]);  // not vectorised (std::sqrt may set errno)
  for (int e = 0; e < G; ++e) v[e] *= c[e];            // vectorised
}

/// out[e] = float(v[e] * scale) where every double within a relative 2^-36 of v[e] * scale rounds
/// to that same float; elsewhere unsure[e] is set (bits are or-ed in) and out[e] is to be recomputed.
template <int G>
GENLM_RNG_INLINE void round_to_float_checked(const double (&v)[G], double scale, float* out,
                                             std::int64_t (&unsure)[G]) {
  constexpr double lo = 1.0 - 0x1p-36, hi = 1.0 + 0x1p-36;
  for (int e = 0; e < G; ++e) {  // vectorised
    const double x = v[e] * scale;
    const float a = static_cast<float>(x * lo), b = static_cast<float>(x * hi);
    out[e] = a;
    unsure[e] |= std::int64_t(a != b);
  }
}

/// out[e] = float(sqrt(-2 log u[2e]) cos(2 pi u[2e+1]) * scale) for e < G, the float that std::log
/// and std::cos give; unsure[e] != 0 where this cannot be decided (out[e] is then to be recomputed
/// by the caller). scale must pass fast_float_scale.
template <int G>
GENLM_RNG_INLINE void normals_to_float(const double (&u)[2 * G], double scale, float* out, std::int64_t (&unsure)[G]) {
  double v[G];
  box_muller_lanes<G>(u, v, unsure);
  round_to_float_checked<G>(v, scale, out, unsure);
}

#if GENLM_RNG_DISPATCH
/// philox4x32_lanes written with AVX2 / AVX-512 intrinsics, for fill_normal's versions of those
/// instruction sets (the compilers' own vectorisation of the plain loop differs a lot between clang
/// and g++). A vector holds 8 (16) blocks' words, packed 32-bit; the 32 x 32 -> 64-bit products are
/// those of the even and of the odd words (mul_epu32 of the words and of the words shifted down),
/// whose high and low halves are blended back into word order. Called, not inlined, from the
/// group loop (one call per 32 blocks).
#define GENLM_RNG_AVX2 __attribute__((target("avx2,fma")))
#define GENLM_RNG_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

GENLM_RNG_AVX2 GENLM_RNG_INLINE void philox_mul_avx2(__m256i x, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(x, m), po = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

template <int G>
GENLM_RNG_AVX2 __attribute__((noinline)) void philox4x32_lanes_avx2(std::uint32_t (&c0)[G], std::uint32_t (&c1)[G],
                                                                    std::uint32_t (&c2)[G], std::uint32_t (&c3)[G],
                                                                    std::uint32_t k0, std::uint32_t k1) {
  static_assert(G % 16 == 0, "philox4x32_lanes_avx2: G must be a multiple of 16");
  constexpr int V = 2;  // vectors in flight: the rounds are a chain of dependent products
  const __m256i m0 = _mm256_set1_epi64x(philox_m0), m1 = _mm256_set1_epi64x(philox_m1);
  for (int j = 0; j < G; j += 8 * V) {
    __m256i x0[V], x1[V], x2[V], x3[V];
    for (int v = 0; v < V; ++v) {
      x0[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c0 + j + 8 * v));
      x1[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c1 + j + 8 * v));
      x2[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c2 + j + 8 * v));
      x3[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c3 + j + 8 * v));
    }
    std::uint32_t a = k0, b = k1;
    for (int round = 0; round < 10; ++round) {
      const __m256i ka = _mm256_set1_epi32(static_cast<int>(a)), kb = _mm256_set1_epi32(static_cast<int>(b));
      for (int v = 0; v < V; ++v) {
        __m256i hi0, lo0, hi1, lo1;
        philox_mul_avx2(x0[v], m0, hi0, lo0);
        philox_mul_avx2(x2[v], m1, hi1, lo1);
        x0[v] = _mm256_xor_si256(_mm256_xor_si256(hi1, x1[v]), ka);
        x1[v] = lo1;
        x2[v] = _mm256_xor_si256(_mm256_xor_si256(hi0, x3[v]), kb);
        x3[v] = lo0;
      }
      a += philox_w0;
      b += philox_w1;
    }
    for (int v = 0; v < V; ++v) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0 + j + 8 * v), x0[v]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1 + j + 8 * v), x1[v]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c2 + j + 8 * v), x2[v]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c3 + j + 8 * v), x3[v]);
    }
  }
}

// (the maskz forms with every lane set: g++ 12's plain _mm512_mul_epu32 / _mm512_s?li_epi64 warn
// "used uninitialized" under -Wall, a bug of its header; the results are the same)
GENLM_RNG_AVX512 GENLM_RNG_INLINE void philox_mul_avx512(__m512i x, __m512i m, __m512i& hi, __m512i& lo) {
  constexpr __mmask8 all = 0xFF;
  const __m512i pe = _mm512_maskz_mul_epu32(all, x, m);
  const __m512i po = _mm512_maskz_mul_epu32(all, _mm512_maskz_srli_epi64(all, x, 32), m);
  hi = _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_maskz_srli_epi64(all, pe, 32), po);
  lo = _mm512_mask_blend_epi32(__mmask16(0xAAAA), pe, _mm512_maskz_slli_epi64(all, po, 32));
}

template <int G>
GENLM_RNG_AVX512 __attribute__((noinline)) void philox4x32_lanes_avx512(std::uint32_t (&c0)[G], std::uint32_t (&c1)[G],
                                                                        std::uint32_t (&c2)[G], std::uint32_t (&c3)[G],
                                                                        std::uint32_t k0, std::uint32_t k1) {
  static_assert(G % 32 == 0, "philox4x32_lanes_avx512: G must be a multiple of 32");
  constexpr int V = 2;  // vectors in flight
  const __m512i m0 = _mm512_set1_epi64(philox_m0), m1 = _mm512_set1_epi64(philox_m1);
  for (int j = 0; j < G; j += 16 * V) {
    __m512i x0[V], x1[V], x2[V], x3[V];
    for (int v = 0; v < V; ++v) {
      x0[v] = _mm512_loadu_si512(c0 + j + 16 * v), x1[v] = _mm512_loadu_si512(c1 + j + 16 * v);
      x2[v] = _mm512_loadu_si512(c2 + j + 16 * v), x3[v] = _mm512_loadu_si512(c3 + j + 16 * v);
    }
    std::uint32_t a = k0, b = k1;
    for (int round = 0; round < 10; ++round) {
      const __m512i ka = _mm512_set1_epi32(static_cast<int>(a)), kb = _mm512_set1_epi32(static_cast<int>(b));
      for (int v = 0; v < V; ++v) {
        __m512i hi0, lo0, hi1, lo1;
        philox_mul_avx512(x0[v], m0, hi0, lo0);
        philox_mul_avx512(x2[v], m1, hi1, lo1);
        x0[v] = _mm512_xor_si512(_mm512_xor_si512(hi1, x1[v]), ka);
        x1[v] = lo1;
        x2[v] = _mm512_xor_si512(_mm512_xor_si512(hi0, x3[v]), kb);
        x3[v] = lo0;
      }
      a += philox_w0;
      b += philox_w1;
    }
    for (int v = 0; v < V; ++v) {
      _mm512_storeu_si512(c0 + j + 16 * v, x0[v]);
      _mm512_storeu_si512(c1 + j + 16 * v, x1[v]);
      _mm512_storeu_si512(c2 + j + 16 * v, x2[v]);
      _mm512_storeu_si512(c3 + j + 16 * v, x3[v]);
    }
  }
}
#endif

/// The instruction sets rng::fill_normal can be asked to use (tests compare them); `best` picks the
/// widest this CPU has. Without run-time dispatch (non-x86, or a build that targets AVX2 already)
/// every choice runs the one compiled version. nvcc-compiled files get the dispatch too (host code),
/// so that fill_normal has one definition in a program that mixes them.
enum class vector_isa { best, generic, avx2, avx512 };

inline bool isa_available(vector_isa isa) {
  if (!GENLM_RNG_DISPATCH) return true;  // the one compiled version
  switch (isa) {
    case vector_isa::avx512: return has_avx512();
    case vector_isa::avx2: return has_avx2_fma();
    default: return true;
  }
}

}  // namespace random_detail

/// A small seeded host generator for initialisation, masking and sampling (deterministic across
/// platforms: no std::distributions, whose output is implementation-defined).
class rng {
 public:
  explicit rng(std::uint64_t seed = 0, std::uint64_t stream = 0) : key_(splitmix64(seed ^ splitmix64(stream))) {}
  std::uint64_t next_u64() {
    const philox_result r = philox4x32(static_cast<std::uint32_t>(counter_), static_cast<std::uint32_t>(counter_ >> 32), 0u,
                                       0u, static_cast<std::uint32_t>(key_), static_cast<std::uint32_t>(key_ >> 32));
    ++counter_;
    return (static_cast<std::uint64_t>(r.v[0]) << 32) | r.v[1];
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return to_uniform(next_u64()); }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n ? next_u64() % n : 0; }
  /// Standard normal (Box-Muller, one value per call).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return box_muller(u1, u2);
  }
  /// out[j] = T(normal() * scale) for j = 0..n-1, the same values (bit for bit) and the same final
  /// state as that loop, but with the Philox blocks of 16 values drawn at once (vectorised): model
  /// initialisation draws one per weight (278M for configs::paper). For float, the log and cos of
  /// each group are computed by random_detail's vectorised functions as well, and a value is kept
  /// only where they decide its float for certain; the few others are recomputed with std::log and
  /// std::cos (random_detail::normals_to_float). Host only.
  /// `isa` (tests) picks the compiled version; one the CPU lacks is an error.
  template <class T>
  void fill_normal(T* out, std::size_t n, double scale,
                   random_detail::vector_isa isa = random_detail::vector_isa::best) {
    using random_detail::vector_isa;
    if (!random_detail::isa_available(isa)) throw std::invalid_argument("rng::fill_normal: this CPU lacks the instruction set asked for");
    std::size_t j;
#if GENLM_RNG_DISPATCH
    if (isa == vector_isa::best)
      isa = random_detail::has_avx512() ? vector_isa::avx512
            : random_detail::has_avx2_fma() ? vector_isa::avx2 : vector_isa::generic;
    if constexpr (std::is_same_v<T, float>)
      j = isa == vector_isa::avx512 ? fill_normal_float_avx512(out, n, scale)
          : isa == vector_isa::avx2 ? fill_normal_float_avx2(out, n, scale)
                                    : fill_normal_groups(out, n, scale);
    else
      j = fill_normal_groups(out, n, scale);
#else
    j = fill_normal_groups(out, n, scale);
#endif
    for (; j < n; ++j) out[j] = T(normal() * scale);
  }
  std::uint64_t key() const { return key_; }
  std::uint64_t counter() const { return counter_; }

 private:
  /// The uniform of 64 random bits (their top 53) and the normal of two uniforms, shared by
  /// uniform()/normal() and fill_normal, whose values must be theirs bit for bit.
  static double to_uniform(std::uint64_t bits) { return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0); }
  static double box_muller(double u1, double u2) {
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(random_detail::two_pi * u2);
  }

  /// fill_normal's whole groups of 16 values; returns how many values it wrote (it stops before a
  /// group whose first uniform of a pair is 0, which normal() would redraw). For float (and a scale
  /// that fast_float_scale accepts) the normals come from random_detail::normals_to_float.
  template <random_detail::vector_isa Isa = random_detail::vector_isa::generic, class T>
#if defined(__GNUC__) || defined(__clang__)
  __attribute__((always_inline))  // inlined into fill_normal_float_avx2 / _avx512 as well
#endif
  inline std::size_t fill_normal_groups(T* out, std::size_t n, double scale) {
    constexpr int G = 16, U = 2 * G;  // values per group, uniforms (= Philox blocks) per group
    const auto k0 = static_cast<std::uint32_t>(key_), k1 = static_cast<std::uint32_t>(key_ >> 32);
    bool fast = false;  // the vectorised log / cos (float only, and scales they hold for)
    if constexpr (std::is_same_v<T, float>) fast = random_detail::fast_float_scale(scale);
    std::size_t j = 0;
    for (; j + G <= n; j += G) {
      std::uint32_t c0[U], c1[U], c2[U], c3[U];
      for (int t = 0; t < U; ++t) {
        const std::uint64_t c = counter_ + std::uint64_t(t);
        c0[t] = static_cast<std::uint32_t>(c), c1[t] = static_cast<std::uint32_t>(c >> 32), c2[t] = c3[t] = 0u;
      }
#if GENLM_RNG_DISPATCH
      if constexpr (Isa == random_detail::vector_isa::avx512)
        random_detail::philox4x32_lanes_avx512<U>(c0, c1, c2, c3, k0, k1);
      else if constexpr (Isa == random_detail::vector_isa::avx2)
        random_detail::philox4x32_lanes_avx2<U>(c0, c1, c2, c3, k0, k1);
      else
#endif
        philox4x32_lanes<U>(c0, c1, c2, c3, k0, k1);
      double u[U];
      for (int t = 0; t < U; ++t)
        u[t] = to_uniform((static_cast<std::uint64_t>(c0[t]) << 32) | c1[t]);  // next_u64()'s bits
      bool zero = false;  // normal() redraws u1 = 0 (p = 2^-53), which shifts the pairs: finish serially
      for (int e = 0; e < G; ++e) zero = zero || u[2 * e] <= 0.0;
      if (zero) break;
      std::int64_t unsure[G];
      if constexpr (std::is_same_v<T, float>) {
        if (fast) random_detail::normals_to_float<G>(u, scale, out + j, unsure);
      }
      for (int e = 0; e < G; ++e)
        if (!fast || unsure[e]) out[j + std::size_t(e)] = T(box_muller(u[2 * e], u[2 * e + 1]) * scale);
      counter_ += U;
    }
    return j;
  }
#if GENLM_RNG_DISPATCH
  __attribute__((target("avx2,fma"), noinline)) std::size_t fill_normal_float_avx2(float* out, std::size_t n,
                                                                                   double scale) {
    return fill_normal_groups<random_detail::vector_isa::avx2>(out, n, scale);
  }
  __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), noinline)) std::size_t fill_normal_float_avx512(
      float* out, std::size_t n, double scale) {
    return fill_normal_groups<random_detail::vector_isa::avx512>(out, n, scale);
  }
#endif

 public:
  /// Restores a saved state (checkpoints).
  void set_state(std::uint64_t key, std::uint64_t counter) {
    key_ = key;
    counter_ = counter;
  }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

}  // namespace genlm
