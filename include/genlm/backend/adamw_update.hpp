// genlm/backend/adamw_update.hpp - the element-wise AdamW update, defined once for every backend:
// the CPU backend's loops and the CUDA kernels both call these functions (no Eigen, no CUDA
// headers; __host__ __device__ under nvcc), so the two backends compute the same formula.
//
// Arithmetic is the parameters' own type T, as torch.optim.AdamW and transformers' AdamW compute
// a float32 tensor's update in float32 (float parameters: float; double parameters: double).
#pragma once
#include <cmath>
#include <limits>

#include <genlm/backend/ops_common.hpp>
#include <genlm/core/random.hpp>  // GENLM_HD

namespace genlm::optim_detail {

/// clamp(v, -c, c) written as std::clamp's definition: NaN stays NaN, c = +inf leaves v as is; a
/// select that vectorises (clip_grad_value_ and the AdamW updates).
template <class T>
GENLM_HD inline T clamp_keep_nan(T v, T c) {
  return v < -c ? -c : (c < v ? c : v);
}

/// One step's constants, computed on the host in double and rounded to T once.
template <class T>
struct coeffs {
  T b1, one_minus_b1, b2, one_minus_b2;
  T step_size;  // transformers: lr sqrt(1-b2^t) / (1-b1^t); torch: lr / (1-b1^t)
  T eps;
  T wd;     // transformers: lr * weight_decay, applied after the update (0: none)
  T decay;  // torch: 1 - lr * weight_decay, applied before the update
  T sbc2;   // torch: sqrt(1-b2^t)
  T clip;   // clip_value, +inf when clipping is off
  bool torch_style;
};

template <class T>
coeffs<T> make_coeffs(const adamw_hparams& h) {
  const double b1 = h.beta1, b2 = h.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(h.step));
  const double bc2 = 1.0 - std::pow(b2, double(h.step));
  coeffs<T> k{};
  k.b1 = T(b1);
  k.one_minus_b1 = T(1.0 - b1);
  k.b2 = T(b2);
  k.one_minus_b2 = T(1.0 - b2);
  k.eps = T(h.eps);
  k.torch_style = h.torch_style;
  k.clip = h.clip_value > 0 ? T(h.clip_value) : std::numeric_limits<T>::infinity();
  if (h.torch_style) {
    k.step_size = T(h.lr / bc1);
    k.decay = T(1.0 - h.lr * h.weight_decay);
    k.sbc2 = T(std::sqrt(bc2));
  } else {
    k.step_size = T(h.lr * std::sqrt(bc2) / bc1);
    k.wd = T(h.lr * h.weight_decay);
  }
  return k;
}

/// transformers 4.22 AdamW (the gLM reference): eps added to the raw sqrt(v), weight decay after.
template <class T>
GENLM_HD inline void update(T& p, T g, T& m, T& v, const coeffs<T>& k) {
  using std::sqrt;
  const T gi = clamp_keep_nan(g, k.clip);  // clip_grad_value_ fused
  const T mi = k.b1 * m + k.one_minus_b1 * gi;
  const T vi = k.b2 * v + k.one_minus_b2 * gi * gi;
  m = mi;
  v = vi;
  T pi = p - k.step_size * mi / (sqrt(vi) + k.eps);
  if (k.wd != T(0)) pi = pi - k.wd * pi;
  p = pi;
}

/// torch.optim.AdamW: decay first, eps added to the bias-corrected sqrt(v).
template <class T>
GENLM_HD inline void update_torch(T& p, T g, T& m, T& v, const coeffs<T>& k) {
  using std::sqrt;
  const T gi = clamp_keep_nan(g, k.clip);  // clip_grad_value_ fused
  const T pd = p * k.decay;
  const T mi = k.b1 * m + k.one_minus_b1 * gi;
  const T vi = k.b2 * v + k.one_minus_b2 * gi * gi;
  m = mi;
  v = vi;
  p = pd - k.step_size * mi / (sqrt(vi) / k.sbc2 + k.eps);
}

}  // namespace genlm::optim_detail
