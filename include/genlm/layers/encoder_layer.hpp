// genlm/layers/encoder_layer.hpp - one post-LN transformer encoder layer (RobertaLayer):
//   a = LN(drop(attn(x) Wo^T + bo) + x);  y = LN(drop(act(a Wi^T + bi) Wo2^T + bo2) + a)
#pragma once
#include <string>

#include <genlm/layers/dropout.hpp>
#include <genlm/layers/gelu.hpp>
#include <genlm/layers/layer_norm.hpp>
#include <genlm/layers/linear.hpp>
#include <genlm/layers/relative_attention.hpp>

namespace genlm {

/// Run-time sizes of an encoder layer (the compile-time model config fills these in).
struct encoder_dims {
  index_t hidden = 0;
  index_t heads = 0;
  index_t intermediate = 0;
  index_t max_positions = 512;
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  double layer_norm_eps = 1e-12;
  double init_std = 0.02;
};

template <class T, class Backend, attention_variant Variant = relative_key_query, class Activation = gelu>
class encoder_layer {
 public:
  using tensor_t = tensor<T, Backend>;
  encoder_layer() = default;
  /// prefix: e.g. "encoder.layer.3"; dropout sites site_base .. site_base+2.
  encoder_layer(parameter_store<T, Backend>& ps, const std::string& prefix, const encoder_dims& d,
                std::uint64_t site_base)
      : name_(prefix) {
    check<shape_error>(d.intermediate > 0, "encoder_layer '", prefix, "': intermediate size must be positive, got ",
                       d.intermediate);
    attn_ = relative_attention<T, Backend, Variant>(ps, prefix + ".attention.self", d.hidden, d.heads, d.max_positions,
                                                   d.attention_dropout, site_base, d.init_std);
    attn_out_ = linear<T, Backend>(ps, prefix + ".attention.output.dense", d.hidden, d.hidden, true, d.init_std);
    ln1_ = layer_norm<T, Backend>(ps, prefix + ".attention.output.LayerNorm", d.hidden, d.layer_norm_eps);
    inter_ = linear<T, Backend>(ps, prefix + ".intermediate.dense", d.hidden, d.intermediate, true, d.init_std);
    out_dense_ = linear<T, Backend>(ps, prefix + ".output.dense", d.intermediate, d.hidden, true, d.init_std);
    ln2_ = layer_norm<T, Backend>(ps, prefix + ".output.LayerNorm", d.hidden, d.layer_norm_eps);
    drop1_ = dropout<T, Backend>(d.hidden_dropout, site_base + 1);
    drop2_ = dropout<T, Backend>(d.hidden_dropout, site_base + 2);
  }

  /// x (B, L, hidden), mask (B, L) or nullptr -> returns the layer output (B, L, hidden), owned by
  /// the layer until the next forward.
  const tensor_t& forward(const run_context& ctx, const tensor_t& x, const tensor_t* mask) {
    // Biases are fused into the op after each product: bias + dropout + residual in one pass
    // (dropout::forward_bias_residual), bias + activation in one pass where the activation offers it.
    attn_.forward(ctx, x, mask, ctx_);       // (B, L, hidden)
    attn_out_.forward_product(ctx_, h1_);    // (B, L, hidden), no bias yet
    drop1_.forward_bias_residual(ctx, h1_, attn_out_.bias_data(), x);  // h1 = drop(h1 + bo) + x
    ln1_.forward(h1_, a_);                   // a (B, L, hidden)
    inter_.forward_product(a_, i_);          // (B, L, intermediate), no bias yet
    if constexpr (requires { Activation::forward_bias(i_, inter_.bias_data(), g_); }) {
      Activation::forward_bias(i_, inter_.bias_data(), g_);  // i += bi; g = act(i)
    } else {
      if (const T* bi = inter_.bias_data()) Backend::add_bias(i_.data(), bi, i_.numel() / i_.dim(2), i_.dim(2));
      Activation::forward(i_, g_);
    }
    out_dense_.forward_product(g_, h2_);     // (B, L, hidden), no bias yet
    drop2_.forward_bias_residual(ctx, h2_, out_dense_.bias_data(), a_);  // h2 = drop(h2 + bo2) + a
    ln2_.forward(h2_, y_);
    return y_;
  }
  const tensor_t& output() const { return y_; }
  /// (B, heads, L, L) attention probabilities of the last forward.
  const tensor_t& attention_probs() const { return attn_.attention_probs(); }
  relative_attention<T, Backend, Variant>& attention() { return attn_; }

