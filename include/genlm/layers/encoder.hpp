// genlm/layers/encoder.hpp - a stack of N identical encoder layers (a container, not N types).
#pragma once
#include <string>
#include <vector>

#include <genlm/layers/encoder_layer.hpp>

namespace genlm {

template <class T, class Backend, attention_variant Variant = relative_key_query, class Activation = gelu>
class encoder {
 public:
  using tensor_t = tensor<T, Backend>;
  using layer_type = encoder_layer<T, Backend, Variant, Activation>;
  encoder() = default;
  /// Layers are named "<prefix>.layer.{i}" (Hugging Face: "encoder.layer.{i}").
  encoder(parameter_store<T, Backend>& ps, const std::string& prefix, index_t num_layers, const encoder_dims& d,
          std::uint64_t site_base = 100)
      : dims_(d) {
    check<shape_error>(num_layers > 0, "encoder '", prefix, "': number of layers must be positive, got ", num_layers);
    layers_.reserve(static_cast<std::size_t>(num_layers));
    for (index_t i = 0; i < num_layers; ++i)
      layers_.emplace_back(ps, prefix + ".layer." + std::to_string(i), d, site_base + 3 * std::uint64_t(i));
  }

  std::size_t num_layers() const { return layers_.size(); }
  layer_type& layer(std::size_t i) { return layers_.at(i); }
  const encoder_dims& dims() const { return dims_; }

  /// x (B, L, hidden), key mask (B, L) or nullptr -> last hidden state (B, L, hidden).
  const tensor_t& forward(const run_context& ctx, const tensor_t& x, const tensor_t* mask) {
    input_ = &x;
    const tensor_t* h = &x;
    for (auto& l : layers_) h = &l.forward(ctx, *h, mask);
    return *h;
  }
  /// Attention probabilities (B, heads, L, L) of layer i from the last forward.
  const tensor_t& attention_probs(std::size_t i) const { return layers_.at(i).attention_probs(); }

  /// Parameter gradients assigned; dx += dL/dx for the input of the last forward (accumulate
  /// false: dx = dL/dx, its old contents never read).
  void backward(const tensor_t& dy, tensor_t& dx, bool accumulate = true) {
    check(input_ != nullptr, "encoder::backward called before forward");
    const tensor_t* g = &dy;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      const tensor_t& x = i == 0 ? *input_ : layers_[i - 1].output();
      if (i == 0) {
        layers_[0].backward(x, *g, dx, accumulate);
      } else {
        tensor_t& buf = grad_[i % 2];
        buf.resize(x.shape());
        layers_[i].backward(x, *g, buf, false);  // assigns: no zeroing
        g = &buf;
      }
    }
  }

 private:
  encoder_dims dims_;
  std::vector<layer_type> layers_;
  const tensor_t* input_ = nullptr;
  tensor_t grad_[2];  // ping-pong gradient buffers between layers
};

}  // namespace genlm
