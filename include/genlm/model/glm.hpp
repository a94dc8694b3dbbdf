// genlm/model/glm.hpp - the gLM model composed from the layers (SPEC.md "Model").
//
//   x (B, L, plm_dim+1) -> dense -> RoBERTa embeddings (token type row 0, LN, dropout)
//     -> encoder (post-LN, relative position attention) -> last hidden state h (B, L, hidden)
//   hypotheses = lm_head.dense(h)       (B, L, hypotheses, label_dim)
//   logits     = lm_head.dense_prob(h)  (B, L, hypotheses)
// Parameter names follow the reference's state dict: "dense.*", "roberta.embeddings.*",
// "roberta.encoder.layer.{i}.*", "lm_head.dense.*", "lm_head.dense_prob.*".
#pragma once
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include <genlm/layers/embeddings.hpp>
#include <genlm/layers/encoder.hpp>
#include <genlm/layers/linear.hpp>
#include <genlm/model/config.hpp>

namespace genlm {

/// Run-time options of a model (regularisation, initialisation).
struct model_options {
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  double layer_norm_eps = 1e-12;
  double init_std = 0.02;
  std::uint64_t init_seed = 0;
  /// false: the parameters start at zero instead of their random initialisation, for a model whose
  /// every parameter a checkpoint load overwrites next (load_state_dict fails on a missing one).
  /// Initialising configs::paper's 279M parameters takes ~25 s on one core (docs/PERFORMANCE.md).
  bool initialize = true;
  /// Threads drawing the initial weights (0: std::thread::hardware_concurrency()); the weights do
  /// not depend on it.
  int init_threads = 0;
};

template <model_config C, class Backend, class T = float, attention_variant Variant = relative_key_query,
          class Activation = gelu>
class GLM {
  static_assert(validate_config<C>());
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "GLM: scalar type must be float or double");

 public:
  static constexpr model_config config = C;
  using scalar = T;
  using backend = Backend;
  using variant = Variant;        // attention variant (its ::name is recorded in checkpoints)
  using activation = Activation;  // FFN activation (likewise)
  using tensor_t = tensor<T, Backend>;

  explicit GLM(const model_options& o = {}) : opt_(o) {
    encoder_dims d;
    d.hidden = C.hidden;
    d.heads = C.heads;
    d.intermediate = C.intermediate;
    d.max_positions = C.max_positions;
    d.hidden_dropout = o.hidden_dropout;
    d.attention_dropout = o.attention_dropout;
    d.layer_norm_eps = o.layer_norm_eps;
    d.init_std = o.init_std;
    dense_ = linear<T, Backend>(ps_, "dense", C.input_dim(), C.hidden, true, o.init_std);
    emb_ = input_embeddings<T, Backend>(ps_, "roberta.embeddings", C.hidden, o.layer_norm_eps, o.hidden_dropout, 1,
                                        o.init_std);
    enc_ = encoder<T, Backend, Variant, Activation>(ps_, "roberta.encoder", C.num_layers, d, 100);
    hyp_ = linear<T, Backend>(ps_, "lm_head.dense", C.hidden, index_t(C.hypotheses) * C.label_dim(), true, o.init_std);
    prob_ = linear<T, Backend>(ps_, "lm_head.dense_prob", C.hidden, C.hypotheses, true, o.init_std);
    ps_.finalize();  // zero-filled
    if (o.initialize) ps_.initialize(o.init_seed, o.init_threads);
  }
  GLM(const GLM&) = delete;
  GLM& operator=(const GLM&) = delete;

  parameter_store<T, Backend>& parameters() { return ps_; }
  const parameter_store<T, Backend>& parameters() const { return ps_; }
  const model_options& options() const { return opt_; }

  struct outputs {
    const tensor_t& hidden;      // (B, L, hidden)  contextualised gene embeddings
    const tensor_t& hypotheses;  // (B, L, hypotheses, label_dim)
    const tensor_t& logits;      // (B, L, hypotheses)
  };

