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
  /// y (rows, cols) += bias (cols, nullptr: none), then g = gelu(y) in one pass: a linear layer's
  /// bias fused with the activation; y keeps the pre-activation that backward() needs.
  template <class T, class Backend>
  static void forward_bias(tensor<T, Backend>& y, const T* bias, tensor<T, Backend>& g) {
    check<shape_error>(y.rank() >= 1, "gelu forward_bias: input must have at least one dimension");
    g.resize(y.shape());
    const index_t cols = y.dim(y.rank() - 1), rows = cols > 0 ? y.numel() / cols : 0;
    if (bias)
      Backend::bias_gelu_forward(y.data(), bias, g.data(), rows, cols);
    else
      Backend::gelu_forward(y.data(), g.data(), y.numel());
  }
  /// dx += dy * gelu'(x) (accumulate false: dx = dy * gelu'(x), its old contents never read).
  template <class T, class Backend>
  static void backward(const tensor<T, Backend>& x, const tensor<T, Backend>& dy, tensor<T, Backend>& dx,
                       bool accumulate = true) {
    expect_shape(dy.shape(), x.shape(), "gelu backward: dy");
    expect_shape(dx.shape(), x.shape(), "gelu backward: dx");
    Backend::gelu_backward(x.data(), dy.data(), dx.data(), x.numel(), accumulate);
  }
};

}  // namespace genlm
