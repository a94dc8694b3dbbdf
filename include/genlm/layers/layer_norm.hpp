// genlm/layers/layer_norm.hpp - LayerNorm over the last dimension (torch.nn.LayerNorm).
#pragma once
#include <string>

#include <genlm/core/parameters.hpp>

namespace genlm {

template <class T, class Backend>
class layer_norm {
 public:
  layer_norm() = default;
  /// Declares "<prefix>.weight" (dim, ones) and "<prefix>.bias" (dim, zeros).
  layer_norm(parameter_store<T, Backend>& ps, const std::string& prefix, index_t dim, double eps = 1e-12)
      : ps_(&ps), name_(prefix), dim_(dim), eps_(eps) {
    check<shape_error>(dim > 0, "layer_norm '", prefix, "': dim must be positive, got ", dim);
    check<value_error>(eps >= 0, "layer_norm '", prefix, "': eps must be >= 0, got ", eps);
    g_ = ps.add(prefix + ".weight", {dim}, init_kind::ones);
    b_ = ps.add(prefix + ".bias", {dim}, init_kind::zeros);
  }

  double eps() const { return eps_; }

  /// x (..., dim) -> y (..., dim); keeps per-row mean and 1/std for backward.
  void forward(const tensor<T, Backend>& x, tensor<T, Backend>& y) {
    const index_t n = rows_of(x);
    y.resize(x.shape());
    mean_.resize({n});
    rstd_.resize({n});
    Backend::layer_norm_forward(x.data(), ps_->value(g_), ps_->value(b_), y.data(), mean_.data(), rstd_.data(), n,
                                dim_, eps_);
  }

  /// Gradients of gamma/beta assigned; dx += ... (accumulate false: dx = ..., its old contents
  /// never read). x must be the input of the last forward.
  void backward(const tensor<T, Backend>& x, const tensor<T, Backend>& dy, tensor<T, Backend>& dx,
                bool accumulate = true) {
    const index_t n = rows_of(x);
    expect_shape(dy.shape(), x.shape(), "layer_norm '", name_, "' backward: dy");
    expect_shape(dx.shape(), x.shape(), "layer_norm '", name_, "' backward: dx");
    check<shape_error>(mean_.numel() == n, "layer_norm '", name_, "': backward without matching forward");
    Backend::layer_norm_backward(dy.data(), x.data(), ps_->value(g_), mean_.data(), rstd_.data(), dx.data(),
                                 ps_->grad(g_), ps_->grad(b_), n, dim_, accumulate);
  }

 private:
  index_t rows_of(const tensor<T, Backend>& x) const {
    check<shape_error>(x.rank() >= 1 && x.dim(x.rank() - 1) == dim_, "layer_norm '", name_, "': input shape ",
                       x.shape(), ", expected last dimension ", dim_);
    return x.numel() / dim_;
  }
  parameter_store<T, Backend>* ps_ = nullptr;
  std::string name_;
  index_t dim_ = 0;
  double eps_ = 1e-12;
  param_id g_, b_;
  tensor<T, Backend> mean_, rstd_;  // (rows)
};

}  // namespace genlm