  /// Parameter gradients assigned; dx += dL/dx (x: the input of the last forward). accumulate
  /// false: dx = dL/dx (its old contents never read, so it needs no zeroing). dx must not be x or dy.
  /// Every workspace is written before it is read: no zero fills, no copies (the residual
  /// gradients are accumulated by the GEMMs that produce the branch gradients).
  void backward(const tensor_t& x, const tensor_t& dy, tensor_t& dx, bool accumulate = true) {
    // second sublayer: y = LN2(drop2(g Wo2^T + bo2) + a), g = act(a Wi^T + bi)
    d_h2_.resize(h2_.shape());
    ln2_.backward(h2_, dy, d_h2_, false);          // d(residual sum 2) = d(a) so far (residual branch)
    const tensor_t& d_o = dropped(drop2_, d_h2_, d_o_);  // d(output.dense out)
    d_g_.resize(g_.shape());
    out_dense_.backward(g_, d_o, &d_g_, false);
    if constexpr (requires { Activation::backward(i_, d_g_, d_i_, false); }) {
      d_i_.resize(i_.shape());
      Activation::backward(i_, d_g_, d_i_, false);
    } else {  // an activation whose backward only accumulates
      d_i_.resize_zero(i_.shape());
      Activation::backward(i_, d_g_, d_i_);
    }
    inter_.backward(a_, d_i_, &d_h2_);             // d(a) += d_i Wi (d_o, which may be d_h2_, is read by now)
    // first sublayer: a = LN1(drop1(ctx Wo^T + bo) + x); d(residual sum 1) is dx's residual
    // branch: written into dx itself, or (accumulating) into d_o_, free again, and added to dx
    tensor_t* d_r = &dx;
    if (accumulate) {
      d_o_.resize(h1_.shape());
      d_r = &d_o_;
    }
    ln1_.backward(h1_, d_h2_, *d_r, false);
    if (accumulate) Backend::axpy(dx.numel(), T(1), d_o_.data(), dx.data());
    const tensor_t& d_p = dropped(drop1_, *d_r, d_h1_);  // d(attention.output.dense out)
    d_ctx_.resize(ctx_.shape());
    attn_out_.backward(ctx_, d_p, &d_ctx_, false);  // reads d_p (maybe dx) before attention adds to dx
    attn_.backward(x, d_ctx_, dx);                 // dx += the attention branch
  }

 private:
  /// dy through dropout d: dy itself where the last forward dropped nothing, else buf = d'(dy).
  static const tensor_t& dropped(const dropout<T, Backend>& d, const tensor_t& dy, tensor_t& buf) {
    if (!d.active()) return dy;
    buf.resize(dy.shape());
    d.backward(dy, buf, false);
    return buf;
  }

  std::string name_;
  relative_attention<T, Backend, Variant> attn_;
  linear<T, Backend> attn_out_, inter_, out_dense_;
  layer_norm<T, Backend> ln1_, ln2_;
  dropout<T, Backend> drop1_, drop2_;
  tensor_t ctx_, h1_, a_, i_, g_, h2_, y_;         // forward activations
  tensor_t d_h2_, d_o_, d_g_, d_i_, d_h1_, d_ctx_;  // backward workspaces
};

}  // namespace genlm
