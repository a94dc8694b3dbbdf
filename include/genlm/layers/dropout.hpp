// genlm/layers/dropout.hpp - inverted dropout with counter-based, seeded masks.
//
// The mask of a call is a pure function of (run_context::seed, this site's id, run_context::step),
// so CPU and CUDA backends agree and resumed training reproduces the uninterrupted run.
#pragma once
#include <cstdint>

#include <genlm/core/parameters.hpp>

namespace genlm {

template <class T, class Backend>
class dropout {
 public:
  dropout() = default;
  /// `site` distinguishes dropout sites of a model (each gets its own random stream).
  dropout(double p, std::uint64_t site) : p_(p), site_(site) {
    check<value_error>(p >= 0.0 && p < 1.0, "dropout: probability must be in [0, 1), got ", p);
  }
  double p() const { return p_; }

  /// y = x * keep / (1 - p) in training (p > 0), else a copy of x. y may be x (in place).
  void forward(const run_context& ctx, const tensor<T, Backend>& x, tensor<T, Backend>& y) {
    active_ = ctx.training && p_ > 0.0;
    if (&y != &x) y.resize(x.shape());
    if (!active_) {
      if (&y != &x) Backend::copy(y.data(), x.data(), x.numel());
      return;
    }
    keep_.resize(x.shape());
    Backend::dropout_forward(x.data(), y.data(), keep_.data(), x.numel(), p_, splitmix64(ctx.seed ^ splitmix64(site_)),
                             ctx.step);
  }
  /// y = dropout(y + bias) + residual in one pass (bias (cols) or nullptr; residual of y's shape,
  /// not y itself): a linear layer's bias, this dropout and the residual sum of a transformer
  /// sublayer; the same values and mask as add_bias, forward() and add. backward() then
  /// propagates through the dropout as after forward().
  void forward_bias_residual(const run_context& ctx, tensor<T, Backend>& y, const T* bias,
                             const tensor<T, Backend>& residual) {
    expect_shape(residual.shape(), y.shape(), "dropout forward_bias_residual: residual");
    check<shape_error>(y.rank() >= 1 && &residual != &y, "dropout forward_bias_residual: the residual must be a "
                       "tensor other than y, of y's shape (rank >= 1)");
    active_ = ctx.training && p_ > 0.0;
    const index_t cols = y.dim(y.rank() - 1), rows = cols > 0 ? y.numel() / cols : 0;
    if (active_) keep_.resize(y.shape());
    Backend::bias_dropout_add(y.data(), bias, residual.data(), active_ ? keep_.data() : nullptr, rows, cols, p_,
                              splitmix64(ctx.seed ^ splitmix64(site_)), ctx.step);
  }
  /// dx (+)= dy * keep / (1 - p); dx may be dy with accumulate == false.
  void backward(const tensor<T, Backend>& dy, tensor<T, Backend>& dx, bool accumulate) const {
    expect_shape(dx.shape(), dy.shape(), "dropout backward: dx");
    if (!active_) {
      if (accumulate)
        Backend::axpy(dy.numel(), T(1), dy.data(), dx.data());
      else if (&dx != &dy)
        Backend::copy(dx.data(), dy.data(), dy.numel());
      return;
    }
    Backend::dropout_backward(dy.data(), keep_.data(), dx.data(), dy.numel(), p_, accumulate);
  }
  bool active() const { return active_; }

 private:
  double p_ = 0.0;
  std::uint64_t site_ = 0;
  bool active_ = false;
  tensor<std::uint8_t, Backend> keep_;
};

}  // namespace genlm
