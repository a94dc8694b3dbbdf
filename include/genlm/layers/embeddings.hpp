// genlm/layers/embeddings.hpp - RoBERTa embeddings fed with inputs_embeds under relative position
// attention: y = dropout(LN(x + token_type_embeddings[0])). No absolute positions are added.
#pragma once
#include <string>

#include <genlm/layers/dropout.hpp>
#include <genlm/layers/layer_norm.hpp>

namespace genlm {

template <class T, class Backend>
class input_embeddings {
 public:
  using tensor_t = tensor<T, Backend>;
  input_embeddings() = default;
  /// Declares "<prefix>.token_type_embeddings.weight" (1, hidden) and "<prefix>.LayerNorm.*".
  input_embeddings(parameter_store<T, Backend>& ps, const std::string& prefix, index_t hidden, double eps,
                   double hidden_dropout, std::uint64_t dropout_site, double init_std = 0.02)
      : ps_(&ps), hidden_(hidden) {
    tt_ = ps.add(prefix + ".token_type_embeddings.weight", {1, hidden}, init_kind::normal, init_std);
    ln_ = layer_norm<T, Backend>(ps, prefix + ".LayerNorm", hidden, eps);
    drop_ = dropout<T, Backend>(hidden_dropout, dropout_site);
  }

  /// x (..., hidden) -> (..., hidden), owned by the layer.
  const tensor_t& forward(const run_context& ctx, const tensor_t& x) {
    sum_ = x;
    Backend::add_bias(sum_.data(), ps_->value(tt_), sum_.numel() / hidden_, hidden_);
    ln_.forward(sum_, y_);
    drop_.forward(ctx, y_, y_);
    return y_;
  }
  const tensor_t& output() const { return y_; }

  /// Parameter gradients assigned; dx += dL/dx (accumulate false: dx = dL/dx, its old contents
  /// never read). dx must not be dy.
  void backward(const tensor_t& dy, tensor_t& dx, bool accumulate = true) {
    const tensor_t* g = &dy;  // dy through the dropout (dy itself where it dropped nothing)
    if (drop_.active()) {
      d_y_.resize(dy.shape());
      drop_.backward(dy, d_y_, false);
      g = &d_y_;
    }
    tensor_t* d_sum = &dx;  // d(x + token type): dx itself unless accumulating
    if (accumulate) {
      d_sum_.resize(sum_.shape());
      d_sum = &d_sum_;
    }
    ln_.backward(sum_, *g, *d_sum, false);
    Backend::sum_rows(d_sum->data(), d_sum->numel() / hidden_, hidden_, ps_->grad(tt_), T(0));
    if (accumulate) Backend::axpy(dx.numel(), T(1), d_sum_.data(), dx.data());
  }

 private:
  parameter_store<T, Backend>* ps_ = nullptr;
  index_t hidden_ = 0;
  param_id tt_;
  layer_norm<T, Backend> ln_;
  dropout<T, Backend> drop_;
  tensor_t sum_, y_, d_y_, d_sum_;
};

}  // namespace genlm
