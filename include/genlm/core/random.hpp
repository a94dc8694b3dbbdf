// genlm/core/random.hpp - counter-based random numbers shared by every backend.
//
// Dropout masks and masking decisions are a pure function of (seed, stream, counter) via
// Philox4x32-10 (Salmon et al., SC'11), so the CPU and CUDA backends draw identical masks and a
// resumed run draws exactly what the uninterrupted run would have drawn.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define GENLM_HD __host__ __device__
#else
#define GENLM_HD
#endif

namespace genlm {

struct philox_result {
  std::uint32_t v[4];
};

/// Philox4x32-10 block: counter (c0..c3) under key (k0, k1).
GENLM_HD inline philox_result philox4x32(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                         std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
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
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
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
  /// initialisation draws one per weight (278M for configs::paper). Host only.
  template <class T>
  void fill_normal(T* out, std::size_t n, double scale) {
    constexpr int G = 16, U = 2 * G;  // values per group, uniforms (= Philox blocks) per group
    const auto k0 = static_cast<std::uint32_t>(key_), k1 = static_cast<std::uint32_t>(key_ >> 32);
    std::size_t j = 0;
    for (; j + G <= n; j += G) {
      std::uint32_t c0[U], c1[U], c2[U], c3[U];
      for (int t = 0; t < U; ++t) {
        const std::uint64_t c = counter_ + std::uint64_t(t);
        c0[t] = static_cast<std::uint32_t>(c), c1[t] = static_cast<std::uint32_t>(c >> 32), c2[t] = c3[t] = 0u;
      }
      philox4x32_lanes<U>(c0, c1, c2, c3, k0, k1);
      double u[U];
      for (int t = 0; t < U; ++t)
        u[t] = to_uniform((static_cast<std::uint64_t>(c0[t]) << 32) | c1[t]);  // next_u64()'s bits
      bool zero = false;  // normal() redraws u1 = 0 (p = 2^-53), which shifts the pairs: finish serially
      for (int e = 0; e < G; ++e) zero = zero || u[2 * e] <= 0.0;
      if (zero) break;
      for (int e = 0; e < G; ++e)
        out[j + std::size_t(e)] = T(box_muller(u[2 * e], u[2 * e + 1]) * scale);
      counter_ += U;
    }
    for (; j < n; ++j) out[j] = T(normal() * scale);
  }
  std::uint64_t key() const { return key_; }
  std::uint64_t counter() const { return counter_; }

 private:
  /// The uniform of 64 random bits (their top 53) and the normal of two uniforms, shared by
  /// uniform()/normal() and fill_normal, whose values must be theirs bit for bit.
  static double to_uniform(std::uint64_t bits) { return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0); }
  static double box_muller(double u1, double u2) {
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  }

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