  /// x (B, L, plm_dim + 1) inputs (masked genes = -1), mask (B, L) 1 = gene, 0 = padding.
  /// shape_error for wrong shapes; value_error for NaN/Inf inputs, mask values other than 0 and 1,
  /// or a contig whose mask is all zero (each naming the contig, and the gene where it applies).
  /// x is copied (into a buffer reused across calls): backward() does not need the caller's x.
  /// The checks count the faults on the backend (one wait for a GPU) and read the inputs back
  /// only to name one; inputs that start on the host are better passed as such (the overload
  /// below: no wait).
  outputs forward(const run_context& ctx, const tensor_t& x, const tensor_t& mask) {
    check<shape_error>(x.rank() == 3 && x.dim(2) == C.input_dim(), "GLM forward: input shape ", x.shape(),
                       ", expected (batch, genes, ", C.input_dim(), ") = plm_dim ", C.plm_dim, " + strand");
    const index_t B = x.dim(0), L = x.dim(1);
    check_batch_dims(B, L, x.shape());
    expect_shape(mask.shape(), {B, L}, "GLM forward: attention mask");
    if (const index_t faults = Backend::count_input_faults(x.data(), x.numel(), mask.data(), B, L)) {
      mask.to_host(mask_host_);  // named by the host-input forward's checks
      check_inputs(B, L, x.to_host(), mask_host_);
      throw error(detail::concat("GLM forward: the backend counted ", faults,
                                 " input fault(s) that the host checks do not find"));
    }
    x_ = x;  // kept for backward (dense's weight gradient); no allocation once grown
    return run(ctx, mask);
  }

  /// The same forward pass of inputs in host memory: x (B, L, plm_dim + 1) and mask (B, L), row
  /// major. They are checked on the host (the same errors as above) and copied into the model's
  /// own input tensors (reused across calls), so with a GPU backend nothing is read back and the
  /// host does not wait for the device: the uploads and the forward's work are only queued.
  outputs forward(const run_context& ctx, index_t B, index_t L, std::span<const T> x, std::span<const T> mask) {
    check_inputs(B, L, x, mask);
    x_.from_host({B, L, C.input_dim()}, x);
    mask_.from_host({B, L}, mask);
    return run(ctx, mask_);
  }

  /// Attention probabilities (B, heads, L, L) of layer i from the last forward.
  const tensor_t& attention(std::size_t layer) const {
    check<shape_error>(layer < num_layers(), "GLM::attention: layer ", layer, " of a model with ", num_layers(),
                       " layers (0-based)");
    return enc_.attention_probs(layer);
  }
  static constexpr std::size_t num_layers() { return std::size_t(C.num_layers); }

  /// Backward from d(hypotheses) (B, L, K, label) and d(logits) (B, L, K); all parameter
  /// gradients assigned.
  void backward(const tensor_t& d_hyp, const tensor_t& d_logits) {
    check(x_.rank() == 3, "GLM::backward called before forward");
    const index_t B = x_.dim(0), L = x_.dim(1);
    expect_shape(d_hyp.shape(), {B, L, C.hypotheses, C.label_dim()}, "GLM backward: d(hypotheses)");
    expect_shape(d_logits.shape(), {B, L, C.hypotheses}, "GLM backward: d(logits)");
    const tensor_t& h = enc_.layer(enc_.num_layers() - 1).output();
    // workspaces are assigned, not accumulated into, so none needs zeroing
    d_h_.resize(h.shape());
    d_hyp_flat_ = d_hyp;
    d_hyp_flat_.reshape({B, L, index_t(C.hypotheses) * C.label_dim()});
    hyp_.backward(h, d_hyp_flat_, &d_h_, false);
    prob_.backward(h, d_logits, &d_h_);
    d_e_.resize(h.shape());
    enc_.backward(d_h_, d_e_, false);
    d_h0_.resize(h0_.shape());
    emb_.backward(d_e_, d_h0_, false);
    dense_.backward(x_, d_h0_, nullptr);
  }

