// tests/gpu/parity.hpp - shared helpers of the CUDA parity tests (nvcc translation units only).
//
// Every test runs the same op / model on genlm::cpu (the reference) and on a CUDA backend with
// identical inputs and compares the results.
//
// Error measure ("scale-relative", as tests/test_hf_parity.cpp but without its floor of 1):
//     rel = max_i |got_i - want_i| / max(max_i |want_i|, floor)
// over the whole output tensor (floor defaults to 1e-300, i.e. none). This is the right measure
// for sums of products (GEMM, reductions, softmax): their rounding error is proportional to the
// size of the terms, not to the (possibly cancelled) result, so a per-element relative error would
// flag harmless cancellation. Non-finite values must match exactly (NaN where NaN, +-Inf where
// +-Inf) and are left out of the maximum. Data movement (fill, copy, permute, relpos_grad, dropout
// masks, clip, counts, argmin/argmax choices) is compared bit for bit.
//
// Thresholds (float / double): 1e-5 / 1e-12 for single ops; model level see test_cuda_model.cu.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/backend/cuda.cuh>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

namespace gpu_parity {

using genlm::index_t;

/// Default thresholds of single ops (scale-relative).
template <class T>
constexpr double op_tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

/// Prints measured errors when GENLM_PARITY_REPORT is set (always for `always` lines).
inline bool report_enabled() {
  static const bool on = std::getenv("GENLM_PARITY_REPORT") != nullptr;
  return on;
}

struct diff {
  double max_abs = 0;          // max |got - want| over finite pairs
  double scale = 0;            // max |want| over finite values
  double rel = 0;              // max_abs / max(scale, floor)
  std::size_t worst = 0;       // index of max_abs
  std::size_t nonfinite = 0;   // positions where got/want disagree in finiteness or NaN/Inf kind
  std::size_t first_nonfinite = 0;
  bool size_ok = true;
};

template <class T>
bool same_nonfinite(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b;  // +-Inf
}

template <class T>
diff compare(const std::vector<T>& got, const std::vector<T>& want, double floor = 1e-300) {
  diff d;
  if (got.size() != want.size()) {
    d.size_ok = false;
    return d;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!std::isfinite(g) || !std::isfinite(w)) {
      if (!same_nonfinite(g, w) && d.nonfinite++ == 0) d.first_nonfinite = i;
      continue;
    }
    d.scale = std::max(d.scale, std::abs(w));
    const double e = std::abs(g - w);
    if (e > d.max_abs) d.max_abs = e, d.worst = i;
  }
  d.rel = d.max_abs / std::max(d.scale, floor);
  return d;
}

/// First index where the bytes of got and want differ, or -1.
template <class T>
long long first_bit_difference(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) return static_cast<long long>(i);
  return -1;
}

}  // namespace gpu_parity

// CHECK that `got` (GPU) matches `want` (CPU) within `tolerance` (scale-relative).
#define GPU_CHECK_CLOSE(what, got_expr, want_expr, tolerance)                                                    \
  do {                                                                                                          \
    const auto gp_got_ = (got_expr);                                                                            \
    const auto gp_want_ = (want_expr);                                                                          \
    const ::gpu_parity::diff gp_d_ = ::gpu_parity::compare(gp_got_, gp_want_);                                  \
    if (::gpu_parity::report_enabled())                                                                         \
      std::printf("[parity] %-60s rel %.3g (max abs %.3g, scale %.3g) tol %.1g\n", std::string(what).c_str(),   \
                  gp_d_.rel, gp_d_.max_abs, gp_d_.scale, double(tolerance));                                     \
    INFO((what) << ": scale-relative error " << gp_d_.rel << " (max abs " << gp_d_.max_abs << " at " << gp_d_.worst \
                << " of " << gp_want_.size() << ", scale " << gp_d_.scale << "), tolerance " << (tolerance)          \
                << "; non-finite mismatches " << gp_d_.nonfinite << " (first at " << gp_d_.first_nonfinite << ")"); \
    REQUIRE(gp_d_.size_ok);                                                                                     \
    CHECK(gp_d_.nonfinite == 0);                                                                                \
    CHECK(gp_d_.rel <= (tolerance));                                                                            \
  } while (0)

// CHECK that `got` and `want` are bit-identical.
#define GPU_CHECK_BITWISE(what, got_expr, want_expr)                                          \
  do {                                                                                       \
    const auto gp_got_ = (got_expr);                                                         \
    const auto gp_want_ = (want_expr);                                                       \
    const long long gp_at_ = ::gpu_parity::first_bit_difference(gp_got_, gp_want_);           \
    INFO((what) << ": sizes " << gp_got_.size() << " / " << gp_want_.size()                  \
                << ", first differing element " << gp_at_);                                  \
    CHECK(gp_got_.size() == gp_want_.size());                                                \
    CHECK(gp_at_ == -1);                                                                     \
  } while (0)

namespace gpu_parity {

/// Normal(offset, scale) values from a seeded genlm::rng (deterministic on every platform).
template <class T>
std::vector<T> randn(std::size_t n, std::uint64_t seed, double scale = 1.0, double offset = 0.0) {
  genlm::rng g(seed, 0x6B0);
  std::vector<T> v(n);
  for (auto& x : v) x = T(offset + scale * g.normal());
  return v;
}
template <class T>
std::vector<T> filled(std::size_t n, T value) {
  return std::vector<T>(n, value);
}
template <class T>
std::vector<T> nans(std::size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

/// The same values in CPU memory and in CUDA device memory.
template <class T>
struct dual {
  genlm::tensor<T, genlm::cpu> h;
  genlm::tensor<T, genlm::cuda> d;
  dual() = default;
  explicit dual(const std::vector<T>& v) { set(v); }
  void set(const std::vector<T>& v) {
    const genlm::shape_t s{index_t(v.size())};
    h.from_host(s, v);
    d.from_host(s, v);
  }
  std::vector<T> ref() const { return h.to_host(); }  // the CPU backend's values
  std::vector<T> got() const { return d.to_host(); }  // the CUDA backend's values
  index_t size() const { return h.numel(); }
};

/// The pointer of x in backend B's memory (B = genlm::cpu or any genlm::cuda_backend<P>).
template <class B, class T>
T* P(dual<T>& x) {
  if constexpr (B::host_memory)
    return x.h.data();
  else
    return x.d.data();
}

template <class B>
struct tag {
  using type = B;
};

/// Runs f(tag<cpu>) then f(tag<Gpu>) and waits for the device.
template <class Gpu = genlm::cuda, class F>
void on_both(F&& f) {
  f(tag<genlm::cpu>{});
  f(tag<Gpu>{});
  Gpu::synchronize();
}

}  // namespace gpu_parity
