// genlm/layers/gelu.hpp - activation functions as types (exact erf GELU, as transformers' "gelu").
#pragma once
#include <genlm/core/tensor.hpp>

namespace genlm {

/// Exact GELU: x * Phi(x). Stateless; backward needs the forward input.
struct gelu {
  static constexpr const char* name = "gelu";
  template <class T, class Backend>
  static void forward(const tensor<T, Backend>& x, tensor<T, Backend>& y) {
    y.resize(x.shape());
    Backend::gelu_forward(x.data(), y.data(), x.numel());
  }
  /// dx += dy * gelu'(x)
  template <class T, class Backend>
  static void backward(const tensor<T, Backend>& x, const tensor<T, Backend>& dy, tensor<T, Backend>& dx) {
    expect_shape(dy.shape(), x.shape(), "gelu backward: dy");
    expect_shape(dx.shape(), x.shape(), "gelu backward: dx");
    Backend::gelu_backward(x.data(), dy.data(), dx.data(), x.numel());
  }
};

}  // namespace genlm
