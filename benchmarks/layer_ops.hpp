// benchmarks/layer_ops.hpp - one layer's forward or backward as a closure, on any backend: the
// layer benchmarks of the CPU (bench_layers.cpp: 1 and 2 threads, wall clock) and of CUDA
// (bench_cuda.cu: layer/<p>/<cfg>/B<b>/..., GPU event time) build the same layers on the same
// random inputs through these factories, so the two measure the same work.
//
// Each make_*_op<Backend>(B, L, ...) builds the layer (parameters initialised, seed 1), random
// inputs (B, L, width) on the backend and, for layers whose backward reads the forward's cache,
// runs one forward; the returned closure runs one forward (training mode: dropout on) or one
// backward (parameter gradients and dx) and owns everything it touches. Backward passes that the
// model runs with dx assigned (accumulate = false: layer norm, GELU, the encoder layer; since the
// twentieth session) are timed that way; the linear layer and the attention accumulate into dx.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include <genlm/core/parameters.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/layers/dropout.hpp>
#include <genlm/layers/encoder_layer.hpp>
#include <genlm/layers/gelu.hpp>
#include <genlm/layers/layer_norm.hpp>
#include <genlm/layers/linear.hpp>
#include <genlm/layers/relative_attention.hpp>

#include "common.hpp"

namespace genlm::bench {

/// Widths of a layer benchmark: the paper's (hidden 1280, 10 heads, FFN 3072) or the small one.
struct layer_dims {
  index_t hidden, heads, ffn;
};
inline constexpr layer_dims paper_layer_dims{1280, 10, 3072}, small_layer_dims{128, 4, 512};

namespace layer_ops_detail {
inline run_context train_ctx() {
  run_context c;
  c.training = true;
  c.seed = 1;
  return c;
}
/// The state a closure keeps alive: parameters, inputs x (B, L, in), upstream gradient dy
/// (B, L, out), outputs and dx.
template <class Backend>
struct io {
  using tensor_t = tensor<float, Backend>;
  parameter_store<float, Backend> ps;
  tensor_t x, y, dx, dy, mask;
  io(index_t B, index_t L, index_t in, index_t out) {
    x = rand_tensor<Backend>({B, L, in}, 2);
    dy = rand_tensor<Backend>({B, L, out}, 3);
    dx.resize_zero(x.shape());
    mask = tensor_t::from_host_data({B, L}, std::vector<float>(std::size_t(B * L), 1.0f));
  }
  void init() {
    ps.finalize();
    ps.initialize(1);
  }
};
}  // namespace layer_ops_detail

/// A linear layer in -> out (with bias): forward y = x W^T + b, backward dW, db, dx.
template <class Backend>
std::function<void()> make_linear_op(index_t B, index_t L, index_t in, index_t out, bool backward) {
  struct state : layer_ops_detail::io<Backend> {
    linear<float, Backend> lin;
    state(index_t B_, index_t L_, index_t i, index_t o)
        : layer_ops_detail::io<Backend>(B_, L_, i, o), lin(this->ps, "lin", i, o) {
      this->init();
    }
  };
  auto s = std::make_shared<state>(B, L, in, out);
  if (backward) return [s] { s->lin.backward(s->x, s->dy, &s->dx); };
  return [s] { s->lin.forward(s->x, s->y); };
}

/// LayerNorm over hidden (eps 1e-12).
template <class Backend>
std::function<void()> make_layer_norm_op(index_t B, index_t L, layer_dims d, bool backward) {
  struct state : layer_ops_detail::io<Backend> {
    layer_norm<float, Backend> ln;
    state(index_t B_, index_t L_, index_t h) : layer_ops_detail::io<Backend>(B_, L_, h, h), ln(this->ps, "ln", h, 1e-12) {
      this->init();
      ln.forward(this->x, this->y);
    }
  };
  auto s = std::make_shared<state>(B, L, d.hidden);
  if (backward) return [s] { s->ln.backward(s->x, s->dy, s->dx, false); };  // dx assigned, as in the model
  return [s] { s->ln.forward(s->x, s->y); };
}

/// Exact GELU on (B, L, ffn).
template <class Backend>
std::function<void()> make_gelu_op(index_t B, index_t L, layer_dims d, bool backward) {
  auto s = std::make_shared<layer_ops_detail::io<Backend>>(B, L, d.ffn, d.ffn);
  if (backward) return [s] { gelu::backward(s->x, s->dy, s->dx, false); };  // dx assigned, as in the model
  return [s] { gelu::forward(s->x, s->y); };
}

/// Dropout p = 0.1 on (B, L, hidden).
template <class Backend>
std::function<void()> make_dropout_op(index_t B, index_t L, layer_dims d, bool backward) {
  struct state : layer_ops_detail::io<Backend> {
    dropout<float, Backend> dr{0.1, 1};
    run_context ctx = layer_ops_detail::train_ctx();
    state(index_t B_, index_t L_, index_t h) : layer_ops_detail::io<Backend>(B_, L_, h, h) {
      dr.forward(ctx, this->x, this->y);
    }
  };
  auto s = std::make_shared<state>(B, L, d.hidden);
  if (backward) return [s] { s->dr.backward(s->dy, s->dx, false); };
  return [s] { s->dr.forward(s->ctx, s->x, s->y); };
}

/// Relative-position self-attention (relative_key_query, 512 positions, attention dropout 0.1)
/// including the q/k/v projections.
template <class Backend>
std::function<void()> make_attention_op(index_t B, index_t L, layer_dims d, bool backward) {
  struct state : layer_ops_detail::io<Backend> {
    relative_attention<float, Backend> at;
    run_context ctx = layer_ops_detail::train_ctx();
    state(index_t B_, index_t L_, layer_dims dd)
        : layer_ops_detail::io<Backend>(B_, L_, dd.hidden, dd.hidden), at(this->ps, "attn", dd.hidden, dd.heads, 512, 0.1, 1) {
      this->init();
      at.forward(ctx, this->x, &this->mask, this->y);
    }
  };
  auto s = std::make_shared<state>(B, L, d);
  if (backward) return [s] { s->at.backward(s->x, s->dy, s->dx); };
  return [s] { s->at.forward(s->ctx, s->x, &s->mask, s->y); };
}

/// One encoder layer: attention, output projection, FFN, two LayerNorms, dropouts.
template <class Backend>
std::function<void()> make_encoder_layer_op(index_t B, index_t L, layer_dims d, bool backward) {
  struct state : layer_ops_detail::io<Backend> {
    encoder_layer<float, Backend> layer;
    run_context ctx = layer_ops_detail::train_ctx();
    static encoder_dims dims_of(layer_dims dd) {
      encoder_dims e;
      e.hidden = dd.hidden;
      e.heads = dd.heads;
      e.intermediate = dd.ffn;
      return e;
    }
    state(index_t B_, index_t L_, layer_dims dd)
        : layer_ops_detail::io<Backend>(B_, L_, dd.hidden, dd.hidden), layer(this->ps, "layer", dims_of(dd), 1) {
      this->init();
      layer.forward(ctx, this->x, &this->mask);
    }
  };
  auto s = std::make_shared<state>(B, L, d);
  if (backward) return [s] { s->layer.backward(s->x, s->dy, s->dx, false); };  // dx assigned, as in the model
  return [s] { s->layer.forward(s->ctx, s->x, &s->mask); };
}

}  // namespace genlm::bench