  /// The forward passes' checks of inputs x (B, L, plm_dim + 1) and mask (B, L) in host memory,
  /// row major, with their errors (see forward): sizes, then the mask, then NaN/Inf inputs.
  static void check_inputs(index_t B, index_t L, std::span<const T> x, std::span<const T> mask) {
    const shape_t xs{B, L, C.input_dim()};
    check_batch_dims(B, L, xs);
    const auto nx = std::size_t(xs.numel());  // shape_error when the element count overflows
    const std::size_t n = std::size_t(B * L);
    check<shape_error>(x.size() == nx, "GLM forward: ", x.size(), " input values for (batch, genes, features) = (", B,
                       ", ", L, ", ", C.input_dim(), ") (plm_dim ", C.plm_dim, " + strand), expected ", nx);
    check<shape_error>(mask.size() == n, "GLM forward: attention mask of ", mask.size(), " values for (batch, genes) = (",
                       B, ", ", L, "), expected ", n);
    check_mask(mask.data(), B, L);
    index_t bad = 0;
    for (const T v : x) bad += !std::isfinite(v);
    if (bad) {
      index_t i = 0;
      while (std::isfinite(x[std::size_t(i)])) ++i;
      throw value_error(detail::concat("GLM forward: ", bad, " NaN/Inf input value(s); first at contig ",
                                       i / (L * C.input_dim()), ", gene ", (i / C.input_dim()) % L, ", feature ",
                                       i % C.input_dim()));
    }
  }

 private:
  static void check_batch_dims(index_t B, index_t L, const shape_t& shape) {
    check<shape_error>(B >= 1 && L >= 1, "GLM forward: empty batch ", shape);
    check<shape_error>(L <= C.max_positions, "GLM forward: contig window of ", L, " genes exceeds max_positions ",
                       C.max_positions, "; split long contigs into windows (data::windows)");
  }

  /// mask (B, L) in host memory must hold only 0 (padding) and 1 (gene), with at least one gene
  /// per contig: a NaN would be undefined in the attention kernels, other values would scale the
  /// attention, and a contig without genes has no key to attend to.
  static void check_mask(const T* m, index_t B, index_t L) {
    for (index_t b = 0; b < B; ++b) {
      bool gene = false;
      for (index_t l = 0; l < L; ++l) {
        const T v = m[b * L + l];
        if (v == T(1)) {
          gene = true;
        } else if (v != T(0)) {
          throw value_error(detail::concat("GLM forward: attention mask value ", v, " at contig ", b, ", gene ", l,
                                           "; expected 0 (padding) or 1 (gene)"));
        }
      }
      check<value_error>(gene, "GLM forward: the attention mask of contig ", b,
                         " is all zero (no genes); drop empty contigs from the batch");
    }
  }

  /// The layers' forward pass of the checked input x_ (B, L, input_dim) under mask (B, L).
  outputs run(const run_context& ctx, const tensor_t& mask) {
    const index_t B = x_.dim(0), L = x_.dim(1);
    dense_.forward(x_, h0_);                                  // (B, L, hidden)
    const tensor_t& e = emb_.forward(ctx, h0_);               // (B, L, hidden)
    const tensor_t& h = enc_.forward(ctx, e, &mask);          // (B, L, hidden)
    hyp_.forward(h, hyp_out_);                                // (B, L, K * label)
    hyp_out_.reshape({B, L, C.hypotheses, C.label_dim()});
    prob_.forward(h, logits_);                                // (B, L, K)
    return {h, hyp_out_, logits_};
  }

  model_options opt_;
  parameter_store<T, Backend> ps_;
  linear<T, Backend> dense_, hyp_, prob_;
  input_embeddings<T, Backend> emb_;
  encoder<T, Backend, Variant, Activation> enc_;
  tensor_t x_;                 // the last forward's input (for backward)
  tensor_t mask_;              // the last host-input forward's mask (B, L)
  std::vector<T> mask_host_;   // host copy of the tensor forward's mask (to name a fault)
  tensor_t h0_, hyp_out_, logits_;
  tensor_t d_h_, d_hyp_flat_, d_e_, d_h0_;
};

}  // namespace genlm
