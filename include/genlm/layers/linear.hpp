// genlm/layers/linear.hpp - y = x W^T + b (torch.nn.Linear; weight stored [out, in]).
#pragma once
#include <string>

#include <genlm/core/parameters.hpp>

namespace genlm {

template <class T, class Backend>
class linear {
 public:
  linear() = default;
  /// Declares "<prefix>.weight" (out, in) and "<prefix>.bias" (out).
  linear(parameter_store<T, Backend>& ps, const std::string& prefix, index_t in, index_t out, bool bias = true,
         double init_std = 0.02)
      : ps_(&ps), name_(prefix), in_(in), out_(out) {
    check<shape_error>(in > 0 && out > 0, "linear '", prefix, "': sizes must be positive, got in=", in, " out=", out);
    w_ = ps.add(prefix + ".weight", {out, in}, init_kind::normal, init_std);
    if (bias) b_ = ps.add(prefix + ".bias", {out}, init_kind::zeros);
    has_bias_ = bias;
  }

  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }
  const std::string& name() const { return name_; }

  /// x (N, in) -> y (N, out); x may have any leading shape whose last dim is `in`.
  void forward(const tensor<T, Backend>& x, tensor<T, Backend>& y) const {
    forward_product(x, y);  // checks x; y (rows, out_)
    if (has_bias_) Backend::add_bias(y.data(), bias_data(), y.numel() / out_, out_);
  }
  /// y = x W^T without the bias, for callers that fuse the bias into the next op (an activation, or
  /// dropout + residual: see encoder_layer); they add bias_data() themselves.
  void forward_product(const tensor<T, Backend>& x, tensor<T, Backend>& y) const {
    const index_t n = rows_of(x);
    y.resize(out_shape(x));
    Backend::gemm(false, true, n, out_, in_, T(1), x.data(), in_, ps_->value(w_), in_, T(0), y.data(), out_);
  }
  /// The bias (out), or nullptr for a layer without one.
  const T* bias_data() const { return has_bias_ ? ps_->value(b_) : nullptr; }

  /// Parameter gradients assigned (dW = dy^T x, db = sum dy); dx += dy W when dx != nullptr
  /// (accumulate false: dx = dy W, dx's old contents never read, so it needs no zeroing).
  void backward(const tensor<T, Backend>& x, const tensor<T, Backend>& dy, tensor<T, Backend>* dx,
                bool accumulate = true) {
    const index_t n = rows_of(x);
    expect_shape(dy.shape(), out_shape(x), "linear '", name_, "' backward: dy");
    Backend::gemm(true, false, out_, in_, n, T(1), dy.data(), out_, x.data(), in_, T(0), ps_->grad(w_), in_);
    if (has_bias_) Backend::sum_rows(dy.data(), n, out_, ps_->grad(b_), T(0));
    if (dx) {
      expect_shape(dx->shape(), x.shape(), "linear '", name_, "' backward: dx");
      Backend::gemm(false, false, n, in_, out_, T(1), dy.data(), out_, ps_->value(w_), in_, T(accumulate ? 1 : 0),
                    dx->data(), in_);
    }
  }

  param_id weight() const { return w_; }
  param_id bias() const { return b_; }

 private:
  index_t rows_of(const tensor<T, Backend>& x) const {
    check<shape_error>(x.rank() >= 1 && x.dim(x.rank() - 1) == in_, "linear '", name_, "': input shape ",
                       x.shape(), ", expected last dimension ", in_);
    return x.numel() / in_;
  }
  shape_t out_shape(const tensor<T, Backend>& x) const { return x.shape().with_last(out_); }

  parameter_store<T, Backend>* ps_ = nullptr;
  std::string name_;
  index_t in_ = 0, out_ = 0;
  param_id w_, b_;
  bool has_bias_ = true;
};

}  // namespace genlm
